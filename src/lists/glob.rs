//! Wildcard (`*`) matching for adblock rules such as `||p16-tiktok-*.ibyteimg.com^`.
//!
//! Owns the byte-level glob matcher and the rule's *anchor*: the fixed domain after the last `*`, by which
//! `DomainSet` indexes the rule. It must not allocate or recurse: it runs on the query path, on names an
//! attacker chooses, so its work is bounded by `pattern length x name length` (at most 256 x 255 steps).

/// The fixed domain a wildcard pattern ends in, on a label boundary: `ibyteimg.com` for `p16-tiktok-*.ibyteimg.com`,
/// `tiktokcdn-eu.com` for `v*.tiktokcdn-eu.com`.
///
/// A name can only match the pattern if it ends in this domain, so the set looks the pattern up by it and never
/// tries it on other names. `None` when nothing whole follows the last `*` (`ads*`, `*tiktok*`): such a pattern
/// cannot be indexed, and the parser rejects it.
pub(super) fn anchor(pattern: &[u8]) -> Option<&[u8]> {
    let star = pattern.iter().rposition(|&b| b == b'*')?;
    let tail = pattern.get(star + 1..)?;
    let dot = tail.iter().position(|&b| b == b'.')?;
    let anchor = tail.get(dot + 1..)?;
    (!anchor.is_empty()).then_some(anchor)
}

/// The literal text after a pattern's last `*` (`-va.ibyteimg.com` for `p16-*-va.ibyteimg.com`): every matching
/// name ends with it, which rejects most non-matching names before the matcher runs.
pub(super) fn tail(pattern: &[u8]) -> &[u8] {
    match pattern.iter().rposition(|&b| b == b'*') {
        Some(star) => pattern.get(star + 1..).unwrap_or_default(),
        None => pattern,
    }
}

/// Whether the whole of `name` matches `pattern` (AdGuard's `|pattern^`): `*` matches any run of bytes, dots
/// included, and every other byte matches itself.
pub(super) fn matches_exact(pattern: &[u8], name: &[u8]) -> bool {
    matches_with_prefix(b"", pattern, name)
}

/// Whether `name` or one of its label-boundary suffixes matches `pattern` (AdGuard's `||pattern^`).
///
/// "Some suffix after a dot matches" is the same as "the whole name matches `*.` + pattern", so this is two
/// linear-ish passes rather than one pass per label.
pub(super) fn matches_on_label(pattern: &[u8], name: &[u8]) -> bool {
    matches_exact(pattern, name) || matches_with_prefix(b"*.", pattern, name)
}

/// The matcher proper, on the pattern `prefix` + `pattern` (kept apart so that no buffer is built).
///
/// It is the classic greedy matcher: walk both strings, and on a mismatch go back to just after the last `*`,
/// letting that star swallow one more byte. Only the last star needs remembering, because a later star can
/// absorb anything an earlier one could. Steps are bounded by `pattern.len() x name.len()`.
fn matches_with_prefix(prefix: &[u8], pattern: &[u8], name: &[u8]) -> bool {
    let at = |i: usize| match i.checked_sub(prefix.len()) {
        None => prefix.get(i).copied(),
        Some(j) => pattern.get(j).copied(),
    };
    let pattern_len = prefix.len() + pattern.len();
    let (mut p, mut n) = (0, 0);
    // Where to resume after a mismatch: the pattern index just after the last star, and the name index that
    // star has swallowed up to.
    let mut resume: Option<(usize, usize)> = None;
    while let Some(&byte) = name.get(n) {
        match at(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, n));
            }
            Some(expected) if expected == byte => {
                p += 1;
                n += 1;
            }
            _ => match resume {
                Some((star_p, star_n)) => {
                    p = star_p;
                    n = star_n + 1;
                    resume = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    while at(p) == Some(b'*') {
        p += 1;
    }
    p == pattern_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_is_the_whole_labels_after_the_last_star() {
        let cases: &[(&str, Option<&str>)] = &[
            ("p16-tiktok-*.ibyteimg.com", Some("ibyteimg.com")),
            ("v*.tiktokcdn-eu.com", Some("tiktokcdn-eu.com")),
            ("p16-*-va.ibyteimg.com", Some("ibyteimg.com")),
            ("*.tiktok.com", Some("tiktok.com")),
            ("a*b*.c.d", Some("c.d")),
            ("*tiktok*.ttdns2.com", Some("ttdns2.com")),
            ("ads*", None),
            ("*tiktok*", None),
            ("a.*", None),
            ("x*.", None),
        ];
        for &(pattern, want) in cases {
            assert_eq!(anchor(pattern.as_bytes()), want.map(str::as_bytes), "{pattern}");
        }
    }

    #[test]
    fn tail_is_the_literal_after_the_last_star() {
        assert_eq!(tail(b"p16-*-va.ibyteimg.com"), b"-va.ibyteimg.com");
        assert_eq!(tail(b"a*"), b"");
        assert_eq!(tail(b"abc"), b"abc");
    }

    #[test]
    fn exact_and_label_matching_follow_adguard() {
        // (pattern, name, matches_exact, matches_on_label)
        let cases: &[(&str, &str, bool, bool)] = &[
            ("p16-tiktok-*.ibyteimg.com", "p16-tiktok-va.ibyteimg.com", true, true),
            (
                "p16-tiktok-*.ibyteimg.com",
                "p16-tiktok-sign-va-h2.ibyteimg.com",
                true,
                true,
            ),
            ("p16-tiktok-*.ibyteimg.com", "x.p16-tiktok-va.ibyteimg.com", false, true),
            ("p16-tiktok-*.ibyteimg.com", "xp16-tiktok-va.ibyteimg.com", false, false),
            ("p16-tiktok-*.ibyteimg.com", "p16-sign-va.ibyteimg.com", false, false),
            ("p16-tiktok-*.ibyteimg.com", "ibyteimg.com", false, false),
            // `*` crosses dots, as in AdGuard.
            ("p16-tiktok-*.ibyteimg.com", "p16-tiktok-a.b.ibyteimg.com", true, true),
            ("v*.tiktokcdn-eu.com", "v16m.tiktokcdn-eu.com", true, true),
            ("v*.tiktokcdn-eu.com", "v.tiktokcdn-eu.com", true, true),
            ("v*.tiktokcdn-eu.com", "p16.tiktokcdn-eu.com", false, false),
            ("*.tiktok.com", "tiktok.com", false, false),
            ("*.tiktok.com", "www.tiktok.com", true, true),
            ("*tiktok*.ttdns2.com", "tiktokv.com.ttdns2.com", true, true),
            ("*tiktok*.ttdns2.com", "larksuite.com.ttdns2.com", false, false),
            ("a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true, true),
            ("a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, false),
            ("a**b", "ab", true, true),
            ("*", "", true, true),
            ("a*", "", false, false),
        ];
        for &(pattern, name, exact, on_label) in cases {
            let (p, n) = (pattern.as_bytes(), name.as_bytes());
            assert_eq!(matches_exact(p, n), exact, "|{pattern}^ vs {name}");
            assert_eq!(matches_on_label(p, n), on_label, "||{pattern}^ vs {name}");
        }
    }

    #[test]
    fn worst_case_input_terminates() {
        // 255 bytes of `a.` against a pattern that backtracks at every star.
        let name: Vec<u8> = b"a.".iter().copied().cycle().take(255).collect();
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b.ibyteimg.com";
        assert!(!matches_on_label(pattern, &name));
    }
}
