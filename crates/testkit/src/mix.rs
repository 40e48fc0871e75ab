//! The "mix" workload of issue 5, generated here so that the repository's benches need nothing
//! outside it. Three files: a dnsperf file of 200k queries (80 % allowed names drawn Zipf-like,
//! Pareto with alpha 1, from 20k names; 20 % TikTok hostnames; 70 % A and 30 % AAAA), an
//! all-unique cache-miss file, and the blocklist of TikTok apexes. The recipe is the one
//! benches/compare.sh writes its files with (issue 5's), with a PRNG of our own: deterministic,
//! not byte-identical to compare.sh's files.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The TikTok apexes the mix blocks (and the blocklist file lists).
pub const APEXES: [&str; 14] = [
    "tiktok.com",
    "tiktokv.com",
    "tiktokcdn.com",
    "tiktokcdn-us.com",
    "byteoversea.com",
    "ibytedtos.com",
    "ibyteimg.com",
    "musical.ly",
    "muscdn.com",
    "ttwstatic.com",
    "tiktokw.us",
    "byteimg.com",
    "tiktokv.us",
    "bytedance.map.fastly.net",
];

/// Host labels put in front of each apex to make the TikTok hostnames.
pub const PREFIXES: [&str; 13] = [
    "www",
    "m",
    "v16m",
    "v19",
    "api16-normal-c-useast1a",
    "log",
    "mon",
    "p16-sign-va",
    "sf16-website-login",
    "lf16-tiktok-web",
    "webcast",
    "im-api",
    "abtest-va",
];

/// Lines in the mix and unique files.
pub const LINES: usize = 200_000;
/// Distinct allowed names the mix draws from.
pub const ALLOWED_NAMES: u64 = 20_000;
/// Share of TikTok names in the mix.
const TIKTOK_SHARE: f64 = 0.2;
/// Share of A (else AAAA) queries.
const A_SHARE: f64 = 0.7;
/// The seed: the files are the same on every machine and run.
const SEED: u64 = 20_230_317;

/// SplitMix64: small, fast, good enough to draw a workload, and stable (it is ours).
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The mix's lines, in order, as "NAME TYPE".
pub fn mix_lines() -> impl Iterator<Item = String> {
    let mut rng = SplitMix(SEED);
    let tiktok: Vec<String> = APEXES
        .iter()
        .flat_map(|apex| PREFIXES.iter().map(move |p| format!("{p}.{apex}")))
        .collect();
    (0..LINES).map(move |_| {
        let name = if rng.next_f64() < TIKTOK_SHARE {
            tiktok[(rng.next_u64() % tiktok.len() as u64) as usize].clone()
        } else {
            // Pareto with alpha 1 (Python's paretovariate(1.0)): 1 / (1 - U), heavy on small n.
            let n = (1.0 / (1.0 - rng.next_f64())) as u64 % ALLOWED_NAMES;
            format!("www.site{n:05}.example")
        };
        let qtype = if rng.next_f64() < A_SHARE { "A" } else { "AAAA" };
        format!("{name} {qtype}")
    })
}

/// Writes the three files: the mix, the all-unique cache-miss file, and the blocklist.
pub fn write_files(mix: &Path, unique: &Path, blocklist: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(mix)?);
    for line in mix_lines() {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let mut out = BufWriter::new(File::create(unique)?);
    for i in 0..LINES {
        writeln!(out, "u{i:06}.miss.example A")?;
    }
    out.flush()?;
    let mut out = BufWriter::new(File::create(blocklist)?);
    for apex in APEXES {
        writeln!(out, "{apex}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_has_the_recipes_shares() {
        let lines: Vec<String> = mix_lines().collect();
        assert_eq!(lines.len(), LINES);
        assert_eq!(lines, mix_lines().collect::<Vec<_>>(), "deterministic");
        let tiktok = lines.iter().filter(|l| !l.contains(".example ")).count() as f64 / LINES as f64;
        let a = lines.iter().filter(|l| l.ends_with(" A")).count() as f64 / LINES as f64;
        assert!((tiktok - 0.2).abs() < 0.01, "tiktok share {tiktok}");
        assert!((a - 0.7).abs() < 0.01, "A share {a}");
        let distinct: std::collections::HashSet<&String> = lines.iter().collect();
        // Zipf-like: far fewer distinct names than lines, the head dominating.
        assert!(distinct.len() < 25_000, "{} distinct", distinct.len());
        let head = lines.iter().filter(|l| l.starts_with("www.site00001.example")).count();
        assert!(head > LINES / 10, "site00001 is drawn {head} times");
        for line in &lines {
            assert!(
                sinkhole_replay::input::parse_line(line).is_ok_and(|l| l.is_some()),
                "{line}"
            );
        }
    }
}
