//! What a run saw and how it is shown: the per-thread [`Tally`] of answers (rcodes, EDE "Blocked"
//! verdicts by policy, latency histogram) filled by the hot loop without allocating, and the
//! [`Summary`] printed at the end as a table or as one JSON object.
//!
//! The verdicts are read from Extended DNS Errors (RFC 8914): sinkhole's block answers carry
//! info code 15 ("Blocked") with the text "blocked by policy NAME", grouped here by NAME. Only
//! queries with EDNS can carry it, which is why dnsperf files are sent with EDNS by default.
//! A policy in audit mode answers normally and adds no EDE: its would-be blocks are in the hit log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use sinkhole_dns::packet;
use sinkhole_dns::wire::{self, HEADER_LEN, rtype, u16_at};

use super::input::InputStats;

/// EDE info code "Blocked" (RFC 8914 4.16).
const EDE_BLOCKED: u16 = 15;
/// EDNS option code of Extended DNS Errors.
const OPTION_EDE: u16 = 15;
/// The prefix sinkhole writes before the policy name in a Blocked EDE.
const BLOCKED_PREFIX: &[u8] = b"blocked by policy ";
/// Most distinct Blocked texts counted by name; more are counted under [`OTHER_TEXTS`] so that
/// a server writing a new text per answer cannot make the tally grow without bound.
const MAX_TEXTS: usize = 64;
/// The key under which Blocked answers past [`MAX_TEXTS`] distinct texts are counted.
const OTHER_TEXTS: &str = "(other)";
/// EDE info codes below this are counted one by one; the rest together.
const EDE_CODES: usize = 32;
/// Largest latency the histogram records exactly (longer ones are recorded as this): two minutes.
const MAX_LATENCY_NS: u64 = 120_000_000_000;

/// Counts of one sending thread, merged into the [`Summary`] at the end.
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    /// Queries sent.
    pub sent: u64,
    /// Answers matched to a query in time.
    pub answered: u64,
    /// Queries with no answer within the timeout.
    pub lost: u64,
    /// Datagrams that matched no query in flight: answers after the timeout, wrong ids or
    /// questions.
    pub unmatched: u64,
    /// Answers with TC set (the server wants TCP; replay does not retry).
    pub truncated: u64,
    /// Answers by rcode (the header's 4 bits).
    rcodes: [u64; 16],
    /// Answers with an EDE, by info code (below [`EDE_CODES`]; the last slot for the rest).
    ede: [u64; EDE_CODES + 1],
    /// Blocked answers by EDE text, policy prefix stripped.
    blocked: Vec<(Box<[u8]>, u64)>,
    /// Negative block answers with no EDE (see [`Summary::blocked_without_policy`]).
    blocked_without_policy: u64,
    /// Latency of answered queries, nanoseconds.
    latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    /// An empty tally; the histogram is allocated here, once, for the whole run.
    pub(crate) fn new() -> Tally {
        Tally {
            sent: 0,
            answered: 0,
            lost: 0,
            unmatched: 0,
            truncated: 0,
            rcodes: [0; 16],
            ede: [0; EDE_CODES + 1],
            blocked: Vec::with_capacity(8),
            blocked_without_policy: 0,
            // 3 significant digits from 1 ns to MAX_LATENCY_NS: fixed size, never resized.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant bounds are valid: low 1, high > 2 * low, 3 significant digits"),
        }
    }

    /// Records one answer to a query in flight, `latency` after it was sent. Allocates only the
    /// first time a Blocked text is seen.
    pub(crate) fn answer(&mut self, answer: &[u8], latency: Duration) {
        self.answered += 1;
        let latency_ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(latency_ns.clamp(1, MAX_LATENCY_NS));
        let Some(flags) = u16_at(answer, 2) else {
            return;
        };
        self.rcodes[usize::from(flags & 0xf)] += 1;
        if flags & wire::flag::TC != 0 {
            self.truncated += 1;
        }
        match find_ede(answer) {
            Some((code, text)) => {
                self.ede[usize::from(code).min(EDE_CODES)] += 1;
                if code == EDE_BLOCKED {
                    self.count_blocked(text.strip_prefix(BLOCKED_PREFIX).unwrap_or(text));
                }
            }
            None if has_sinkhole_soa(answer) => self.blocked_without_policy += 1,
            None => {}
        }
    }

    fn count_blocked(&mut self, text: &[u8]) {
        if let Some(entry) = self.blocked.iter_mut().find(|(t, _)| **t == *text) {
            entry.1 += 1;
        } else if self.blocked.len() < MAX_TEXTS {
            self.blocked.push((text.into(), 1));
        } else if let Some(entry) = self.blocked.iter_mut().find(|(t, _)| **t == *OTHER_TEXTS.as_bytes()) {
            entry.1 += 1;
        } else {
            // The last named slot gives way to the catch-all (keeping its count), so the bound holds.
            let folded = self.blocked.pop().map_or(0, |(_, count)| count);
            self.blocked.push((OTHER_TEXTS.as_bytes().into(), folded + 1));
        }
    }

    /// Adds another thread's counts to this one.
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.answered += other.answered;
        self.lost += other.lost;
        self.unmatched += other.unmatched;
        self.truncated += other.truncated;
        for (a, b) in self.rcodes.iter_mut().zip(&other.rcodes) {
            *a += b;
        }
        for (a, b) in self.ede.iter_mut().zip(&other.ede) {
            *a += b;
        }
        self.blocked_without_policy += other.blocked_without_policy;
        for (text, count) in &other.blocked {
            match self.blocked.iter_mut().find(|(t, _)| t == text) {
                Some(entry) => entry.1 += count,
                None => self.blocked.push((text.clone(), *count)),
            }
        }
        // Same bounds on both sides, so adding cannot fail; a failure would only lose latency data.
        let _ = self.latency.add(&other.latency);
    }
}

/// Whether the first authority record of `answer` is the SOA sinkhole writes in a negative block
/// answer (MNAME [`wire::SINKHOLE_SOA_MNAME`], written uncompressed): a block whose policy the
/// answer does not name (no EDE without EDNS). Allocates nothing.
fn has_sinkhole_soa(answer: &[u8]) -> bool {
    let [qd, an, ns, _] = wire::counts(answer);
    if ns == 0 {
        return false;
    }
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        let Ok(next) = wire::skip_question(answer, at) else {
            return false;
        };
        at = next;
    }
    for _ in 0..an {
        let Ok((_, next)) = wire::read_record(answer, at) else {
            return false;
        };
        at = next;
    }
    let Ok((record, _)) = wire::read_record(answer, at) else {
        return false;
    };
    let mname = answer.get(record.rdata).unwrap_or_default();
    record.rtype == rtype::SOA && starts_with_name(mname, wire::SINKHOLE_SOA_MNAME)
}

/// Whether `bytes` start with `name` (dotted) in uncompressed wire form, case-insensitively.
fn starts_with_name(bytes: &[u8], name: &str) -> bool {
    let mut at = 0;
    for label in name.split('.') {
        let Some(&len) = bytes.get(at) else {
            return false;
        };
        let Some(got) = bytes.get(at + 1..at + 1 + usize::from(len)) else {
            return false;
        };
        if usize::from(len) != label.len() || !got.eq_ignore_ascii_case(label.as_bytes()) {
            return false;
        }
        at += 1 + usize::from(len);
    }
    bytes.get(at) == Some(&0)
}

/// The first EDE option of the answer's OPT record: (info code, text). None without OPT or EDE,
/// or if the message cannot be walked that far.
pub(crate) fn find_ede(answer: &[u8]) -> Option<(u16, &[u8])> {
    let opt = packet::find_opt(answer).ok()??;
    let option = packet::edns_options(answer.get(opt.rdata)?)
        .map_while(Result::ok)
        .find(|option| option.code == OPTION_EDE && option.data.len() >= 2)?;
    Some((u16::from_be_bytes([option.data[0], option.data[1]]), &option.data[2..]))
}

/// The mnemonic of an rcode (RFC 6895), `RCODEn` for unassigned ones.
pub(crate) fn rcode_name(rcode: u8) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        n => return format!("RCODE{n}"),
    };
    name.to_string()
}

/// Latency percentiles of answered queries, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest answer.
    pub max: f64,
}

/// The run's result: what `--json` prints as one object (field names are a contract: scripts
/// and `cargo bench --bench replay` read them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// Queries sent.
    pub sent: u64,
    /// Queries answered within the timeout.
    pub answered: u64,
    /// Queries not answered within the timeout.
    pub lost: u64,
    /// `lost` as a percentage of `sent`.
    pub lost_pct: f64,
    /// Answers per second over `duration_s`.
    pub qps: f64,
    /// From the first query sent to the last query sent or answered, whichever is later (the
    /// wait for lost queries is not counted), seconds.
    pub duration_s: f64,
    /// Latency percentiles, microseconds.
    pub latency_us: Latency,
    /// Answers by rcode mnemonic.
    pub rcodes: BTreeMap<String, u64>,
    /// Answers carrying EDE "Blocked" (15), by policy name (the EDE text without "blocked by
    /// policy "; other servers' texts as they are).
    pub blocked: BTreeMap<String, u64>,
    /// Block answers that name no policy: NXDOMAIN/NODATA with sinkhole's SOA and no EDE, as the
    /// daemon answers a query without EDNS. A block with an address answer (`answer = "0.0.0.0"`)
    /// and no EDE cannot be told from a real answer and is not counted anywhere.
    pub blocked_without_policy: u64,
    /// Answers carrying any EDE, by info code (a blocked answer counts under "15").
    pub ede: BTreeMap<String, u64>,
    /// Answers with TC set (not retried over TCP).
    pub truncated: u64,
    /// Datagrams matching no query in flight (late answers, wrong ids or questions).
    pub unmatched: u64,
    /// The server loaded.
    pub server: String,
    /// What was read from the file.
    pub input: InputStats,
    /// The target rate, or null for as fast as possible.
    pub rate: Option<f64>,
    /// Queries in flight at most.
    pub window: usize,
    /// Sending threads.
    pub threads: usize,
    /// Why the run stopped early, if it did (null otherwise).
    pub aborted: Option<String>,
}

/// What [`Summary::new`] needs besides the tally.
#[derive(Clone, Debug)]
pub(crate) struct RunFacts {
    /// See [`Summary::duration_s`].
    pub duration: Duration,
    /// See [`Summary::server`].
    pub server: String,
    /// See [`Summary::input`].
    pub input: InputStats,
    /// See [`Summary::rate`].
    pub rate: Option<f64>,
    /// See [`Summary::window`].
    pub window: usize,
    /// See [`Summary::threads`].
    pub threads: usize,
    /// See [`Summary::aborted`].
    pub aborted: Option<String>,
}

impl Summary {
    /// The summary of a run from its merged tally.
    pub(crate) fn new(tally: &Tally, facts: RunFacts) -> Summary {
        let secs = facts.duration.as_secs_f64();
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &tally.latency;
        let latency_us = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: us(h.value_at_quantile(0.5)),
                p90: us(h.value_at_quantile(0.9)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
            }
        };
        let rcodes = (0u8..16)
            .filter(|&r| tally.rcodes[usize::from(r)] > 0)
            .map(|r| (rcode_name(r), tally.rcodes[usize::from(r)]))
            .collect();
        let blocked = tally
            .blocked
            .iter()
            .map(|(text, count)| (String::from_utf8_lossy(text).into_owned(), *count))
            .collect();
        let ede = tally
            .ede
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(code, &n)| {
                let key = if code == EDE_CODES {
                    format!("{EDE_CODES}+")
                } else {
                    code.to_string()
                };
                (key, n)
            })
            .collect();
        Summary {
            sent: tally.sent,
            answered: tally.answered,
            lost: tally.lost,
            lost_pct: if tally.sent == 0 {
                0.0
            } else {
                100.0 * tally.lost as f64 / tally.sent as f64
            },
            qps: if secs > 0.0 { tally.answered as f64 / secs } else { 0.0 },
            duration_s: secs,
            latency_us,
            rcodes,
            blocked,
            blocked_without_policy: tally.blocked_without_policy,
            ede,
            truncated: tally.truncated,
            unmatched: tally.unmatched,
            server: facts.server,
            input: facts.input,
            rate: facts.rate,
            window: facts.window,
            threads: facts.threads,
            aborted: facts.aborted,
        }
    }

    /// The summary as one line of JSON.
    pub(crate) fn to_json(&self) -> String {
        // A struct of numbers, strings and string-keyed maps always serializes.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The summary as a table for people.
    pub(crate) fn to_table(&self) -> String {
        let mut out = String::new();
        let rate = self
            .rate
            .map_or("as fast as possible".to_string(), |r| format!("{r:.0} qps target"));
        let _ = writeln!(
            out,
            "replayed {} {} queries ({} clients) against {}, {}, window {}, {} thread(s)",
            self.input.queries, self.input.format, self.input.clients, self.server, rate, self.window, self.threads
        );
        if let Some(why) = &self.aborted {
            let _ = writeln!(out, "STOPPED EARLY: {why}");
        }
        let _ = writeln!(out, "  sent         {:>12}", self.sent);
        let _ = writeln!(out, "  answered     {:>12}", self.answered);
        let _ = writeln!(out, "  lost         {:>12}  ({:.3} %)", self.lost, self.lost_pct);
        let _ = writeln!(out, "  duration     {:>12.3} s", self.duration_s);
        let _ = writeln!(out, "  qps          {:>12.0}", self.qps);
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "  latency us   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let _ = writeln!(out, "  rcodes       {}", join(&self.rcodes));
        let unnamed = self.blocked_without_policy;
        let blocked = match (self.blocked.is_empty(), unnamed) {
            (true, 0) => "none seen (audit-mode policies add no EDE, and an address answer to a query without \
                          EDNS cannot be told from a real one: read the hit log)"
                .to_string(),
            (true, _) => format!("{unnamed} (policy not named: queries without EDNS)"),
            (false, 0) => join(&self.blocked),
            (false, _) => format!(
                "{}, {unnamed} more (policy not named: queries without EDNS)",
                join(&self.blocked)
            ),
        };
        let _ = writeln!(out, "  blocked      {blocked}");
        if self.ede.keys().any(|k| k != "15") {
            let _ = writeln!(out, "  EDE codes    {}", join(&self.ede));
        }
        if self.truncated > 0 || self.unmatched > 0 || self.input.skipped > 0 {
            let _ = writeln!(
                out,
                "  truncated {}, unmatched answers {}, input entries skipped {}",
                self.truncated, self.unmatched, self.input.skipped
            );
        }
        out
    }
}

fn join(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".to_string();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhole_dns::packet::encode_query;
    use sinkhole_dns::wire::rcode;

    /// The daemon's NXDOMAIN block answer as it goes on the wire (tests/replay.rs reads the real
    /// one): the question echoed and, with EDNS, an OPT record carrying EDE 15 "Blocked" (RFC 8914)
    /// with the text "blocked by policy <policy>".
    fn block_answer(policy: &str, edns: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_query("www.tiktok.com", rtype::A, edns, &mut out).expect("valid");
        out[2] |= 0x80; // QR
        out[3] = 0x80 | 3; // RA, NXDOMAIN
        if edns {
            // The query's OPT record ends with RDLENGTH 0: replace it by the EDE option.
            out.truncate(out.len() - 2);
            let text = format!("blocked by policy {policy}");
            let option_len = 2 + text.len() as u16;
            out.extend_from_slice(&(4 + option_len).to_be_bytes());
            out.extend_from_slice(&15u16.to_be_bytes()); // OPTION-CODE: EDE
            out.extend_from_slice(&option_len.to_be_bytes());
            out.extend_from_slice(&15u16.to_be_bytes()); // INFO-CODE: Blocked
            out.extend_from_slice(text.as_bytes());
        }
        out
    }

    fn facts() -> RunFacts {
        RunFacts {
            duration: Duration::from_secs(2),
            server: "127.0.0.1:53".into(),
            input: InputStats {
                format: "dnsperf",
                queries: 10,
                skipped: 0,
                clients: 1,
            },
            rate: None,
            window: 256,
            threads: 1,
            aborted: None,
        }
    }

    #[test]
    fn reads_the_daemons_block_verdict() {
        let answer = block_answer("staff", true);
        assert_eq!(find_ede(&answer), Some((15, &b"blocked by policy staff"[..])));
        assert_eq!(find_ede(&block_answer("staff", false)), None, "no EDNS, no EDE");
        assert_eq!(find_ede(&answer[..answer.len() - 3]), None, "cut short");
    }

    #[test]
    fn tallies_rcodes_verdicts_and_latency() {
        let mut tally = Tally::new();
        tally.sent = 5;
        for _ in 0..3 {
            tally.answer(&block_answer("staff", true), Duration::from_micros(100));
        }
        let mut ok = Vec::new();
        encode_query("www.example.com", rtype::A, false, &mut ok).expect("valid");
        ok[3] |= 0x80; // RA; rcode 0
        ok[2] |= 0x80; // QR
        tally.answer(&ok, Duration::from_micros(300));
        tally.lost = 1;
        let mut other = Tally::new();
        other.sent = 1;
        other.answer(&block_answer("guests", true), Duration::from_micros(200));
        tally.merge(&other);

        let s = Summary::new(&tally, facts());
        assert_eq!((s.sent, s.answered, s.lost), (6, 5, 1));
        assert!((s.lost_pct - 100.0 / 6.0).abs() < 1e-9);
        assert!((s.qps - 2.5).abs() < 1e-9);
        assert_eq!(
            s.rcodes,
            BTreeMap::from([("NOERROR".into(), 1), ("NXDOMAIN".into(), 4)])
        );
        assert_eq!(s.blocked, BTreeMap::from([("guests".into(), 1), ("staff".into(), 3)]));
        assert_eq!(s.ede, BTreeMap::from([("15".into(), 4)]));
        assert!((s.latency_us.p50 - 100.0).abs() < 0.5, "{:?}", s.latency_us);
        assert!((s.latency_us.p90 - 300.0).abs() < 1.0, "{:?}", s.latency_us);
        assert!((s.latency_us.max - 300.0).abs() < 1.0, "{:?}", s.latency_us);
        assert_eq!(rcode::NXDOMAIN, 3);
    }

    #[test]
    fn json_has_the_contract_keys() {
        let mut tally = Tally::new();
        tally.sent = 1;
        tally.answer(&block_answer("staff", true), Duration::from_micros(50));
        let json: serde_json::Value = serde_json::from_str(&Summary::new(&tally, facts()).to_json()).expect("JSON");
        for key in [
            "sent",
            "answered",
            "lost",
            "lost_pct",
            "qps",
            "duration_s",
            "latency_us",
            "rcodes",
            "blocked",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(json["latency_us"][key].is_f64(), "latency_us.{key} in {json}");
        }
        assert_eq!(json["sent"], 1);
        assert_eq!(json["rcodes"]["NXDOMAIN"], 1);
        assert_eq!(json["blocked"]["staff"], 1);
        assert!(json["lost_pct"].is_f64() && json["qps"].is_f64() && json["duration_s"].is_f64());
        assert!(json["aborted"].is_null() && json["rate"].is_null());
    }

    #[test]
    fn blocked_texts_are_bounded() {
        let mut tally = Tally::new();
        for i in 0..(MAX_TEXTS + 10) {
            tally.answer(&block_answer(&format!("p{i}"), true), Duration::from_micros(1));
        }
        assert_eq!(tally.blocked.len(), MAX_TEXTS);
        let s = Summary::new(&tally, facts());
        assert_eq!(s.blocked.values().sum::<u64>(), (MAX_TEXTS + 10) as u64);
        assert!(s.blocked.contains_key(OTHER_TEXTS));
    }

    #[test]
    fn empty_run_has_zero_latency_and_no_nan() {
        let s = Summary::new(&Tally::new(), facts());
        assert_eq!(s.latency_us, Latency::default());
        assert_eq!((s.lost_pct, s.qps), (0.0, 0.0));
        assert!(s.to_table().contains("blocked      none seen"));
    }
}
