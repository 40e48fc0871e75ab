//! RPZ (Response Policy Zone) files as a list format: a zone file whose records are policy rules, as BIND,
//! Unbound, PowerDNS and Knot Resolver load them (draft-vixie-dnsop-dns-rpz).
//!
//! Owns recognising an RPZ text ([`looks_like_zone`]) and reading its records into [`RpzRule`]s: the trigger (a
//! name, a `*.name` wildcard, or an `rpz-ip` address range) and its action. It must not store anything (the
//! builder does) and never panics; a record it cannot read is a bad line, as in every other format.
//!
//! What each record means here:
//! - owner `name` (relative to the origin) is that name only; `*.name` is every name below `name`, not `name`
//!   itself (RPZ's meaning; sinkhole's plain rules block a name and its subdomains);
//! - `CNAME .` blocks with NXDOMAIN, `CNAME *.` with NODATA, `CNAME rpz-drop.` with NXDOMAIN (sinkhole never
//!   leaves a client without an answer: dropping makes it retry and wait, NXDOMAIN makes it give up at once);
//! - `CNAME rpz-passthru.` (or a CNAME to the trigger name itself, the old form) is an exception: the list never
//!   blocks that name;
//! - `A`/`AAAA` local data answers with that address (a redirect, per query type; the other type gets NODATA);
//! - a CNAME to any other name (a walled garden) blocks with the policy's own answer: sinkhole does not
//!   synthesise CNAMEs;
//! - `N.a.b.c.d.rpz-ip` (the prefix length, then the address's labels reversed; IPv6 groups reversed, `zz` for
//!   the `::` run) is an answer-address range with the same actions;
//! - `rpz-nsdname`, `rpz-nsip`, `rpz-client-ip` triggers and `CNAME rpz-tcp-only.` are not applied: counted and
//!   reported by `check`, never fatal. Other record types (TXT, MX, ...) as local data are counted the same way.
//! - The zone's own SOA and NS records (at the origin) are zone data, not rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// What a blocked (or excepted) rule of an RPZ list does, where it differs from a plain list's rule (which blocks
/// with the policy's answer). Kept in a side table by rule id, only for rules that have one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleAction {
    /// An exception: the list does not block what this rule matches (`CNAME rpz-passthru.`).
    Passthru,
    /// NXDOMAIN (`CNAME .`, `CNAME rpz-drop.`).
    Nxdomain,
    /// NODATA (`CNAME *.`).
    Nodata,
    /// This address for A queries (v4) or AAAA queries (v6); NODATA where the rule has none for the type.
    Redirect {
        /// The A record's address.
        v4: Option<Ipv4Addr>,
        /// The AAAA record's address.
        v6: Option<Ipv6Addr>,
    },
}

impl RuleAction {
    /// This action with `other`'s addresses added, for a redirect written as several records (an A and an AAAA
    /// for the same name). The first address of each family wins; other actions keep the first.
    pub(super) fn merge(self, other: RuleAction) -> RuleAction {
        match (self, other) {
            (RuleAction::Redirect { v4, v6 }, RuleAction::Redirect { v4: v4b, v6: v6b }) => RuleAction::Redirect {
                v4: v4.or(v4b),
                v6: v6.or(v6b),
            },
            (first, _) => first,
        }
    }
}

/// RPZ records that are not applied, by kind: what `check` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RpzIgnored {
    /// `rpz-nsdname` triggers (the name server's name).
    pub(crate) nsdname: usize,
    /// `rpz-nsip` triggers (the name server's address).
    pub(crate) nsip: usize,
    /// `rpz-client-ip` triggers (sinkhole's policies choose clients).
    pub(crate) client_ip: usize,
    /// `CNAME rpz-tcp-only.` actions (not a block: BIND answers them normally over TCP).
    pub(crate) tcp_only: usize,
    /// Local data of other types than A, AAAA and CNAME (TXT, MX, ...).
    pub(crate) other_data: usize,
}

impl RpzIgnored {
    /// Adds `other`'s counts.
    pub(super) fn add(&mut self, other: &RpzIgnored) {
        self.nsdname += other.nsdname;
        self.nsip += other.nsip;
        self.client_ip += other.client_ip;
        self.tcp_only += other.tcp_only;
        self.other_data += other.other_data;
    }

    /// One line per kind with a count, for `check` and the logs (`3 rpz-nsdname triggers ignored`).
    pub(crate) fn lines(&self) -> Vec<String> {
        [
            (
                self.nsdname,
                "rpz-nsdname triggers ignored (name server names are not checked)",
            ),
            (
                self.nsip,
                "rpz-nsip triggers ignored (name server addresses are not checked)",
            ),
            (
                self.client_ip,
                "rpz-client-ip triggers ignored (policies choose clients)",
            ),
            (
                self.tcp_only,
                "rpz-tcp-only actions ignored (not a block: answered as usual)",
            ),
            (
                self.other_data,
                "local data records of other types than A, AAAA and CNAME ignored",
            ),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
    }
}

/// One rule read from an RPZ record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RpzRule {
    /// A name trigger: `name` itself, or (wildcard) every name below it; lowercase, no trailing dot. `action`
    /// None: the policy's answer.
    Name {
        name: String,
        wildcard: bool,
        action: Option<RuleAction>,
    },
    /// An `rpz-ip` trigger: answers with an address in `net`.
    Range { net: IpNet, action: Option<RuleAction> },
}

/// Lines looked at to recognise a zone: its `$ORIGIN`, `$TTL` and SOA come first.
const SNIFF_LINES: usize = 64;

/// Whether `text` is an RPZ zone rather than a list in another format: a `$ORIGIN` line or an SOA record among
/// its first meaningful lines. No other list format has either (`SOA` is not a host name a list would hold with
/// other words on its line).
pub(super) fn looks_like_zone(text: &str) -> bool {
    text.lines()
        .map(|line| line.split(';').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .take(SNIFF_LINES)
        .any(|line| {
            let tokens: Vec<&str> = line.split_ascii_whitespace().take(8).collect();
            let first = tokens.first().copied().unwrap_or_default();
            if first.eq_ignore_ascii_case("$ORIGIN") {
                return true;
            }
            // `owner [ttl] [class] SOA mname rname ...`: the SOA type with its two names after it (a hosts line
            // naming a host `soa` has none).
            !first.starts_with('$')
                && tokens
                    .iter()
                    .enumerate()
                    .skip(1)
                    .take(3)
                    .any(|(at, t)| t.eq_ignore_ascii_case("SOA") && tokens.len() >= at + 3)
        })
}

/// Why an RPZ record was skipped: the reason `check` prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum RpzError {
    #[error("record has no type (expected an owner, an optional TTL and class, a type and its data)")]
    NoType,
    #[error("record of type {0} has no data")]
    NoData(String),
    #[error("a record without an owner name before any record that has one")]
    NoOwner,
    #[error("{0} is not supported in a list; put the included records in this file or in another list file")]
    Include(String),
    #[error("unknown directive {0}")]
    Directive(String),
    #[error("$ORIGIN needs an absolute name (ending in a dot)")]
    Origin,
    #[error("owner {0} is outside the zone {1}")]
    OutsideZone(String, String),
    #[error("{0}")]
    Name(#[from] super::RuleError),
    #[error("{0:?} is not an rpz-ip trigger (prefix length, then the address's labels reversed)")]
    IpTrigger(String),
    #[error("{0:?} is not an address for a {1} record")]
    Address(String, &'static str),
    #[error("a `(` that is never closed")]
    Unclosed,
}

/// The reader's state across records: the origin, the last owner (for records that leave it blank), the counts of
/// what is not applied.
#[derive(Default)]
pub(super) struct Reader {
    /// The origin, lowercase, without the trailing dot ("" for the root or while unknown).
    origin: Option<String>,
    /// The last owner name written, absolute or relative as written.
    last_owner: Option<String>,
    /// What is not applied.
    pub(super) ignored: RpzIgnored,
}

impl Reader {
    /// Reads a whole zone text: each rule goes to `rule`, each bad record to `bad` with its first line number
    /// (1-based) and text. Records over several lines (`(` ... `)`) are joined first.
    pub(super) fn read(
        &mut self,
        text: &str,
        rule: &mut impl FnMut(RpzRule) -> Result<(), super::RuleError>,
        bad: &mut impl FnMut(usize, &str, String),
    ) {
        let mut joined = String::new();
        let mut start = (0, "");
        let mut depth = 0usize;
        for (index, line) in text.lines().enumerate() {
            let content = strip_comment(line);
            if depth == 0 {
                joined.clear();
                start = (index + 1, line.trim());
            }
            for b in content.bytes() {
                match b {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            if !joined.is_empty() {
                joined.push(' ');
            }
            joined.push_str(content);
            if depth > 0 {
                continue;
            }
            if joined.contains(['(', ')']) {
                joined = joined.replace(['(', ')'], " ");
            }
            if let Err(e) = self.record(&joined, rule) {
                bad(start.0, start.1, e.to_string());
            }
        }
        if depth > 0 {
            bad(start.0, start.1, RpzError::Unclosed.to_string());
        }
    }

    /// One record or directive, comments and parentheses removed. A record that starts with blank space has the
    /// owner of the one before.
    fn record(
        &mut self,
        record: &str,
        rule: &mut impl FnMut(RpzRule) -> Result<(), super::RuleError>,
    ) -> Result<(), RpzError> {
        if record.trim().is_empty() {
            return Ok(());
        }
        let mut tokens = record.split_ascii_whitespace();
        let inherits = record.starts_with([' ', '\t']);
        let owner = if inherits {
            self.last_owner.clone().ok_or(RpzError::NoOwner)?
        } else {
            let first = tokens.next().unwrap_or_default();
            if first.starts_with('$') {
                return self.directive(first, tokens);
            }
            self.last_owner = Some(first.to_owned());
            first.to_owned()
        };
        // TTL and class, in either order, then the type.
        let rtype = loop {
            let token = tokens.next().ok_or(RpzError::NoType)?;
            if is_ttl(token) || is_class(token) {
                continue;
            }
            break token.to_ascii_uppercase();
        };
        let data: Vec<&str> = tokens.collect();
        if data.is_empty() {
            return Err(RpzError::NoData(rtype));
        }
        if rtype == "SOA" && self.origin.is_none() {
            // The zone's name, when no $ORIGIN gave it: the SOA's owner, if written absolute.
            if let Some(absolute) = owner.strip_suffix('.') {
                self.origin = Some(absolute.to_ascii_lowercase());
            }
        }
        let Some(trigger) = self.relative(&owner)? else {
            // The apex: SOA, NS and the like are the zone's own data.
            return Ok(());
        };
        if rtype == "SOA" || rtype == "NS" {
            self.ignored.other_data += 1;
            return Ok(());
        }
        let action = match rtype.as_str() {
            "CNAME" => {
                let target = data[0].to_ascii_lowercase();
                match target.as_str() {
                    "." => Some(RuleAction::Nxdomain),
                    "*." => Some(RuleAction::Nodata),
                    "rpz-passthru." => Some(RuleAction::Passthru),
                    "rpz-drop." => Some(RuleAction::Nxdomain),
                    "rpz-tcp-only." => {
                        self.ignored.tcp_only += 1;
                        return Ok(());
                    }
                    t if t.trim_end_matches('.') == trigger => Some(RuleAction::Passthru),
                    // A walled garden: the policy's own answer.
                    _ => None,
                }
            }
            "A" => {
                let v4 = data[0]
                    .parse::<Ipv4Addr>()
                    .map_err(|_| RpzError::Address(data[0].to_owned(), "A"))?;
                Some(RuleAction::Redirect { v4: Some(v4), v6: None })
            }
            "AAAA" => {
                let v6 = data[0]
                    .parse::<Ipv6Addr>()
                    .map_err(|_| RpzError::Address(data[0].to_owned(), "AAAA"))?;
                Some(RuleAction::Redirect { v4: None, v6: Some(v6) })
            }
            _ => {
                self.ignored.other_data += 1;
                return Ok(());
            }
        };
        let last = trigger.rsplit('.').next().unwrap_or_default();
        match last {
            "rpz-ip" => {
                let net = ip_trigger(&trigger).ok_or_else(|| RpzError::IpTrigger(trigger.clone()))?;
                rule(RpzRule::Range { net, action })?;
            }
            "rpz-nsdname" => self.ignored.nsdname += 1,
            "rpz-nsip" => self.ignored.nsip += 1,
            "rpz-client-ip" => self.ignored.client_ip += 1,
            _ => {
                let (name, wildcard) = match trigger.strip_prefix("*.") {
                    Some(below) => (below, true),
                    None => (trigger.as_str(), false),
                };
                super::parse::check_name_for_rpz(name)?;
                rule(RpzRule::Name {
                    name: name.to_owned(),
                    wildcard,
                    action,
                })?;
            }
        }
        Ok(())
    }

    fn directive<'a>(&mut self, name: &str, mut args: impl Iterator<Item = &'a str>) -> Result<(), RpzError> {
        match name.to_ascii_uppercase().as_str() {
            "$TTL" => Ok(()),
            "$ORIGIN" => {
                let origin = args.next().ok_or(RpzError::Origin)?;
                let origin = if origin == "." {
                    String::new()
                } else if let Some(absolute) = origin.strip_suffix('.') {
                    absolute.to_ascii_lowercase()
                } else {
                    // Relative to the origin before, as in BIND.
                    match self.origin.as_deref() {
                        Some(before) if !before.is_empty() => format!("{}.{before}", origin.to_ascii_lowercase()),
                        _ => return Err(RpzError::Origin),
                    }
                };
                self.origin = Some(origin);
                Ok(())
            }
            "$INCLUDE" => Err(RpzError::Include(name.to_owned())),
            other => Err(RpzError::Directive(other.to_owned())),
        }
    }

    /// The owner relative to the origin, lowercase: None at the apex. `@` is the apex; an absolute name must lie in
    /// the zone; a relative one is already relative.
    fn relative(&self, owner: &str) -> Result<Option<String>, RpzError> {
        if owner == "@" {
            return Ok(None);
        }
        let owner = owner.to_ascii_lowercase();
        let Some(absolute) = owner.strip_suffix('.') else {
            return Ok(Some(owner));
        };
        let origin = self.origin.as_deref().unwrap_or_default();
        if origin.is_empty() {
            return Ok((!absolute.is_empty()).then(|| absolute.to_owned()));
        }
        if absolute == origin {
            return Ok(None);
        }
        match absolute.strip_suffix(origin).and_then(|head| head.strip_suffix('.')) {
            Some(head) if !head.is_empty() => Ok(Some(head.to_owned())),
            _ => Err(RpzError::OutsideZone(owner.clone(), format!("{origin}."))),
        }
    }
}

/// The line up to a `;` comment (outside a quoted string).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (at, b) in line.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b';' if !quoted => return line.get(..at).unwrap_or_default(),
            _ => {}
        }
    }
    line
}

/// A TTL as zone files write it: seconds, or BIND's units (`1h30m`, `2d`, `1W`).
fn is_ttl(token: &str) -> bool {
    token.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b.to_ascii_lowercase(), b's' | b'm' | b'h' | b'd' | b'w'))
}

fn is_class(token: &str) -> bool {
    ["IN", "CH", "HS", "CS"].iter().any(|c| c.eq_ignore_ascii_case(token))
}

/// The range of an `rpz-ip` trigger name (`32.1.2.0.203.rpz-ip` is 203.0.2.1/32; `48.zz.3.2001.rpz-ip` is
/// 2001:3::/48): the prefix length, then the address's labels reversed, IPv6 groups in hex with `zz` for the `::`
/// run. Host bits must be clear, as the draft requires.
fn ip_trigger(trigger: &str) -> Option<IpNet> {
    let labels: Vec<&str> = trigger.strip_suffix(".rpz-ip")?.split('.').collect();
    let (len, address) = labels.split_first()?;
    if address.is_empty() {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let reversed: Vec<&str> = address.iter().rev().copied().collect();
    let is_v4 = reversed.len() == 4 && reversed.iter().all(|l| l.parse::<u8>().is_ok());
    let ip: IpAddr = if is_v4 {
        IpAddr::V4(reversed.join(".").parse().ok()?)
    } else {
        if reversed.iter().filter(|l| **l == "zz").count() > 1 {
            return None;
        }
        let text = reversed.join(":").replace("zz", "");
        let text = match (text.starts_with(':'), text.ends_with(':')) {
            _ if text.is_empty() || text == ":" => "::".to_owned(),
            (true, _) => format!(":{text}"),
            (_, true) => format!("{text}:"),
            _ => text,
        };
        IpAddr::V6(text.parse().ok()?)
    };
    let net = IpNet::new(ip, len).ok()?;
    (net.trunc() == net).then_some(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<RpzRule>, Vec<(usize, String)>, RpzIgnored) {
        let mut reader = Reader::default();
        let mut rules = Vec::new();
        let mut bad = Vec::new();
        reader.read(
            text,
            &mut |r| {
                rules.push(r);
                Ok(())
            },
            &mut |line, _text: &str, reason| bad.push((line, reason)),
        );
        (rules, bad, reader.ignored)
    }

    fn name(name: &str, wildcard: bool, action: Option<RuleAction>) -> RpzRule {
        RpzRule::Name {
            name: name.into(),
            wildcard,
            action,
        }
    }

    const ZONE: &str = r#"
$TTL 300
$ORIGIN rpz.example.org.
@   IN  SOA ns1.example.org. hostmaster.example.org. (
        2026120101 ; serial
        3600       ; refresh
        600 86400
        60 )       ; minimum
    IN  NS  ns1.example.org.
; names
tiktok.com              CNAME .
*.tiktok.com            CNAME .
tiktokv.com     60 IN   CNAME *.
developers.tiktok.com   CNAME rpz-passthru.
self.tiktok.com         CNAME self.tiktok.com.
page.example.net.rpz.example.org.  A  192.0.2.53
                        AAAA 2001:db8::53
drop.example            CNAME rpz-drop.
tcp.example             CNAME rpz-tcp-only.
garden.example          CNAME walled-garden.example.org.
txt.example             TXT "a ; quoted" ; not a comment inside the quotes
; triggers sinkhole does not apply
ns.example.rpz-nsdname  CNAME .
32.1.2.0.192.rpz-nsip   CNAME .
32.5.1.168.192.rpz-client-ip CNAME .
; addresses
32.1.2.0.203.rpz-ip     CNAME .
24.0.100.51.198.rpz-ip  CNAME .
48.zz.66.db8.2001.rpz-ip CNAME .
128.1.zz.db8.2001.rpz-ip CNAME rpz-passthru.
; bad lines
outside.example.com.    CNAME .
bad..name               CNAME .
33.1.2.0.203.rpz-ip     CNAME .
24.1.2.0.203.rpz-ip     CNAME .
host.example            A    not-an-address
nodata.example          CNAME
$INCLUDE other.zone
"#;

    #[test]
    fn a_realistic_zone_reads_as_rules() {
        assert!(looks_like_zone(ZONE));
        let (rules, bad, ignored) = read(ZONE);
        let redirect = |v4: Option<&str>, v6: Option<&str>| {
            Some(RuleAction::Redirect {
                v4: v4.map(|a| a.parse().expect("v4")),
                v6: v6.map(|a| a.parse().expect("v6")),
            })
        };
        let range = |net: &str, action| RpzRule::Range {
            net: net.parse().expect("net"),
            action,
        };
        assert_eq!(
            rules,
            vec![
                name("tiktok.com", false, Some(RuleAction::Nxdomain)),
                name("tiktok.com", true, Some(RuleAction::Nxdomain)),
                name("tiktokv.com", false, Some(RuleAction::Nodata)),
                name("developers.tiktok.com", false, Some(RuleAction::Passthru)),
                name("self.tiktok.com", false, Some(RuleAction::Passthru)),
                name("page.example.net", false, redirect(Some("192.0.2.53"), None)),
                name("page.example.net", false, redirect(None, Some("2001:db8::53"))),
                name("drop.example", false, Some(RuleAction::Nxdomain)),
                name("garden.example", false, None),
                range("203.0.2.1/32", Some(RuleAction::Nxdomain)),
                range("198.51.100.0/24", Some(RuleAction::Nxdomain)),
                range("2001:db8:66::/48", Some(RuleAction::Nxdomain)),
                range("2001:db8::1/128", Some(RuleAction::Passthru)),
            ]
        );
        assert_eq!(
            ignored,
            RpzIgnored {
                nsdname: 1,
                nsip: 1,
                client_ip: 1,
                tcp_only: 1,
                other_data: 1,
            }
        );
        let bad_lines: Vec<usize> = bad.iter().map(|(line, _)| *line).collect();
        let first_bad = ZONE.lines().position(|l| l.starts_with("outside")).expect("line") + 1;
        assert_eq!(bad_lines, (first_bad..first_bad + 7).collect::<Vec<_>>(), "{bad:?}");
        assert!(bad[0].1.contains("outside the zone rpz.example.org."), "{}", bad[0].1);
        assert!(bad[5].1.contains("has no data"), "{}", bad[5].1);
        assert!(bad[6].1.contains("$INCLUDE"), "{}", bad[6].1);
        assert_eq!(ignored.lines().len(), 5);
        assert!(ignored.lines()[0].starts_with("1 rpz-nsdname triggers ignored"));
    }

    #[test]
    fn the_origin_comes_from_the_soa_or_names_stay_as_written() {
        // No $ORIGIN: the SOA's absolute owner is the zone.
        let (rules, bad, _) =
            read("rpz.local. 3600 SOA ns. host. 1 2 3 4 5\nx.example.rpz.local. CNAME .\ny.example CNAME .\n");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            rules,
            vec![
                name("x.example", false, Some(RuleAction::Nxdomain)),
                name("y.example", false, Some(RuleAction::Nxdomain))
            ]
        );
        // No origin at all (`@` for the SOA): relative names are the triggers.
        let (rules, bad, _) = read("$TTL 1h\n@ SOA ns. host. 1 2 3 4 5\nz.example IN 1w CNAME .\n");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rules, vec![name("z.example", false, Some(RuleAction::Nxdomain))]);
        // A relative $ORIGIN goes below the one before.
        let (rules, _, _) = read("$ORIGIN example.\n$ORIGIN rpz\n@ SOA a. b. 1 2 3 4 5\nq.rpz.example. CNAME .\n");
        assert_eq!(rules, vec![name("q", false, Some(RuleAction::Nxdomain))]);
    }

    #[test]
    fn an_unclosed_parenthesis_is_one_bad_line() {
        let (rules, bad, _) = read("$ORIGIN rpz.\n@ SOA a. b. ( 1 2 3\nx CNAME .\n");
        assert!(rules.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 2);
    }

    #[test]
    fn only_zones_are_recognised() {
        assert!(looks_like_zone("; comment\n$ORIGIN rpz.\n"));
        assert!(looks_like_zone("@ 300 IN SOA ns. host. 1 2 3 4 5\n"));
        assert!(!looks_like_zone("tiktok.com\n0.0.0.0 soa.example\n||x.com^\n# SOA\n"));
        assert!(
            !looks_like_zone("0.0.0.0 soa\n127.0.0.1 SOA\n"),
            "a hosts line for a host named soa"
        );
        assert!(looks_like_zone("@ SOA ns. host. (\n 1 2 3 4 5 )\n"));
        assert!(!looks_like_zone(""));
    }

    #[test]
    fn ip_triggers_read_as_the_draft_writes_them() {
        let net = |s: &str| s.parse::<IpNet>().ok();
        assert_eq!(ip_trigger("32.1.2.0.203.rpz-ip"), net("203.0.2.1/32"));
        assert_eq!(ip_trigger("8.0.0.0.10.rpz-ip"), net("10.0.0.0/8"));
        assert_eq!(ip_trigger("128.1.zz.3.4.2001.rpz-ip"), net("2001:4:3::1/128"));
        assert_eq!(ip_trigger("32.zz.db8.2001.rpz-ip"), net("2001:db8::/32"));
        assert_eq!(ip_trigger("128.1.zz.rpz-ip"), net("::1/128"));
        assert_eq!(ip_trigger("0.zz.rpz-ip"), net("::/0"));
        assert_eq!(ip_trigger("128.8.7.6.5.4.3.2.1.rpz-ip"), net("1:2:3:4:5:6:7:8/128"));
        for bad in [
            "33.1.2.0.203.rpz-ip",
            "24.1.2.0.203.rpz-ip",
            "x.1.2.0.203.rpz-ip",
            "32.1.2.203.rpz-ip",
            "64.zz.1.zz.2001.rpz-ip",
            "32.rpz-ip",
            "rpz-ip",
        ] {
            assert_eq!(ip_trigger(bad), None, "{bad}");
        }
    }
}
