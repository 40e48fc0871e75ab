//! Sets `SINKHOLE_COMMIT` for `sinkhole --version` and the `sinkhole_build_info` metric: the
//! commit this binary was built from, so that an admin can tell which code answers.
//!
//! From a git checkout it is `git rev-parse --short HEAD`, and the build script reruns when HEAD
//! or the branch it points to moves, so the commit is never stale. Without git (a crates.io
//! package, a .deb built from a tarball) it is `SINKHOLE_COMMIT` from the environment if the
//! packager set it, else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SINKHOLE_COMMIT");
    let commit = git_commit()
        .or_else(env_commit)
        .or_else(packaged_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SINKHOLE_COMMIT={commit}");
}

/// The short hash of HEAD, when building inside a git work tree with git installed; registers
/// the files whose change moves HEAD.
fn git_commit() -> Option<String> {
    // Our own repository's, not that of a repository the package happens to sit in (an
    // unpacked crate under a home directory kept in git): it must track our Cargo.toml.
    git(&["ls-files", "--error-unmatch", "Cargo.toml"])?;
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    if !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // HEAD itself (a checkout of another branch), the branch's ref (a commit on it), and
    // packed-refs (where the ref lives after `git gc`). In a linked work tree HEAD is in the work
    // tree's own git dir and branches in the common one. Only paths that exist: cargo reruns a
    // build script on every build for one that does not.
    let git_dir = git(&["rev-parse", "--git-dir"]).map(PathBuf::from)?;
    let common = git(&["rev-parse", "--git-common-dir"]).map_or_else(|| git_dir.clone(), PathBuf::from);
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = [git_dir.join(&branch), common.join(&branch)];
        match loose.iter().find(|p| p.is_file()) {
            Some(file) => watched.push(file.clone()),
            // Packed (a fresh clone, `git gc`): the next commit writes the loose file, which
            // cargo sees as a change of its directory. Only then: a directory of branches
            // changes with every branch's commits, and each rerun rebuilds the crate.
            None => watched.extend(common.join(&branch).parent().map(Path::to_path_buf)),
        }
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}

/// The commit a packager states, for builds outside git.
fn env_commit() -> Option<String> {
    std::env::var("SINKHOLE_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
}

/// The commit `cargo package` recorded in `.cargo_vcs_info.json` (`"sha1": "..."`), for a
/// build from a crates.io package: its first 7 digits, as `git rev-parse --short` shows.
fn packaged_commit() -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from)?;
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let after = text.split("\"sha1\"").nth(1)?;
    let sha: String = after
        .trim_start_matches([' ', ':', '"'])
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .take(7)
        .collect();
    (sha.len() == 7).then_some(sha)
}

/// `git ARGS` run in the package's directory: its trimmed stdout, or None if git is missing,
/// fails, or this is not a git work tree. Relative paths it prints are made absolute.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let out = Command::new("git").args(args).current_dir(&dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if text.is_empty() {
        return None;
    }
    // --git-dir and --git-common-dir may answer relative to the directory git ran in.
    if args.iter().any(|a| a.starts_with("--git")) && Path::new(&text).is_relative() {
        return Some(dir.join(text).display().to_string());
    }
    Some(text)
}
