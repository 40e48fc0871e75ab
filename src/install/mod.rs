//! `sinkhole install`: lays out, from what the binary carries, everything a systemd host needs
//! beside it (the unit, the annotated config and the lists it names, log rotation, the lists
//! for reference, completions and man pages), as [`layout::LAYOUT`] says, so that
//! `cargo install` followed by `sinkhole install` gives what the Debian package gives. It never
//! starts, enables or reloads a service, and never replaces a config file an admin may have
//! edited unless told to.

pub mod generated;
pub mod layout;

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Command;

use layout::{Content, Entry, Kind, LAYOUT};

/// Why an install stopped; files written before it stay written (each one whole).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The target system's files belong to root.
    #[error(
        "installing into {} and /etc needs root: run it with sudo, or stage the files in a directory with \
         --destdir DIR",
        .0.display()
    )]
    NotRoot(PathBuf),
    /// A relative prefix would install somewhere that depends on the working directory.
    #[error("--prefix must be an absolute path, like /usr/local, not {}", .0.display())]
    RelativePrefix(PathBuf),
    /// The binary to install is the one running, found through /proc.
    #[error("cannot find the running binary to install it: {0}")]
    CurrentExe(io::Error),
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// An existing file could not be read to compare it with what would be written.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What was being read.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// clap_mangen failed to render (it writes to memory, so this is not expected).
    #[error("cannot generate the man pages: {0}")]
    ManPages(io::Error),
    /// deploy/sinkhole.service changed so that the binary's path cannot be set in it.
    #[error(
        "the built-in unit has no single `{}` line to point at the installed binary",
        layout::UNIT_BINARY
    )]
    Unit,
}

/// What `sinkhole install` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the binary, the unit and the shared files go (`/usr/local`; `/usr` for a package).
    pub prefix: PathBuf,
    /// A directory standing for the root of the target system (a package's staging tree), or
    /// None for this system.
    pub destdir: Option<PathBuf>,
    /// Replace config files that differ from the shipped ones too, keeping each old one as
    /// `FILE.old`.
    pub force: bool,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (it was not there, or differed and is ours to replace).
    Written,
    /// Already there as it would be written.
    Unchanged,
    /// An edited config, left alone; the shipped one was written to the `.dist` path beside it.
    Kept {
        /// Where the shipped version went.
        dist: PathBuf,
    },
    /// An edited config replaced because of `--force`; the old one was moved to the `.old` path.
    Replaced {
        /// Where the admin's version went.
        old: PathBuf,
    },
}

/// The files an install wrote or left, in table order, and what the admin should know.
#[derive(Debug)]
pub struct Report {
    /// Each file, as its path on the target system, and what became of it.
    pub files: Vec<(PathBuf, Outcome)>,
    /// Things on the target system that will get in the way (an old unit that overrides ours).
    pub warnings: Vec<String>,
    /// Whether this was staged under a destdir (then nothing is to be run yet).
    pub staged: Option<PathBuf>,
    /// The installed config, for the next steps' commands.
    pub config: PathBuf,
}

/// Installs every file of [`LAYOUT`]. `command` is the command line's definition, for the
/// completions and man pages; `is_root` says whether the process may write the target system.
pub fn install(options: &Options, command: &Command, is_root: bool) -> Result<Report, InstallError> {
    if !options.prefix.is_absolute() {
        return Err(InstallError::RelativePrefix(options.prefix.clone()));
    }
    if options.destdir.is_none() && !is_root {
        return Err(InstallError::NotRoot(options.prefix.clone()));
    }
    let root = options.destdir.clone().unwrap_or_else(|| PathBuf::from("/"));
    // Where a target path lands on this machine: under the destdir, if any.
    let on_disk = |target: &Path| root.join(target.strip_prefix("/").unwrap_or(target));
    let mut report = Report {
        files: Vec::new(),
        warnings: Vec::new(),
        staged: options.destdir.clone(),
        config: PathBuf::from(layout::ETC).join("sinkhole/sinkhole.toml"),
    };
    let binary = LAYOUT
        .iter()
        .find(|e| e.content == Content::Binary)
        .map(|e| e.target(&options.prefix))
        .unwrap_or_else(|| options.prefix.join("bin/sinkhole"));
    for entry in LAYOUT {
        let target = entry.target(&options.prefix);
        match entry.content {
            Content::Binary => {
                let outcome = install_binary(&on_disk(&target))?;
                report.files.push((target, outcome));
            }
            Content::ManPages => {
                for page in generated::man_pages(command).map_err(InstallError::ManPages)? {
                    let target = target.join(&page.file_name);
                    let outcome = place(entry, &on_disk(&target), &page.text, options.force)?;
                    report.files.push((target, outcome));
                }
            }
            Content::Embedded(text) => {
                let outcome = place(entry, &on_disk(&target), text.as_bytes(), options.force)?;
                report.files.push((target, outcome));
            }
            Content::Unit => {
                let unit = layout::unit_for(&binary).ok_or(InstallError::Unit)?;
                let outcome = place(entry, &on_disk(&target), unit.as_bytes(), options.force)?;
                report.files.push((target, outcome));
            }
            Content::Completion(shell) => {
                let script = generated::completion_bytes(shell, command);
                let outcome = place(entry, &on_disk(&target), &script, options.force)?;
                report.files.push((target, outcome));
            }
        }
    }
    // A unit in /etc/systemd/system (the manual install deploy/README.md used to describe)
    // wins over ours, with its own ExecStart.
    let old_unit = Path::new("/etc/systemd/system/sinkhole.service");
    if on_disk(old_unit).exists() {
        report.warnings.push(format!(
            "{} overrides the unit just installed (systemd reads /etc first): remove it unless you mean to keep \
             it, and put local changes in `systemctl edit sinkhole` instead",
            old_unit.display()
        ));
    }
    let unit_dirs = [
        "/usr/local/lib/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ];
    let unit = options.prefix.join("lib/systemd/system");
    if !unit_dirs.iter().any(|d| unit == Path::new(d)) {
        report.warnings.push(format!(
            "systemd does not look for units in {}: run `systemctl link {}/sinkhole.service` once",
            unit.display(),
            unit.display()
        ));
    }
    Ok(report)
}

/// Copies the running binary to `path`, unless it is the running binary already (as after
/// `cargo install --root /usr/local`).
fn install_binary(path: &Path) -> Result<Outcome, InstallError> {
    let running = std::env::current_exe().map_err(InstallError::CurrentExe)?;
    let same = match (fs::canonicalize(&running), fs::canonicalize(path)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(Outcome::Unchanged);
    }
    write_with(path, 0o755, |file| {
        io::copy(&mut fs::File::open(&running)?, file).map(drop)
    })?;
    Ok(Outcome::Written)
}

/// Writes `bytes` to `path` as the entry's kind says: ours are replaced, an admin's edited
/// config is kept (or, with `force`, moved aside).
fn place(entry: &Entry, path: &Path, bytes: &[u8], force: bool) -> Result<Outcome, InstallError> {
    let existing = match fs::read(path) {
        Ok(existing) => Some(existing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(InstallError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let write = |to: &Path| write_with(to, entry.mode, |file| file.write_all(bytes));
    match existing {
        Some(existing) if existing == bytes => Ok(Outcome::Unchanged),
        Some(_) if entry.kind == Kind::Config && force => {
            let old = with_suffix(path, "old");
            fs::rename(path, &old).map_err(|source| InstallError::Write {
                path: old.clone(),
                source,
            })?;
            write(path)?;
            Ok(Outcome::Replaced { old })
        }
        Some(_) if entry.kind == Kind::Config => {
            let dist = with_suffix(path, "dist");
            write(&dist)?;
            Ok(Outcome::Kept { dist })
        }
        _ => {
            write(path)?;
            Ok(Outcome::Written)
        }
    }
}

/// `path` with `.suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Creates `path`'s directory and replaces `path` whole ([`crate::atomic_file`]) with what
/// `fill` writes, with `mode`: a reader (systemd, a running shell's completion) sees the old
/// file or the new one, and a running binary being replaced is not written into.
fn write_with(path: &Path, mode: u32, fill: impl FnOnce(&mut fs::File) -> io::Result<()>) -> Result<(), InstallError> {
    let failed = |source| InstallError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(failed)?;
    }
    crate::atomic_file::replace(path, |file| {
        fill(file)?;
        file.set_permissions(fs::Permissions::from_mode(mode))
    })
    .map_err(failed)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = self.staged.as_deref().unwrap_or(Path::new("/"));
        let shown = |target: &Path| root.join(target.strip_prefix("/").unwrap_or(target));
        for (target, outcome) in &self.files {
            let path = shown(target);
            match outcome {
                Outcome::Written => writeln!(f, "wrote      {}", path.display())?,
                Outcome::Unchanged => writeln!(f, "unchanged  {}", path.display())?,
                Outcome::Kept { dist } => writeln!(
                    f,
                    "kept       {} (yours differs from the shipped one, written to {}: compare them)",
                    path.display(),
                    dist.display()
                )?,
                Outcome::Replaced { old } => writeln!(
                    f,
                    "replaced   {} (--force; yours is now {})",
                    path.display(),
                    old.display()
                )?,
            }
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        if let Some(dir) = &self.staged {
            return writeln!(
                f,
                "staged under {}: nothing was enabled or started; copy the tree to the target system's root",
                dir.display()
            );
        }
        let config = self.config.display();
        writeln!(f, "\nnothing was enabled or started. Next:")?;
        writeln!(f, "  $EDITOR {config}      # subnets, upstreams, policies")?;
        writeln!(f, "  sinkhole check -c {config}")?;
        writeln!(f, "  systemctl daemon-reload")?;
        writeln!(f, "  systemctl enable --now sinkhole")?;
        writeln!(
            f,
            "Where systemd-resolved runs (Ubuntu, many cloud images), its stub listener holds port 53 on loopback \
             and the wildcard listen addresses fail: see README \"Deploy on Debian\" before starting."
        )
    }
}
