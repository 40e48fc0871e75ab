//! Reading one list line: which format it is in, what rules it holds, or why it is unusable.
//!
//! Owns the accepted line formats (plain domains, hosts files, `*.domain`, adblock `||domain^` / `|domain^` with
//! `*` wildcards, `#` and `!` comments) and [`RuleError`], the operator-facing reason a line is skipped. It must
//! not store anything: it hands validated, not yet lowercased, rule bodies to the builder, which normalises them
//! into its arena. It never panics and never allocates on a good line; errors allocate their message.

use std::net::IpAddr;

use super::glob;

/// The longest name DNS can carry in presentation form, without the trailing dot (RFC 1035: 255 octets on the wire).
const MAX_NAME_LEN: usize = 253;
/// The longest label DNS allows (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Names that hosts files map for the machine itself. They appear in almost every published hosts list, mean
/// nothing to a sinkhole, and are skipped without a complaint.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Adblock cosmetic (element-hiding and scriptlet) separators: `example.com##.banner`.
const COSMETIC_MARKERS: &[&str] = &["##", "#@#", "#?#", "#$#", "#%#"];

/// Why one rule cannot be used. Its `Display` is the reason `sinkhole check` prints for a skipped line, so every
/// message says what to write instead.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// `add_rule` was given a blank line, a comment, or only hosts boilerplate.
    #[error("no rule here (blank, a comment, or only hosts boilerplate like localhost)")]
    NoRule,
    /// A name with bytes outside ASCII: DNS carries internationalised names as punycode.
    #[error("`{0}` is not ASCII: write internationalised names in their xn-- (punycode) form")]
    NonAscii(String),
    /// Longer than DNS allows.
    #[error("name is {0} bytes long; DNS names are at most 253")]
    NameTooLong(usize),
    /// One label longer than DNS allows.
    #[error("label `{0}` is longer than 63 bytes, the most DNS allows")]
    LabelTooLong(String),
    /// `a..b`, `.a.b`: a name with an empty label cannot be asked for.
    #[error("name has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    /// A character that no host name contains.
    #[error("character `{0}` is not valid in a host name (letters, digits, `-` and `_` are)")]
    InvalidCharacter(char),
    /// Adblock `$` modifiers (`$important`, `$client=...`) change how a rule applies; we cannot honour them.
    #[error("adblock modifiers (`$...`) are not supported; remove the modifier, or scope the rule with a policy")]
    Modifier,
    /// Adblock `@@` exceptions: unblocking is the allow list's job, kept apart so it can be audited.
    #[error("adblock exceptions (`@@...`) are not supported in a block list; put exceptions in an allow list")]
    Exception,
    /// `/regex/` rules: unbounded cost per query, so not supported.
    #[error(
        "regular expressions (`/.../`) are not supported; write the domain, or a wildcard like ||cdn-*.example.com^"
    )]
    Regex,
    /// `example.com##.banner`: element hiding happens in browsers, not in DNS.
    #[error("element-hiding rules (`##...`) are for browsers; DNS cannot apply them")]
    Cosmetic,
    /// A URL or a path: DNS only ever sees the host name.
    #[error("URLs and paths cannot be blocked by DNS; write only the host name")]
    Url,
    /// An address with no name: there is nothing to match a query against.
    #[error("an IP address alone is not a rule; write a domain name, or `0.0.0.0 name` in hosts format")]
    BareIp,
    /// A hosts line that maps names to a real address is a redirect, not a block; we only block.
    #[error("hosts line maps names to {0}; only block entries (0.0.0.0, 127.x.x.x, ::, ::1) are accepted")]
    NotSinkholeAddress(IpAddr),
    /// `ads*` or `*tiktok*`: the set finds wildcard rules by the domain they end in, so they need one.
    #[error("a wildcard rule needs a fixed domain after its last `*`, like ||cdn-*.example.com^")]
    WildcardWithoutDomain,
    /// `example.com^`: without `||` or `|` the adblock meaning is a substring match, which DNS cannot honour.
    #[error("adblock rule needs a `||` (name and subdomains) or `|` (exact name) anchor, like ||example.com^")]
    MissingAnchor,
    /// `example.com other.com` without an address in front: not a format we know.
    #[error("unexpected text after the name: `{0}`")]
    TrailingText(String),
    /// The list is past the set's 4 GiB text limit; far beyond any real list, but refused rather than wrapped.
    #[error("list too large: the rule text exceeds 4 GiB")]
    TooLarge,
}

/// How a rule matches names. The discriminant is stored in each rule's span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// The domain and every name below it, on label boundaries (`tiktok.com`, `||tiktok.com^`).
    Suffix,
    /// That name only (`|tiktok.com^`).
    Exact,
    /// A `*` pattern matched at a label boundary (`||p16-*.ibyteimg.com^`).
    GlobOnLabel,
    /// A `*` pattern matched against the whole name (`|v*.tiktokcdn-eu.com^`).
    GlobExact,
    /// An address range (`203.0.113.0/24`), matched against answers' addresses, never against names.
    Range,
}

/// One rule as read from a line: the kind and the domain or pattern as written (validated, trailing dot removed,
/// case not yet folded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ParsedRule<'a> {
    pub(super) kind: RuleKind,
    pub(super) body: &'a str,
}

/// Reads one line and hands each rule in it to `emit`.
///
/// A blank line, a comment or hosts boilerplate emits nothing and is `Ok`. A hosts line names several hosts: the
/// good ones are emitted even when one is bad, and the first error is returned so the line is still reported.
/// An error from `emit` (the set is full) is treated the same way.
pub(super) fn parse_line<'a>(
    line: &'a str,
    emit: &mut impl FnMut(ParsedRule<'a>) -> Result<(), RuleError>,
) -> Result<(), RuleError> {
    // Byte searches (memchr) rather than char-by-char walks: this runs once per line of lists with a million lines.
    let line = strip_comment(line.trim())?;
    match line.as_bytes().first() {
        None | Some(b'!') => return Ok(()),
        Some(b'[') if line.ends_with(']') => return Ok(()),
        Some(b'@') if line.starts_with("@@") => return Err(RuleError::Exception),
        Some(b'/') => return Err(RuleError::Regex),
        Some(_) => {}
    }
    if line.contains('$') {
        return Err(RuleError::Modifier);
    }
    if line.contains(':') && line.contains("://") {
        return Err(RuleError::Url);
    }
    if let Some(body) = line.strip_prefix("||") {
        return emit(adblock(body, RuleKind::Suffix, RuleKind::GlobOnLabel)?);
    }
    if let Some(body) = line.strip_prefix('|') {
        return emit(adblock(body, RuleKind::Exact, RuleKind::GlobExact)?);
    }
    if !line.bytes().any(|b| b.is_ascii_whitespace()) {
        return match parse_ip(line) {
            Some(_) => Err(RuleError::BareIp),
            None => emit(plain(line)?),
        };
    }
    let mut tokens = line.split_ascii_whitespace();
    let Some(first) = tokens.next() else {
        return Ok(());
    };
    match parse_ip(first) {
        Some(address) => hosts(address, tokens, emit),
        None => match tokens.next() {
            Some(extra) => Err(RuleError::TrailingText(extra.to_owned())),
            None => emit(plain(first)?),
        },
    }
}

/// Cuts a `#` comment: one at the start of the line or after whitespace. A `#` glued to text is either an
/// adblock cosmetic rule (rejected) or a stray character (left for the name check to reject).
fn strip_comment(line: &str) -> Result<&str, RuleError> {
    let mut from = 0;
    while let Some(found) = line.get(from..).and_then(|rest| rest.find('#')) {
        let at = from + found;
        let after_space = at == 0 || line.as_bytes().get(at - 1).is_some_and(|b| b.is_ascii_whitespace());
        if after_space {
            return Ok(line.get(..at).unwrap_or_default().trim_end());
        }
        let rest = line.get(at..).unwrap_or_default();
        if COSMETIC_MARKERS.iter().any(|m| rest.starts_with(m)) {
            return Err(RuleError::Cosmetic);
        }
        from = at + 1;
    }
    Ok(line)
}

/// The body of an adblock rule after its `||` or `|` anchor: `domain^`, `domain^|`, or `domain` alone (taken to
/// end at the name's end, which is the only place a DNS name can end).
fn adblock(body: &str, plain: RuleKind, wildcard: RuleKind) -> Result<ParsedRule<'_>, RuleError> {
    let body = body
        .strip_suffix("^|")
        .or_else(|| body.strip_suffix('^'))
        .unwrap_or(body);
    if body.contains('/') {
        return Err(RuleError::Url);
    }
    if let Some(extra) = body.split_ascii_whitespace().nth(1) {
        return Err(RuleError::TrailingText(extra.to_owned()));
    }
    let kind = if body.contains('*') { wildcard } else { plain };
    rule(kind, body)
}

/// A name on its own: `tiktok.com`, `tiktok.com.`, `*.tiktok.com` (the same as `tiktok.com`), or a pattern such
/// as `p16-*.ibyteimg.com` (read as `||p16-*.ibyteimg.com^`).
fn plain(token: &str) -> Result<ParsedRule<'_>, RuleError> {
    if token.contains('/') {
        return Err(RuleError::Url);
    }
    if token.ends_with('^') {
        return Err(RuleError::MissingAnchor);
    }
    match token.strip_prefix("*.") {
        Some(domain) if !domain.contains('*') => rule(RuleKind::Suffix, domain),
        _ if token.contains('*') => rule(RuleKind::GlobOnLabel, token),
        _ => rule(RuleKind::Suffix, token),
    }
}

/// The names of a hosts line (`0.0.0.0 a.example b.example`), boilerplate skipped.
fn hosts<'a>(
    address: IpAddr,
    names: impl Iterator<Item = &'a str>,
    emit: &mut impl FnMut(ParsedRule<'a>) -> Result<(), RuleError>,
) -> Result<(), RuleError> {
    let mut first_error = None;
    let mut any_name = false;
    for name in names {
        any_name = true;
        if HOSTS_BOILERPLATE
            .iter()
            .any(|b| b.eq_ignore_ascii_case(name.trim_end_matches('.')))
        {
            continue;
        }
        let outcome = if is_sinkhole(address) {
            plain(name).and_then(&mut *emit)
        } else {
            Err(RuleError::NotSinkholeAddress(address))
        };
        if let Err(e) = outcome {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if !any_name => Err(RuleError::BareIp),
        None => Ok(()),
    }
}

/// An address at the start of a line, zone index (`fe80::1%lo0`) allowed, as hosts files write them.
fn parse_ip(token: &str) -> Option<IpAddr> {
    // Most tokens are names: skip the parser unless the token could be an address at all.
    let could_be = token.contains(':') || token.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if !could_be {
        return None;
    }
    let address = token.split_once('%').map_or(token, |(a, _zone)| a);
    address.parse().ok()
}

/// Addresses that mean "nowhere" in a hosts file: the ones block lists use.
fn is_sinkhole(address: IpAddr) -> bool {
    address.is_unspecified() || address.is_loopback()
}

/// Checks a domain or pattern and makes it a rule: trailing dot removed, DNS length and character rules applied.
fn rule(kind: RuleKind, body: &str) -> Result<ParsedRule<'_>, RuleError> {
    let body = body.strip_suffix('.').unwrap_or(body);
    let wildcard = matches!(kind, RuleKind::GlobOnLabel | RuleKind::GlobExact);
    check_name(body, wildcard)?;
    if wildcard && glob::anchor(body.as_bytes()).is_none() {
        return Err(RuleError::WildcardWithoutDomain);
    }
    Ok(ParsedRule { kind, body })
}

/// The DNS rules an RPZ trigger name must follow (no `*`: a wildcard trigger's `*.` is cut off before).
pub(super) fn check_name_for_rpz(name: &str) -> Result<(), RuleError> {
    check_name(name, false)
}

/// The DNS rules a rule's name must follow. `*` is allowed only in wildcard patterns. One pass over the bytes.
fn check_name(name: &str, wildcard: bool) -> Result<(), RuleError> {
    if name.is_empty() {
        return Err(RuleError::NoRule);
    }
    if !name.is_ascii() {
        return Err(RuleError::NonAscii(name.to_owned()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(RuleError::NameTooLong(name.len()));
    }
    let label_too_long =
        |start: usize, end: usize| RuleError::LabelTooLong(name.get(start..end).unwrap_or_default().to_owned());
    let mut label_start = 0;
    // An all-digit name might be an IPv4 address; only then is the address parser worth running.
    let mut digits_and_dots = true;
    for (at, &byte) in name.as_bytes().iter().enumerate() {
        match byte {
            b'.' => {
                if at == label_start {
                    return Err(RuleError::EmptyLabel);
                }
                if at - label_start > MAX_LABEL_LEN {
                    return Err(label_too_long(label_start, at));
                }
                label_start = at + 1;
            }
            b'0'..=b'9' => {}
            b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' => digits_and_dots = false,
            b'*' if wildcard => digits_and_dots = false,
            _ if byte == b':' && name.parse::<IpAddr>().is_ok() => return Err(RuleError::BareIp),
            _ => return Err(RuleError::InvalidCharacter(char::from(byte))),
        }
    }
    if label_start == name.len() {
        return Err(RuleError::EmptyLabel);
    }
    if name.len() - label_start > MAX_LABEL_LEN {
        return Err(label_too_long(label_start, name.len()));
    }
    if digits_and_dots && name.parse::<IpAddr>().is_ok() {
        return Err(RuleError::BareIp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule a line yields, or its error, as (kind, body) pairs.
    fn parse(line: &str) -> (Vec<(RuleKind, String)>, Result<(), RuleError>) {
        let mut rules = Vec::new();
        let outcome = parse_line(line, &mut |r| {
            rules.push((r.kind, r.body.to_owned()));
            Ok(())
        });
        (rules, outcome)
    }

    #[test]
    fn accepted_formats() {
        use RuleKind::*;
        let cases: &[(&str, &[(RuleKind, &str)])] = &[
            ("tiktok.com", &[(Suffix, "tiktok.com")]),
            ("  TikTok.COM.  ", &[(Suffix, "TikTok.COM")]),
            ("*.tiktok.com", &[(Suffix, "tiktok.com")]),
            ("0.0.0.0 tiktok.com", &[(Suffix, "tiktok.com")]),
            (
                "127.0.0.1\ttiktok.com tiktokv.com",
                &[(Suffix, "tiktok.com"), (Suffix, "tiktokv.com")],
            ),
            ("127.0.1.1 tiktok.com", &[(Suffix, "tiktok.com")]),
            (":: tiktok.com", &[(Suffix, "tiktok.com")]),
            ("::1 tiktok.com # the app", &[(Suffix, "tiktok.com")]),
            ("||tiktok.com^", &[(Suffix, "tiktok.com")]),
            ("||tiktok.com^|", &[(Suffix, "tiktok.com")]),
            ("||tiktok.com", &[(Suffix, "tiktok.com")]),
            ("||tiktok.com.^", &[(Suffix, "tiktok.com")]),
            ("|x.net^", &[(Exact, "x.net")]),
            (
                "||p16-tiktok-*.ibyteimg.com^",
                &[(GlobOnLabel, "p16-tiktok-*.ibyteimg.com")],
            ),
            ("||v*.tiktokcdn-eu.com^", &[(GlobOnLabel, "v*.tiktokcdn-eu.com")]),
            ("|v*.tiktokcdn-eu.com^", &[(GlobExact, "v*.tiktokcdn-eu.com")]),
            ("p16-*.ibyteimg.com", &[(GlobOnLabel, "p16-*.ibyteimg.com")]),
            ("||*.tiktok.com^", &[(GlobOnLabel, "*.tiktok.com")]),
            ("_dmarc.example.com", &[(Suffix, "_dmarc.example.com")]),
            ("xn--mnchen-3ya.de", &[(Suffix, "xn--mnchen-3ya.de")]),
            ("tiktok.com # comment", &[(Suffix, "tiktok.com")]),
            ("tiktok.com\t# comment", &[(Suffix, "tiktok.com")]),
        ];
        for &(line, want) in cases {
            let (rules, outcome) = parse(line);
            assert_eq!(outcome, Ok(()), "{line:?}");
            let want: Vec<_> = want.iter().map(|&(k, b)| (k, b.to_owned())).collect();
            assert_eq!(rules, want, "{line:?}");
        }
    }

    #[test]
    fn silent_lines() {
        let lines = [
            "",
            "   ",
            "# a comment",
            "#0.0.0.0 tiktok.com",
            "! adblock comment",
            "[Adblock Plus 2.0]",
            "127.0.0.1 localhost",
            "127.0.0.1 localhost.localdomain local",
            "255.255.255.255 broadcasthost",
            "::1 ip6-localhost ip6-loopback",
            "fe80::1%lo0 localhost",
            "ff02::1 ip6-allnodes",
            "0.0.0.0 0.0.0.0",
            "0.0.0.0 LOCALHOST",
        ];
        for line in lines {
            assert_eq!(parse(line), (vec![], Ok(())), "{line:?}");
        }
    }

    #[test]
    fn bad_lines_say_why() {
        use RuleError::*;
        let cases: &[(&str, RuleError)] = &[
            ("münchen.de", NonAscii("münchen.de".into())),
            ("||bücher.de^", NonAscii("bücher.de".into())),
            (&format!("{}.com", "a".repeat(64)), LabelTooLong("a".repeat(64))),
            (&format!("{}bc", "a.".repeat(127)), NameTooLong(256)),
            ("a..b", EmptyLabel),
            (".tiktok.com", EmptyLabel),
            ("tik tok", TrailingText("tok".into())),
            ("tiktok!.com", InvalidCharacter('!')),
            ("tiktok.com#x", InvalidCharacter('#')),
            ("ex*ample", WildcardWithoutDomain),
            ("||tiktok.com^$important", Modifier),
            ("||tiktok.com^$client=10.0.0.0/8", Modifier),
            ("@@||tiktok.com^", Exception),
            ("/tik[0-9]+tok/", Regex),
            ("example.com##.banner", Cosmetic),
            ("example.com#@#.banner", Cosmetic),
            ("https://www.tiktok.com/@user", Url),
            ("www.tiktok.com/foryou", Url),
            ("||tiktok.com/video^", Url),
            ("|https://tiktok.com^", Url),
            ("1.2.3.4", BareIp),
            ("0.0.0.0", BareIp),
            ("||1.2.3.4^", BareIp),
            (
                "192.168.1.10 intranet.example",
                NotSinkholeAddress("192.168.1.10".parse().unwrap()),
            ),
            ("||ads*^", WildcardWithoutDomain),
            ("||*tiktok*^", WildcardWithoutDomain),
            ("tiktok.com^", MissingAnchor),
            ("||^", NoRule),
        ];
        for (line, want) in cases {
            let (rules, outcome) = parse(line);
            assert_eq!(outcome.as_ref(), Err(want), "{line:?}");
            assert!(rules.is_empty(), "{line:?}: {rules:?}");
        }
    }

    #[test]
    fn hosts_line_keeps_good_names_and_reports_the_bad_one() {
        let (rules, outcome) = parse("0.0.0.0 tiktok.com bad!name tiktokv.com");
        assert_eq!(outcome, Err(RuleError::InvalidCharacter('!')));
        let bodies: Vec<_> = rules.iter().map(|(_, b)| b.as_str()).collect();
        assert_eq!(bodies, ["tiktok.com", "tiktokv.com"]);
    }

    #[test]
    fn messages_tell_the_operator_what_to_do() {
        assert!(RuleError::NonAscii("bücher.de".into()).to_string().contains("xn--"));
        assert!(RuleError::Exception.to_string().contains("allow list"));
        assert!(RuleError::Url.to_string().contains("host name"));
    }
}
