//! `sinkhole export`: one list of a config, compiled as the daemon loads it, written in the format
//! of another server, so that the same policy can be enforced by BIND, Unbound, PowerDNS or Knot
//! Resolver (RPZ), by Unbound's own `local-zone`s, or by any blocker that reads hosts files or
//! plain domain lists.
//!
//! Every rule is either written in a form that blocks exactly what sinkhole blocks with it, or
//! skipped and reported ([`Exported::skipped`]): never widened, never dropped silently. sinkhole
//! blocks a domain with every name below it, so a domain rule becomes `name CNAME .` and
//! `*.name CNAME .` in RPZ, and `always_nxdomain` (which covers the subdomains) in Unbound.
//!
//! This module writes text only; reading the config and the lists is `state`'s, and choosing
//! where the text goes is `main.rs`'s.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use ipnet::IpNet;

use crate::lists::{RuleAction, RuleKind, RuleView};
use crate::state::Snapshot;

/// The formats `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An RPZ zone file ($TTL, SOA, NS, then `name CNAME .` and `*.name CNAME .` per domain):
    /// for BIND, Unbound, PowerDNS Recursor, Knot Resolver.
    Rpz,
    /// `0.0.0.0 name` lines. sinkhole (and Pi-hole, AdGuard Home, Blocky) read such a line as the
    /// domain and its subdomains; /etc/hosts itself blocks the name alone.
    Hosts,
    /// One domain a line, each meaning the domain and its subdomains, as sinkhole reads it.
    Domains,
    /// `local-zone: "name." always_nxdomain` lines under `server:`, for unbound.conf's `include:`.
    Unbound,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "rpz" => Ok(Format::Rpz),
            "hosts" => Ok(Format::Hosts),
            "domains" => Ok(Format::Domains),
            "unbound" => Ok(Format::Unbound),
            other => Err(format!("unknown format {other:?}: use rpz, hosts, domains or unbound")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Rpz => "rpz",
            Format::Hosts => "hosts",
            Format::Domains => "domains",
            Format::Unbound => "unbound",
        })
    }
}

/// One rule of a compiled list, as the export sees it: its kind and, for RPZ lists, its own action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule<'a> {
    /// A domain and every name below it (`tiktok.com`).
    Domain(&'a str),
    /// That name only (`|tiktok.com^`, an RPZ `name`).
    Exact(&'a str, Option<RuleAction>),
    /// The names below a domain, not the domain itself (an RPZ `*.name`).
    Below(&'a str, Option<RuleAction>),
    /// An AdGuard-style wildcard (`||p16-*.ibyteimg.com^`), which none of the formats can say.
    Wildcard(&'a str),
    /// An answer-address range (`ip = [...]`, an RPZ `rpz-ip` trigger): RPZ's `rpz-ip` only.
    Range(IpNet, Option<RuleAction>),
}

impl<'a> Rule<'a> {
    /// Reads a compiled rule: its kind says what it matches, its action (RPZ) what it answers.
    fn of(view: RuleView<'a>) -> Rule<'a> {
        let RuleView { kind, body, action, .. } = view;
        match kind {
            RuleKind::Suffix => Rule::Domain(body),
            RuleKind::Exact => Rule::Exact(body, action),
            RuleKind::GlobExact => match body.strip_prefix("*.") {
                Some(name) if !name.contains('*') => Rule::Below(name, action),
                _ => Rule::Wildcard(body),
            },
            RuleKind::GlobOnLabel => Rule::Wildcard(body),
            RuleKind::Range => body
                .parse()
                .map_or(Rule::Wildcard(body), |net| Rule::Range(net, action)),
        }
    }
}

/// A rule the format could not express, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The rule as `sinkhole check` and `explain` show it.
    pub rule: String,
    /// Why the format cannot say it.
    pub why: &'static str,
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct Exported {
    /// Rules written.
    pub written: usize,
    /// Rules left out, each named: the caller reports them, so that nothing is lost unseen.
    pub skipped: Vec<Skipped>,
}

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The config has no such list.
    #[error("the config has no list {name:?}; its lists: {known}")]
    UnknownList {
        /// The name asked for.
        name: String,
        /// The lists there are, comma-separated.
        known: String,
    },
    /// `--origin` is not a domain name.
    #[error("origin {0:?} is not a domain name like \"rpz.sinkhole.\"")]
    BadOrigin(String),
    /// Writing failed.
    #[error("cannot write the export: {0}")]
    Write(#[from] io::Error),
}

/// Settings of an export besides the list and the format.
#[derive(Clone, Debug)]
pub struct Options {
    /// The RPZ zone's name (`rpz.sinkhole.`); the zone file's `$ORIGIN`.
    pub origin: String,
    /// The SOA serial of the RPZ zone (the caller gives the time, so that output is reproducible).
    pub serial: u32,
}

/// TTL of the RPZ zone's records: how long a resolver may cache a block it learnt from the zone.
const RPZ_TTL: u32 = 300;

/// Writes list `list` of `snapshot` in `format` to `out`.
pub fn export(
    snapshot: &Snapshot,
    list: &str,
    format: Format,
    options: &Options,
    out: &mut dyn Write,
) -> Result<Exported, ExportError> {
    let rules = &snapshot.rules;
    let Some(named) = rules.lists.iter().find(|l| &*l.name == list) else {
        let known: Vec<&str> = rules.lists.iter().map(|l| &*l.name).collect();
        return Err(ExportError::UnknownList {
            name: list.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    let origin = absolute(&options.origin).ok_or_else(|| ExportError::BadOrigin(options.origin.clone()))?;
    let mut out = io::BufWriter::new(out);
    let sources = named.sources.join(", ");
    match format {
        Format::Rpz => {
            writeln!(out, "; list {list} exported by sinkhole from {sources}")?;
            writeln!(
                out,
                "; each domain is blocked with every name below it: name CNAME . and *.name CNAME . (NXDOMAIN)"
            )?;
            writeln!(out, "$ORIGIN {origin}")?;
            writeln!(out, "$TTL {RPZ_TTL}")?;
            writeln!(
                out,
                "@ IN SOA localhost. hostmaster.localhost. {} 3600 600 604800 {RPZ_TTL}",
                options.serial
            )?;
            writeln!(out, "@ IN NS localhost.")?;
        }
        Format::Hosts | Format::Domains => writeln!(out, "# list {list} exported by sinkhole from {sources}")?,
        Format::Unbound => {
            writeln!(out, "# list {list} exported by sinkhole from {sources}")?;
            writeln!(out, "server:")?;
        }
    }
    let mut exported = Exported::default();
    for view in named.set.rule_views() {
        match write_rule(&mut out, format, Rule::of(view))? {
            None => exported.written += 1,
            Some(why) => exported.skipped.push(Skipped {
                rule: view.text.to_string(),
                why,
            }),
        }
    }
    out.flush()?;
    Ok(exported)
}

/// Writes one rule, or says why the format cannot express it.
fn write_rule(out: &mut dyn Write, format: Format, rule: Rule<'_>) -> io::Result<Option<&'static str>> {
    const EXCEPTION: &str = "an exception (rpz-passthru): only the rpz format has them";
    const BELOW: &str = "it blocks the names below a domain but not the domain: only the rpz format says that";
    match (format, rule) {
        (_, Rule::Wildcard(_)) => return Ok(Some("a wildcard inside a label has no form in this format")),
        (Format::Rpz, Rule::Domain(name)) => {
            writeln!(out, "{name} CNAME .")?;
            writeln!(out, "*.{name} CNAME .")?;
        }
        (Format::Rpz, Rule::Exact(name, action)) => write_rpz(out, name, "", action)?,
        (Format::Rpz, Rule::Below(name, action)) => write_rpz(out, name, "*.", action)?,
        (Format::Rpz, Rule::Range(net, action)) => write_rpz(out, &rpz_ip_owner(net), "", action)?,
        (_, Rule::Range(..)) => {
            return Ok(Some("an answer-address range: only the rpz format (rpz-ip) has them"));
        }
        (_, Rule::Exact(_, Some(RuleAction::Passthru)) | Rule::Below(_, Some(RuleAction::Passthru))) => {
            return Ok(Some(EXCEPTION));
        }
        (_, Rule::Below(..)) => return Ok(Some(BELOW)),
        (Format::Hosts, Rule::Exact(name, Some(RuleAction::Redirect { v4: Some(v4), .. }))) => {
            writeln!(out, "{v4} {name}")?;
        }
        (Format::Hosts, Rule::Domain(name) | Rule::Exact(name, _)) => writeln!(out, "0.0.0.0 {name}")?,
        (Format::Domains, Rule::Domain(name)) => writeln!(out, "{name}")?,
        (Format::Domains, Rule::Exact(..)) => {
            return Ok(Some(
                "a domains line blocks the subdomains too; this rule blocks the name alone",
            ));
        }
        (Format::Unbound, Rule::Domain(name)) => writeln!(out, "local-zone: \"{name}.\" always_nxdomain")?,
        (Format::Unbound, Rule::Exact(..)) => {
            return Ok(Some(
                "an Unbound local-zone covers the subdomains too; this rule blocks the name alone",
            ));
        }
    }
    Ok(None)
}

/// Writes the RPZ records of one trigger (`prefix` + `owner`) with the rule's action: NXDOMAIN
/// (`CNAME .`) when it has none of its own.
fn write_rpz(out: &mut dyn Write, owner: &str, prefix: &str, action: Option<RuleAction>) -> io::Result<()> {
    match action {
        None | Some(RuleAction::Nxdomain) => writeln!(out, "{prefix}{owner} CNAME ."),
        Some(RuleAction::Nodata) => writeln!(out, "{prefix}{owner} CNAME *."),
        Some(RuleAction::Passthru) => writeln!(out, "{prefix}{owner} CNAME rpz-passthru."),
        Some(RuleAction::Redirect { v4, v6 }) => {
            if let Some(v4) = v4 {
                writeln!(out, "{prefix}{owner} A {v4}")?;
            }
            if let Some(v6) = v6 {
                writeln!(out, "{prefix}{owner} AAAA {v6}")?;
            }
            Ok(())
        }
    }
}

/// The owner name of an `rpz-ip` trigger for `net`: the prefix length, then the address with its
/// parts in reverse order (`24.0.113.0.203.rpz-ip`; IPv6 by its eight groups, in hex).
fn rpz_ip_owner(net: IpNet) -> String {
    let parts: Vec<String> = match net {
        IpNet::V4(n) => n.addr().octets().iter().rev().map(u8::to_string).collect(),
        IpNet::V6(n) => n.addr().segments().iter().rev().map(|g| format!("{g:x}")).collect(),
    };
    format!("{}.{}.rpz-ip", net.prefix_len(), parts.join("."))
}

/// `name` as an absolute domain name (with its final dot), if it is one.
fn absolute(name: &str) -> Option<String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() < 254
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() < 64
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| format!("{}.", bare.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Origin};

    /// A config whose list has one rule of each kind.
    fn snapshot() -> Snapshot {
        let text = "[lists.mixed]\ndomains = [\"tiktok.com\", \"|exact.example^\", \"||p16-*.ibyteimg.com^\", \
                    \"||TikTokV.com^\", \"*.musical.ly\", \"0.0.0.0 hosts.example\"]\n\
                    [[policy]]\nname = \"all\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"mixed\"]\n";
        let config = Config::parse(Origin {
            name: "test.toml".into(),
            dir: "/".into(),
            text: text.into(),
        })
        .expect("test config");
        crate::state::build(config).expect("test snapshot")
    }

    fn run(format: Format) -> (String, Exported) {
        let options = Options {
            origin: "rpz.sinkhole".into(),
            serial: 7,
        };
        let mut out = Vec::new();
        let exported = export(&snapshot(), "mixed", format, &options, &mut out).expect("export");
        (String::from_utf8(out).expect("utf-8"), exported)
    }

    fn body(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.starts_with(['#', ';', '$', '@']) && *l != "server:")
            .collect()
    }

    /// Each compiled rule is read by its kind, not its text: a domain, an exact name, a wildcard.
    #[test]
    fn rules_are_read_by_their_kind() {
        let snapshot = snapshot();
        let rules: Vec<Rule<'_>> = snapshot.rules.lists[0].set.rule_views().map(Rule::of).collect();
        assert_eq!(
            rules,
            [
                Rule::Domain("tiktok.com"),
                Rule::Exact("exact.example", None),
                Rule::Wildcard("p16-*.ibyteimg.com"),
                Rule::Domain("tiktokv.com"),
                Rule::Domain("musical.ly"),
                Rule::Domain("hosts.example"),
            ]
        );
    }

    /// An RPZ list (every trigger and action sinkhole applies) exported as RPZ and read back is
    /// the same list: the same rules, kinds and actions; the other formats leave out what they
    /// cannot say, named.
    #[test]
    fn an_rpz_list_exported_as_rpz_reads_back_the_same() {
        let zone = "$ORIGIN rpz.example.\n$TTL 60\n@ SOA ns. admin. 1 2 3 4 5\n@ NS ns.\n\
                    exact.example CNAME .\n*.below.example CNAME .\nempty.example CNAME *.\n\
                    ok.below.example CNAME rpz-passthru.\nportal.example A 192.0.2.80\nportal.example AAAA 2001:db8::80\n\
                    24.0.113.0.203.rpz-ip CNAME .\n32.7.113.0.203.rpz-ip CNAME rpz-passthru.\n\
                    48.zz.bad.db8.2001.rpz-ip CNAME .\n";
        let dir = std::env::temp_dir().join(format!("sinkhole-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let load = |text: &str, file: &str| {
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write zone");
            let config = format!(
                "[lists.z]\nfiles = [{:?}]\n[[policy]]\nname = \"all\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"z\"]\n",
                path.display().to_string()
            );
            let config = Config::parse(Origin {
                name: "test.toml".into(),
                dir: "/".into(),
                text: config,
            })
            .expect("test config");
            crate::state::build(config).expect("test snapshot")
        };
        let views = |snapshot: &Snapshot| -> Vec<String> {
            let mut v: Vec<String> = snapshot.rules.lists[0]
                .set
                .rule_views()
                .map(|r| format!("{:?} {} {:?}", r.kind, r.body, r.action))
                .collect();
            v.sort();
            v
        };
        let first = load(zone, "in.rpz");
        assert_eq!(views(&first).len(), 8, "{:?}", views(&first));
        let options = Options {
            origin: "rpz.sinkhole".into(),
            serial: 1,
        };
        let mut out = Vec::new();
        let exported = export(&first, "z", Format::Rpz, &options, &mut out).expect("export");
        assert!(exported.skipped.is_empty(), "{:?}", exported.skipped);
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("\n24.0.113.0.203.rpz-ip CNAME .\n"), "{text}");
        let again = load(&text, "out.rpz");
        assert_eq!(views(&again), views(&first), "{text}");

        let mut out = Vec::new();
        let exported = export(&first, "z", Format::Hosts, &options, &mut out).expect("export");
        let hosts = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            body(&hosts),
            [
                "0.0.0.0 exact.example",
                "0.0.0.0 empty.example",
                "192.0.2.80 portal.example"
            ]
        );
        let skipped: Vec<&str> = exported.skipped.iter().map(|s| s.why).collect();
        assert_eq!(skipped.len(), 5, "{skipped:?}");
        assert!(skipped.iter().any(|why| why.contains("rpz-passthru")), "{skipped:?}");
        assert!(skipped.iter().any(|why| why.contains("answer-address")), "{skipped:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rpz_blocks_each_domain_and_its_subdomains() {
        let (text, exported) = run(Format::Rpz);
        assert!(
            text.contains("$ORIGIN rpz.sinkhole.\n$TTL 300\n@ IN SOA localhost. hostmaster.localhost. 7 "),
            "{text}"
        );
        assert!(text.contains("\n@ IN NS localhost.\n"), "{text}");
        assert_eq!(
            body(&text),
            [
                "tiktok.com CNAME .",
                "*.tiktok.com CNAME .",
                "exact.example CNAME .",
                "tiktokv.com CNAME .",
                "*.tiktokv.com CNAME .",
                "musical.ly CNAME .",
                "*.musical.ly CNAME .",
                "hosts.example CNAME .",
                "*.hosts.example CNAME .",
            ]
        );
        assert_eq!(exported.written, 5);
        assert_eq!(
            exported.skipped,
            [Skipped {
                rule: "||p16-*.ibyteimg.com^".into(),
                why: "a wildcard inside a label has no form in this format"
            }]
        );
    }

    #[test]
    fn hosts_domains_and_unbound_say_what_they_can_and_name_the_rest() {
        let (hosts, exported) = run(Format::Hosts);
        assert_eq!(
            body(&hosts),
            [
                "0.0.0.0 tiktok.com",
                "0.0.0.0 exact.example",
                "0.0.0.0 tiktokv.com",
                "0.0.0.0 musical.ly",
                "0.0.0.0 hosts.example"
            ]
        );
        assert_eq!(exported.skipped.len(), 1);
        let (domains, exported) = run(Format::Domains);
        assert_eq!(
            body(&domains),
            ["tiktok.com", "tiktokv.com", "musical.ly", "hosts.example"]
        );
        let skipped: Vec<&str> = exported.skipped.iter().map(|s| s.rule.as_str()).collect();
        assert_eq!(skipped, ["|exact.example^", "||p16-*.ibyteimg.com^"]);
        let (unbound, exported) = run(Format::Unbound);
        assert!(
            unbound.contains("\nserver:\nlocal-zone: \"tiktok.com.\" always_nxdomain\n"),
            "{unbound}"
        );
        assert_eq!(exported.written, 4);
        assert_eq!(exported.skipped.len(), 2);
    }

    #[test]
    fn an_unknown_list_or_origin_is_an_error_that_says_what_there_is() {
        let options = Options {
            origin: "rpz.sinkhole.".into(),
            serial: 1,
        };
        let e = export(&snapshot(), "nope", Format::Rpz, &options, &mut Vec::new()).expect_err("no such list");
        assert_eq!(e.to_string(), "the config has no list \"nope\"; its lists: mixed");
        let bad = Options {
            origin: "rpz sinkhole".into(),
            serial: 1,
        };
        let e = export(&snapshot(), "mixed", Format::Rpz, &bad, &mut Vec::new()).expect_err("bad origin");
        assert!(e.to_string().contains("not a domain name"), "{e}");
        assert_eq!("unbound".parse::<Format>(), Ok(Format::Unbound));
        assert!("bind".parse::<Format>().is_err());
    }
}
