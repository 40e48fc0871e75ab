//! What this binary is: its version, the commit it was built from and the date of the lists
//! compiled into it, for `sinkhole --version` and the `sinkhole_build_info` metric. An admin
//! asked "which TikTok list does this resolver block with?" answers from here.
//!
//! The commit comes from build.rs (`SINKHOLE_COMMIT`); the lists' date from the lists' own
//! headers, so that it cannot drift from what is compiled in. Nothing here does I/O.

use std::sync::LazyLock;

use jiff::civil::Date;

use crate::lists;

/// The commit the binary was built from: a short git hash, or "unknown" (a build from a
/// tarball that did not say, see build.rs).
pub const COMMIT: &str = env!("SINKHOLE_COMMIT");

/// The crate's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The header keys a list's date may follow, lowercase: ours (`# Updated:`) and those of
/// the lists admins copy in (AdGuard's and EasyList's `! Last modified:`, hosts files' `# Date:`).
const DATE_KEYS: [&str; 4] = ["updated", "last modified", "last updated", "date"];

/// The date a list's header gives (`# Updated: 2026-12-01`, `! Last modified: 2026-12-01T10:00Z`),
/// from the comment lines before its first rule; None if it gives none. A date in a comment
/// after the first rule is a note about that rule, not the list's date.
pub fn list_date(text: &str) -> Option<Date> {
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('[') {
            continue;
        }
        // The header ends at the first line that is not a comment.
        let comment = line.strip_prefix('#').or_else(|| line.strip_prefix('!'))?;
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        if !DATE_KEYS.contains(&key.trim().to_ascii_lowercase().as_str()) {
            continue;
        }
        // The day of a timestamp will do: a list is dated, not timed.
        let value = value.trim();
        if let Some(day) = value.get(..10)
            && let Ok(date) = day.parse::<Date>()
        {
            return Some(date);
        }
    }
    None
}

/// The newest date of the built-in lists' headers: the day the compiled-in lists were last
/// changed. None if none is dated.
pub fn builtin_lists_date() -> Option<Date> {
    lists::builtin_names()
        .iter()
        .filter_map(|name| lists::builtin(name))
        .filter_map(list_date)
        .max()
}

/// The built-in lists' date as `--version` and the metric show it: `2026-12-01`, or "unknown".
pub fn lists_label() -> String {
    builtin_lists_date().map_or_else(|| "unknown".to_string(), |d| d.to_string())
}

/// `0.1.0 (commit abc1234, built-in lists of 2026-12-01)`: what `sinkhole --version` prints
/// after the program's name. Built once; clap wants it for the life of the program.
pub fn line() -> &'static str {
    static LINE: LazyLock<String> =
        LazyLock::new(|| format!("{VERSION} (commit {COMMIT}, built-in lists of {})", lists_label()));
    &LINE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_date_is_read_from_the_header_only() {
        let date = |s: &str| Some(s.parse::<Date>().expect("test date"));
        let cases: &[(&str, Option<Date>)] = &[
            ("# a list\n# Updated: 2026-11-20\n#\nexample.com\n", date("2026-11-20")),
            (
                "! Title: AdGuard\n! Last modified: 2026-10-01T12:00:00.000Z\n||x.com^\n",
                date("2026-10-01"),
            ),
            ("[Adblock Plus 2.0]\n! Last updated: 2026-09-30\n", date("2026-09-30")),
            ("# Date: 2026-01-02 10:00\n127.0.0.1 x.com\n", date("2026-01-02")),
            ("\n\n#   UPDATED :   2025-05-05\n", date("2025-05-05")),
            // After the first rule: a note about a rule, not the list's date.
            ("example.com\n# Updated: 2026-11-20\n", None),
            ("# Updated: soon\n# Updated: 2026-11-20\n", date("2026-11-20")),
            ("# Updated: 2026-13-40\n", None),
            ("# Created: 2026-11-20\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(list_date(text), *want, "{text:?}");
        }
    }

    #[test]
    fn every_builtin_list_is_dated_and_the_version_line_names_the_newest() {
        for name in lists::builtin_names() {
            let text = lists::builtin(name).expect("a built-in name has a list");
            assert!(
                list_date(text).is_some(),
                "blocklists/{name}.txt has no `# Updated: YYYY-MM-DD` line in its header"
            );
        }
        let newest = builtin_lists_date().expect("the built-in lists are dated");
        assert_eq!(
            line(),
            format!("{VERSION} (commit {COMMIT}, built-in lists of {newest})")
        );
        assert!(
            COMMIT == "unknown" || COMMIT.chars().all(|c| c.is_ascii_hexdigit()),
            "{COMMIT}"
        );
    }
}
