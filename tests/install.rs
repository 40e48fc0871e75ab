//! `sinkhole install`, `completions` and `man`, as an admin and a packager meet them: the install
//! into a staging directory writes every file where a Debian system reads it (the unit running
//! the installed binary, the config and the lists it names, logrotate, completions, man pages),
//! keeps an edited config on a second run (the shipped one beside it as .dist), and the config it
//! installs passes `sinkhole check`; the bash completion is valid bash, the man pages render
//! without groff warnings, and the Debian package's asset list (Cargo.toml) packs exactly what
//! the install writes.
//!
//! The man page check needs groff (`apt-get install groff-base man-db`); without it, it only looks
//! for the page header and says SKIPPED for the rendering.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sinkhole_testkit::*;

/// The repository root (Cargo.toml, deploy/).
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sinkhole(args: &[&str]) -> Output {
    Command::new(sinkhole_bin())
        .args(args)
        .output()
        .expect("run the sinkhole binary")
}

fn install(destdir: &Path, extra: &[&str]) -> String {
    let dest = destdir.to_str().expect("a UTF-8 temp path");
    let mut args = vec!["install", "--destdir", dest, "--prefix", "/usr"];
    args.extend_from_slice(extra);
    let out = sinkhole(&args);
    assert!(
        out.status.success(),
        "sinkhole install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).expect("under the root").to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// What a Debian system needs, where it looks for it, with its mode.
const EXPECTED: &[(&str, u32)] = &[
    ("usr/bin/sinkhole", 0o755),
    ("usr/lib/systemd/system/sinkhole.service", 0o644),
    ("etc/sinkhole/sinkhole.toml", 0o644),
    ("etc/sinkhole/lists/tiktok-extra.txt", 0o644),
    ("etc/sinkhole/lists/exceptions.txt", 0o644),
    ("etc/logrotate.d/sinkhole", 0o644),
    ("usr/share/sinkhole/blocklists/tiktok.txt", 0o644),
    ("usr/share/sinkhole/blocklists/allow-example.txt", 0o644),
    ("usr/share/bash-completion/completions/sinkhole", 0o644),
    ("usr/share/zsh/vendor-completions/_sinkhole", 0o644),
    ("usr/share/fish/vendor_completions.d/sinkhole.fish", 0o644),
    ("usr/share/man/man1/sinkhole.1", 0o644),
    ("usr/share/man/man1/sinkhole-run.1", 0o644),
    ("usr/share/man/man1/sinkhole-check.1", 0o644),
    ("usr/share/man/man1/sinkhole-install.1", 0o644),
];

#[test]
fn install_writes_every_file_and_never_overwrites_an_edited_config() {
    let dir = TestDir::new();
    let root = dir.path().join("root");
    let printed = install(&root, &[]);
    for (path, expected_mode) in EXPECTED {
        let file = root.join(path);
        assert!(file.is_file(), "{path} was not installed; install printed:\n{printed}");
        assert_eq!(mode(&file), *expected_mode, "{path}");
        assert!(
            printed.contains(&format!("wrote      {}", file.display())),
            "{path} not reported:\n{printed}"
        );
    }
    let unit = read(&root.join("usr/lib/systemd/system/sinkhole.service"));
    let exec: Vec<&str> = unit.lines().filter(|l| l.starts_with("ExecStart=")).collect();
    assert_eq!(exec, ["ExecStart=/usr/bin/sinkhole run -c /etc/sinkhole/sinkhole.toml"]);
    assert!(unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE\n") && unit.contains("DynamicUser=yes\n"));
    let shipped = read(&repo().join("deploy/sinkhole.toml"));
    assert!(
        read(&root.join("etc/sinkhole/sinkhole.toml")) == shipped,
        "the installed config is not deploy/sinkhole.toml"
    );
    for (installed, source) in [
        ("etc/logrotate.d/sinkhole", "deploy/logrotate.sinkhole"),
        ("etc/sinkhole/lists/exceptions.txt", "deploy/lists/exceptions.txt"),
        ("usr/share/sinkhole/blocklists/tiktok.txt", "blocklists/tiktok.txt"),
    ] {
        assert!(
            read(&root.join(installed)) == read(&repo().join(source)),
            "{installed} is not {source}"
        );
    }
    // The installed binary is the one that ran the install, and runs.
    let version = Command::new(root.join("usr/bin/sinkhole"))
        .arg("--version")
        .output()
        .expect("run the installed binary");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sinkhole "));
    // Staged only: nothing to enable yet.
    assert!(printed.contains("nothing was enabled or started"), "{printed}");

    // The admin edits the config and a list; an upgrade keeps both and puts the shipped config beside.
    let config = root.join("etc/sinkhole/sinkhole.toml");
    let edited = format!("{shipped}\n# edited by the admin\n");
    fs::write(&config, &edited).expect("edit the config");
    let extra = root.join("etc/sinkhole/lists/tiktok-extra.txt");
    fs::write(&extra, "new-tiktok-domain.example\n").expect("edit a list");
    let completion = root.join("usr/share/bash-completion/completions/sinkhole");
    fs::write(&completion, "# stale\n").expect("spoil a completion");
    let printed = install(&root, &[]);
    assert!(read(&config) == edited, "the edited config was overwritten");
    assert!(
        read(&root.join("etc/sinkhole/sinkhole.toml.dist")) == shipped,
        "the .dist beside the kept config is not the shipped one"
    );
    assert_eq!(read(&extra), "new-tiktok-domain.example\n");
    assert!(
        printed.contains(&format!("kept       {} (", config.display())),
        "the kept config is not reported:\n{printed}"
    );
    assert!(printed.contains(&format!("{}.dist", config.display())), "{printed}");
    assert!(printed.contains(&format!(
        "unchanged  {}",
        root.join("etc/logrotate.d/sinkhole").display()
    )));
    // Ours is replaced.
    assert_ne!(read(&completion), "# stale\n");

    // --force installs the shipped config and moves the admin's aside.
    let printed = install(&root, &["--force"]);
    assert!(read(&config) == shipped, "--force did not install the shipped config");
    assert!(
        read(&root.join("etc/sinkhole/sinkhole.toml.old")) == edited,
        "--force lost the admin's config"
    );
    assert!(
        printed.contains(&format!("replaced   {}", config.display())),
        "{printed}"
    );
}

#[test]
fn installed_config_passes_check_with_the_lists_it_names() {
    let dir = TestDir::new();
    let root = dir.path().join("root");
    install(&root, &[]);
    // The config names its lists by absolute path (/etc/sinkhole/lists/...), as on the target
    // system: checked here with those paths moved under the staging root.
    let config = read(&root.join("etc/sinkhole/sinkhole.toml"));
    let staged_etc = format!("\"{}/etc/sinkhole/", root.display());
    assert!(
        config.contains("\"/etc/sinkhole/lists/"),
        "the config names no list under /etc/sinkhole"
    );
    let staged = dir.write_file("staged.toml", &config.replace("\"/etc/sinkhole/", &staged_etc));
    let staged = staged.to_str().expect("a UTF-8 temp path");
    let out = sinkhole(&["check", "-c", staged]);
    assert!(
        out.status.success(),
        "the installed config fails `sinkhole check`:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It would not load without the list files the install writes.
    fs::remove_file(root.join("etc/sinkhole/lists/exceptions.txt")).expect("remove a list");
    let out = sinkhole(&["check", "-c", staged]);
    assert!(!out.status.success(), "check passed without a list the config names");
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceptions.txt"));
}

#[test]
fn completions_are_valid_scripts_for_their_shells() {
    let out = sinkhole(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(script.contains("complete -F _sinkhole"), "{script}");
    // Bash parses it, and sourcing it registers the completion for `sinkhole`.
    let dir = TestDir::new();
    let path = dir.write_file("sinkhole.bash", &script);
    let bash = Command::new("bash")
        .args(["-c", &format!("source '{}' && complete -p sinkhole", path.display())])
        .output()
        .expect("run bash");
    assert!(
        bash.status.success(),
        "bash rejects the completion: {}",
        String::from_utf8_lossy(&bash.stderr)
    );
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_sinkhole"));
    // The subcommands are completed, this one included.
    for word in ["run", "check", "explain", "export", "completions", "install"] {
        assert!(script.contains(word), "the bash completion does not know {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sinkhole(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = sinkhole(&["completions", "tcsh"]);
    assert!(!out.status.success(), "an unknown shell was accepted");
}

#[test]
fn man_pages_render_for_the_command_and_each_subcommand() {
    let dir = TestDir::new();
    let out = sinkhole(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(page.contains(".TH sinkhole 1"), "{page}");
    assert!(
        page.contains("sinkhole\\-run(1)"),
        "sinkhole.1 does not point at sinkhole-run(1)"
    );

    let pages = dir.path().join("man");
    let out = sinkhole(&["man", "--dir", pages.to_str().expect("UTF-8")]);
    assert!(out.status.success());
    let written: BTreeSet<String> = files_under(&pages).iter().map(|p| p.display().to_string()).collect();
    for expected in [
        "sinkhole.1",
        "sinkhole-run.1",
        "sinkhole-check.1",
        "sinkhole-explain.1",
        "sinkhole-export.1",
        "sinkhole-replay.1",
        "sinkhole-completions.1",
        "sinkhole-install.1",
    ] {
        assert!(written.contains(expected), "no {expected} in {written:?}");
    }
    // Hidden commands and clap's `help` get no page.
    assert!(
        !written.contains("sinkhole-man.1") && !written.contains("sinkhole-help.1"),
        "{written:?}"
    );

    if Command::new("groff")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIPPED: rendering the man pages: groff is not installed (apt-get install groff-base man-db)");
        return;
    }
    for name in &written {
        // -ww: every warning; -z: parse only. A page groff complains about renders wrong in man.
        let groff = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(pages.join(name))
            .output()
            .expect("run groff");
        let warnings = String::from_utf8_lossy(&groff.stderr);
        assert!(groff.status.success() && warnings.is_empty(), "{name}: {warnings}");
    }
    if Command::new("man")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok()
    {
        let man = Command::new("man")
            .arg("-l")
            .arg(pages.join("sinkhole-install.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("run man");
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(man.status.success(), "{}", String::from_utf8_lossy(&man.stderr));
        assert!(text.contains("SYNOPSIS") && text.contains("--destdir"), "{text}");
    }
}

#[test]
fn debian_package_assets_are_what_install_writes() {
    let manifest: toml::Table = read(&repo().join("Cargo.toml")).parse().expect("Cargo.toml parses");
    let deb = manifest
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("deb"))
        .expect("[package.metadata.deb] in Cargo.toml");
    // The package's version is the crate's: a release that forgets the changelog fails here.
    let version = manifest
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .expect("[workspace.package] version");
    let changelog = read(&repo().join("deploy/debian/changelog"));
    assert!(
        changelog.starts_with(&format!("sinkhole ({version}-1) ")),
        "deploy/debian/changelog does not start with version {version}-1"
    );
    let units = deb.get("systemd-units").expect("[package.metadata.deb.systemd-units]");
    assert_eq!(
        units.get("unit-scripts").and_then(|v| v.as_str()),
        Some("target/deb-root/usr/lib/systemd/system")
    );

    let dir = TestDir::new();
    let root = dir.path().join("root");
    install(&root, &[]);
    let installed = files_under(&root);

    // What the package holds of the staged tree: each asset from target/deb-root lands at the
    // same path it was staged at, with the mode the install gave it.
    let stage = "target/deb-root/";
    let mut packed = BTreeSet::new();
    packed.insert(PathBuf::from("usr/lib/systemd/system/sinkhole.service"));
    for asset in deb.get("assets").and_then(|a| a.as_array()).expect("assets") {
        let asset = asset.as_array().expect("each asset is [source, dest, mode]");
        let field = |i: usize| asset.get(i).and_then(|v| v.as_str()).expect("a string");
        let (source, dest, asset_mode) = (field(0), field(1), field(2));
        if source == "target/release/sinkhole" {
            assert_eq!((dest, asset_mode), ("usr/bin/", "755"));
            packed.insert(PathBuf::from("usr/bin/sinkhole"));
            continue;
        }
        let Some(staged) = source.strip_prefix(stage) else {
            continue; // the package's own documentation, not an installed file
        };
        let files: Vec<PathBuf> = match staged.strip_suffix("*.1") {
            Some(man_dir) => installed
                .iter()
                .filter(|p| p.parent() == Some(Path::new(man_dir.trim_end_matches('/'))))
                .filter(|p| p.extension().is_some_and(|e| e == "1"))
                .cloned()
                .collect(),
            None => vec![PathBuf::from(staged)],
        };
        assert!(!files.is_empty(), "{source} matches nothing install writes");
        for file in files {
            assert_eq!(
                file.parent(),
                Some(Path::new(dest.trim_end_matches('/'))),
                "{source} is packed to {dest}, not where it was staged"
            );
            assert_eq!(
                format!("{:o}", mode(&root.join(&file))),
                asset_mode,
                "{} has another mode in the package",
                file.display()
            );
            packed.insert(file);
        }
    }
    let missing: Vec<_> = installed.difference(&packed).collect();
    let extra: Vec<_> = packed.difference(&installed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "Cargo.toml's deb assets and `sinkhole install` disagree: installed but not packed {missing:?}, packed but \
         not installed {extra:?}"
    );
}
