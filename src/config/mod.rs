//! The TOML configuration: schema, defaults and validation, with `file:line:col` errors.
//!
//! The configuration reference is the code: every key is documented where it is defined
//! (`schema`), with its default (`defaults`, the one place defaults are written). Loading parses
//! the text once, keeping where each key is (`keys`), then validates everything that can be
//! checked before serving (`validate`): ranges, addresses, references between sections, dates
//! (read once, into the policies' `Window`s), forwarding loops, the list files and
//! `log.salt_file` on disk. Every problem is reported, each at the key it is about, in line
//! order; `state::build` then compiles the lists and policies. A config that loads is a config
//! that runs.
//!
//! Nothing here touches the network or the packet path.

pub(crate) mod defaults;
mod keys;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use schema::*;

use keys::KeySpans;

/// The configuration compiled into the binary: what `sinkhole run` uses without `-c`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Where a configuration came from, kept to turn byte spans into `file:line:col`.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file path as given, or `<embedded default>`.
    pub name: String,
    /// The directory relative list paths are resolved against (the config file's own).
    pub dir: PathBuf,
    /// The text, for line and column numbers.
    pub text: String,
}

impl Origin {
    /// `name:line:col` of a byte offset.
    pub fn locate(&self, offset: usize) -> String {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        // In characters, as an editor counts them.
        let col = before[line_start..].chars().count() + 1;
        format!("{}:{line}:{col}", self.name)
    }

    /// An error at a span of this config.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: self.locate(span.start),
            message: message.into(),
        }
    }

    fn embedded() -> Origin {
        Origin {
            name: "<embedded default>".into(),
            dir: PathBuf::from("."),
            text: EMBEDDED_DEFAULT.into(),
        }
    }
}

/// One problem found in a config, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// `file:line:col`.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Why a configuration cannot be used. The old state keeps serving when a reload fails on one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the config: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config has errors, each located at `file:line:col`, in line order.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> Self {
        ConfigError::Invalid(vec![d])
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Config::parse(Origin {
            name: path.display().to_string(),
            dir,
            text,
        })
    }

    /// The embedded default config.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(Origin::embedded())
    }

    /// Parses and validates config text. A text with no setting at all is an error: an empty
    /// file is a truncated write or the wrong path far more often than a wish for the defaults
    /// (those are what `sinkhole run` without `-c` gives), and it would stop all blocking.
    ///
    /// A text that is not valid TOML, or does not fit the schema, stops at that one error (the
    /// rest of the file cannot be read reliably); every problem of a file that does is reported,
    /// in line order.
    pub fn parse(origin: Origin) -> Result<Config, ConfigError> {
        let blank = origin
            .text
            .lines()
            .map(str::trim)
            .all(|l| l.is_empty() || l.starts_with('#'));
        if blank {
            return Err(origin
                .error(
                    0..0,
                    "the config is empty: it would block nothing and forward to /etc/resolv.conf. Write the \
                     settings (deploy/sinkhole.toml is a start), or run without -c for the embedded default",
                )
                .into());
        }
        let syntax_error = |e: toml::de::Error| {
            let at = e.span().map_or(0, |s| s.start);
            origin.error(at..at, e.message().trim_end().to_string())
        };
        let document = toml::de::DeTable::parse(&origin.text).map_err(syntax_error)?;
        let keys = KeySpans::index(document.get_ref());
        let mut config = Config::deserialize(toml::de::Deserializer::from(document)).map_err(syntax_error)?;
        config.keys = keys;
        config.origin = origin;
        let mut errors = config.validate();
        if errors.is_empty() {
            return Ok(config);
        }
        errors.sort_by_key(|(span, _)| span.start);
        Err(ConfigError::Invalid(
            errors
                .into_iter()
                .map(|(span, message)| config.origin.error(span, message))
                .collect(),
        ))
    }

    /// Resolves a path from the config (list file, hit log) against the config's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.origin.dir.join(path)
        }
    }

    /// The span of the value at a key path (`lists.tiktok.urls`), or of the nearest table around
    /// it: where a warning found after loading points.
    pub(crate) fn keys_span(&self, path: &str) -> Range<usize> {
        self.keys.of(path)
    }

    /// Where lists fetched by URL are kept: `server.state_dir` (against the config's directory),
    /// else the first path of `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else
    /// [`defaults::STATE_DIR`].
    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.server.state_dir {
            return self.resolve(dir);
        }
        std::env::var_os("STATE_DIRECTORY")
            .and_then(|dirs| {
                let first = dirs.to_string_lossy().split(':').next().unwrap_or_default().to_string();
                (!first.is_empty()).then(|| PathBuf::from(first))
            })
            .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR))
    }

    /// The upstream servers: configured, or read from /etc/resolv.conf, leaving out any that
    /// would be sinkhole itself (a host whose resolv.conf names the sinkhole it runs).
    pub fn upstream_servers(&self) -> Result<Vec<UpstreamAddr>, ConfigError> {
        if let Some(servers) = &self.upstream.servers {
            return Ok(servers.get_ref().clone());
        }
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let servers: Vec<UpstreamAddr> = resolv_conf_nameservers(&text)
            .into_iter()
            .filter(|s| self.listener_reached_by(*s).is_none())
            .map(UpstreamAddr::plain)
            .collect();
        if servers.is_empty() {
            return Err(self
                .origin
                .error(
                    self.keys.of("upstream.servers"),
                    "no upstream: /etc/resolv.conf names no usable nameserver (none, or only sinkhole \
                     itself); set [upstream] servers = [\"ip:port\", ...]",
                )
                .into());
        }
        Ok(servers)
    }
}

/// The `nameserver` addresses of a resolv.conf text, on port 53.
pub(crate) fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A scoped link-local address ("fe80::1%eth0") needs an interface that a plain
            // socket address cannot carry: skip it rather than forward into the void.
            words
                .next()?
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, defaults::UPSTREAM_PORT))
        })
        .collect()
}
