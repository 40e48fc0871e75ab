//! Where an installed sinkhole's files go, in one table: `sinkhole install` writes it, and the
//! Debian package's asset list (`[package.metadata.deb]` in Cargo.toml) mirrors it, which
//! tests/install.rs checks. It must not touch the file system: [`super`] does the writing.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// What an installed file is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The install prefix: `/usr/local` by default, `/usr` for the Debian package.
    Prefix,
    /// `/etc`, whatever the prefix: systemd's local units aside, logrotate and the unit's
    /// `-c /etc/sinkhole/sinkhole.toml` look only there.
    Etc,
    /// zsh's completion functions: `share/zsh/vendor-completions` under `/usr` (Debian's place
    /// for packaged ones), `share/zsh/site-functions` under any other prefix (where Debian's zsh
    /// looks for local ones, and where zsh built from source looks).
    ZshFunctions,
}

/// What an installed file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The running binary itself.
    Binary,
    /// A file compiled into the binary, written as it is.
    Embedded(&'static str),
    /// deploy/sinkhole.service with its `ExecStart` pointed at the installed binary.
    Unit,
    /// The completion script for a shell, generated from the command line's definition.
    Completion(Shell),
    /// The man pages (sinkhole.1 and one per command), generated from the command line's
    /// definition; `path` is their directory, since the commands decide how many there are.
    ManPages,
}

/// What an install does with a file already at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ours: each install replaces it, as a package upgrade does.
    Program,
    /// The admin's once written (a Debian conffile): kept when it differs from what would be
    /// written, which goes to a `.dist` file beside it for the admin to compare.
    Config,
}

/// One installed file (or, for [`Content::ManPages`], directory of files).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// What `path` is relative to.
    pub base: Base,
    /// The path below `base`.
    pub path: &'static str,
    /// The file's permission bits.
    pub mode: u32,
    /// Kept or replaced when present.
    pub kind: Kind,
    /// What is written.
    pub content: Content,
}

impl Entry {
    /// Where the entry lands on the target system for this prefix (no destdir).
    pub fn target(&self, prefix: &Path) -> PathBuf {
        match self.base {
            Base::Prefix => prefix.join(self.path),
            Base::Etc => Path::new(ETC).join(self.path),
            Base::ZshFunctions if prefix == Path::new("/usr") => {
                prefix.join("share/zsh/vendor-completions").join(self.path)
            }
            Base::ZshFunctions => prefix.join("share/zsh/site-functions").join(self.path),
        }
    }
}

/// The system configuration directory, which no prefix moves.
pub const ETC: &str = "/etc";

/// The prefix `sinkhole install` uses unless told otherwise: the admin's own software, beside
/// the distribution's, where systemd also looks for units (`/usr/local/lib/systemd/system`).
pub const DEFAULT_PREFIX: &str = "/usr/local";

/// The unit's `ExecStart` as deploy/sinkhole.service writes it, for the binary under
/// [`DEFAULT_PREFIX`]; an install elsewhere rewrites this part.
pub const UNIT_BINARY: &str = "ExecStart=/usr/local/bin/sinkhole ";

/// The unit file, as shipped in deploy/ (ExecStart under /usr/local).
pub const UNIT_SOURCE: &str = include_str!("../../deploy/sinkhole.service");

/// Every file an install writes. The config names its two local lists by absolute path, so
/// they are installed where it names them (and must exist for it to load); the built-in lists
/// are compiled into the binary and installed again, read-only, under share/ for the admin to
/// read, export or copy from (the examples among them); so are the alert rules and the Grafana
/// dashboard, for the Prometheus and Grafana of the same host or to copy to theirs.
pub const LAYOUT: &[Entry] = &[
    Entry {
        base: Base::Prefix,
        path: "bin/sinkhole",
        mode: 0o755,
        kind: Kind::Program,
        content: Content::Binary,
    },
    Entry {
        base: Base::Prefix,
        path: "lib/systemd/system/sinkhole.service",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Unit,
    },
    Entry {
        base: Base::Etc,
        path: "sinkhole/sinkhole.toml",
        mode: 0o644,
        kind: Kind::Config,
        content: Content::Embedded(include_str!("../../deploy/sinkhole.toml")),
    },
    Entry {
        base: Base::Etc,
        path: "sinkhole/lists/tiktok-extra.txt",
        mode: 0o644,
        kind: Kind::Config,
        content: Content::Embedded(include_str!("../../deploy/lists/tiktok-extra.txt")),
    },
    Entry {
        base: Base::Etc,
        path: "sinkhole/lists/exceptions.txt",
        mode: 0o644,
        kind: Kind::Config,
        content: Content::Embedded(include_str!("../../deploy/lists/exceptions.txt")),
    },
    Entry {
        base: Base::Etc,
        path: "logrotate.d/sinkhole",
        mode: 0o644,
        kind: Kind::Config,
        content: Content::Embedded(include_str!("../../deploy/logrotate.sinkhole")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/README.md",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/README.md")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/tiktok.txt",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/tiktok.txt")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/encrypted-dns-bypass.txt",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/encrypted-dns-bypass.txt")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/facebook.txt",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/facebook.txt")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/instagram.txt",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/instagram.txt")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/allow-example.txt",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/allow-example.txt")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/blocklists/lark-exceptions-example.txt",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../blocklists/lark-exceptions-example.txt")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/prometheus/sinkhole.rules.yml",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../deploy/prometheus/sinkhole.rules.yml")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/sinkhole/grafana/sinkhole.json",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Embedded(include_str!("../../deploy/grafana/sinkhole.json")),
    },
    Entry {
        base: Base::Prefix,
        path: "share/bash-completion/completions/sinkhole",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Completion(Shell::Bash),
    },
    Entry {
        base: Base::ZshFunctions,
        path: "_sinkhole",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Completion(Shell::Zsh),
    },
    Entry {
        base: Base::Prefix,
        path: "share/fish/vendor_completions.d/sinkhole.fish",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::Completion(Shell::Fish),
    },
    Entry {
        base: Base::Prefix,
        path: "share/man/man1",
        mode: 0o644,
        kind: Kind::Program,
        content: Content::ManPages,
    },
];

/// The unit for a binary installed at `binary`: deploy/sinkhole.service with its `ExecStart`
/// pointed there, or None if the unit no longer has the `ExecStart` line this expects (a unit
/// test keeps the two in step).
pub fn unit_for(binary: &Path) -> Option<String> {
    if UNIT_SOURCE.matches(UNIT_BINARY).count() != 1 {
        return None;
    }
    let exec_start = format!("ExecStart={} ", binary.display());
    Some(UNIT_SOURCE.replacen(UNIT_BINARY, &exec_start, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_the_installed_binary() {
        let unit = unit_for(Path::new("/usr/bin/sinkhole")).expect("the shipped unit has one ExecStart");
        let exec: Vec<_> = unit.lines().filter(|l| l.starts_with("ExecStart=")).collect();
        assert_eq!(exec, ["ExecStart=/usr/bin/sinkhole run -c /etc/sinkhole/sinkhole.toml"]);
        let unchanged = unit_for(Path::new("/usr/local/bin/sinkhole")).expect("one ExecStart");
        assert_eq!(unchanged, UNIT_SOURCE);
    }

    #[test]
    fn paths_follow_the_prefix_but_etc_stays() {
        let find = |path: &str| LAYOUT.iter().find(|e| e.path == path).expect("in the table");
        let usr = Path::new("/usr");
        let local = Path::new(DEFAULT_PREFIX);
        assert_eq!(find("bin/sinkhole").target(usr), Path::new("/usr/bin/sinkhole"));
        assert_eq!(
            find("sinkhole/sinkhole.toml").target(usr),
            Path::new("/etc/sinkhole/sinkhole.toml")
        );
        assert_eq!(
            find("sinkhole/sinkhole.toml").target(local),
            Path::new("/etc/sinkhole/sinkhole.toml")
        );
        assert_eq!(
            find("_sinkhole").target(usr),
            Path::new("/usr/share/zsh/vendor-completions/_sinkhole")
        );
        assert_eq!(
            find("_sinkhole").target(local),
            Path::new("/usr/local/share/zsh/site-functions/_sinkhole")
        );
    }

    #[test]
    fn the_config_names_the_lists_installed_beside_it() {
        let config = LAYOUT
            .iter()
            .find_map(|e| match e.content {
                Content::Embedded(text) if e.path == "sinkhole/sinkhole.toml" => Some(text),
                _ => None,
            })
            .expect("the config is in the table");
        for entry in LAYOUT.iter().filter(|e| e.path.starts_with("sinkhole/lists/")) {
            let named = format!("\"{}\"", entry.target(Path::new("/usr")).display());
            assert!(config.contains(&named), "the config does not name {named}");
        }
    }
}
