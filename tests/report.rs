//! `sinkhole report`, through the real binary: hit logs as logrotate leaves them (one plain, one
//! gzipped), with whole client addresses and names that carry people's names, and a config with a
//! phased policy (a grace period in audit mode, then the ban). The JSON and CSV must count what
//! the logs hold, hide every small count and any total that would give it away, and hold no
//! address and no name below its apex. The HTML is then opened in headless Chromium (the Debian
//! package) and checked from the page it draws: the bars are there in their colours (from a
//! screenshot), and the text it shows has no address, no hash, no full name, and "< 5" where a
//! count is hidden.
//!
//! The Chromium part prints "SKIPPED: ..." and returns where Chromium is not installed
//! (`apt-get install chromium`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sinkhole_testkit::*;

/// A grace period (audit, 2 and 3 March 2026), then the ban (enforce, 4 to 7 March); and a guest
/// network blocked always.
const CONFIG: &str = r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com", "tiktokcdn.com", "byteoversea.com"]
[[policy]]
name = "ban"
clients = ["10.1.0.0/21", "10.9.0.0/24"]
block = ["tiktok"]
active_from = "2026-03-02T00:00:00Z"
phases = [
  { until = "2026-03-04T00:00:00Z", mode = "audit" },
  { until = "2026-03-08T00:00:00Z", mode = "enforce" },
]
[[policy]]
name = "guests"
clients = ["192.168.50.0/24"]
block = ["tiktok"]
"#;

/// The clients of the logs: six networks of the "ban" policy's nine, and one guest.
const BAN_CLIENTS: [&str; 6] = ["10.1.0.5", "10.1.1.6", "10.1.2.7", "10.1.3.8", "10.1.4.9", "10.9.0.77"];
const GUEST: &str = "192.168.50.23";
/// A hashed client (log.client_ip = "hashed" for a while): placed nowhere, shown nowhere.
const HASH: &str = "9f86d081884c7d65";

/// Names that carry people's names: only their apex may appear.
const QNAMES: [(&str, &str); 3] = [
    ("jean.dupont.laptop.tiktok.com", "tiktok.com"),
    ("marie-claire.martin.iphone.tiktokcdn.com", "*.tiktokcdn.com"),
    ("luc.peeters.tablet.byteoversea.com", "byteoversea.com"),
];

/// One hit: (day of March 2026, policy, mode, client, name index, protocol).
type Hit = (u32, &'static str, &'static str, &'static str, usize, &'static str);

fn hits() -> Vec<Hit> {
    let mut out = Vec::new();
    for day in [2, 3] {
        for i in 0..20 {
            out.push((day, "ban", "audit", BAN_CLIENTS[i % 6], 0, "udp"));
        }
    }
    for day in [4, 5, 6] {
        for i in 0..15 {
            out.push((
                day,
                "ban",
                "enforce",
                BAN_CLIENTS[i % 6],
                0,
                if i < 7 && day == 4 { "doh" } else { "udp" },
            ));
        }
        for i in 0..12 {
            out.push((day, "ban", "enforce", BAN_CLIENTS[i % 3], 1, "udp"));
        }
    }
    for client in &BAN_CLIENTS[..3] {
        out.push((6, "ban", "enforce", client, 2, "tcp"));
    }
    out.push((6, "ban", "enforce", HASH, 0, "udp"));
    for _ in 0..3 {
        out.push((5, "guests", "enforce", GUEST, 0, "udp"));
    }
    out
}

fn line((day, policy, mode, client, name, protocol): Hit, n: usize) -> String {
    let (qname, rule) = QNAMES[name];
    format!(
        r#"{{"time":"2026-03-{day:02}T{:02}:{:02}:00.000Z","client":"{client}","policy":"{policy}","list":"tiktok","rule":"{rule}","qname":"{qname}","qtype":"A","answer":"nxdomain","mode":"{mode}","phase":{},"protocol":"{protocol}"}}"#,
        8 + n % 10,
        n % 60,
        u8::from(mode == "enforce")
    )
}

/// Writes the logs: days 2 and 3 plain (`hits.log.1`, as `delaycompress` leaves it), the rest
/// gzipped (`hits.log.2.gz`), with two malformed lines.
fn write_logs(dir: &TestDir) -> (PathBuf, PathBuf) {
    let all = hits();
    let (plain, zipped): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(_, h)| h.0 <= 3);
    let mut text: String = plain.iter().map(|&(n, h)| line(*h, n) + "\n").collect();
    text.push_str("this is not a hit\n");
    let plain_path = dir.write_file("hits.log.1", &text);
    let mut text: String = zipped.iter().map(|&(n, h)| line(*h, n) + "\n").collect();
    text.push_str("{\"time\":\"2026-03-06T23:59:59Z\",\"client\":\"10.1.0.5\",\"pol"); // cut by a crash
    text.push('\n');
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).expect("gzip in memory");
    let zipped_path = dir.path().join("hits.log.2.gz");
    std::fs::write(&zipped_path, gz.finish().expect("gzip in memory")).expect("write the gzipped log");
    (plain_path, zipped_path)
}

/// The true count of each (day, policy, mode).
fn truth() -> BTreeMap<(String, &'static str, &'static str), u64> {
    let mut t = BTreeMap::new();
    for (day, policy, mode, ..) in hits() {
        *t.entry((format!("2026-03-{day:02}"), policy, mode)).or_insert(0) += 1;
    }
    t
}

fn report(dir: &TestDir, format: &str, extra: &[&str]) -> String {
    let (plain, zipped) = write_logs(dir);
    let config = dir.write_file("sinkhole.toml", CONFIG);
    let mut args = vec![
        "report",
        "--hits",
        plain.to_str().expect("utf-8"),
        zipped.to_str().expect("utf-8"),
        "-c",
        config.to_str().expect("utf-8"),
        "--format",
        format,
    ];
    args.extend_from_slice(extra);
    let out = run_sinkhole(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    assert!(stderr.contains("2 malformed lines skipped"), "{stderr}");
    String::from_utf8(out.stdout).expect("utf-8 report")
}

/// No trace of a person: no address, no hash, no name below its apex.
fn assert_no_personal_data(text: &str) {
    for needle in BAN_CLIENTS.iter().chain([&GUEST, &HASH]) {
        assert!(!text.contains(needle), "the report holds {needle}");
    }
    for prefix in ["10.1.", "10.9.", "192.168."] {
        assert!(!text.contains(prefix), "the report holds an address in {prefix}");
    }
    for (qname, _) in QNAMES {
        assert!(!text.contains(qname), "the report holds {qname}");
    }
    for label in [
        "jean", "dupont", "marie", "martin", "peeters", "laptop", "iphone", "tablet",
    ] {
        assert!(
            !text.to_lowercase().contains(label),
            "the report holds the label {label:?}"
        );
    }
}

/// A count as the JSON shows it: Some(n), or None when hidden ("<5" when small, "withheld"
/// when hidden so that a total does not give a small one away).
fn shown(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => Some(n.as_u64().expect("a count")),
        Value::String(s) => {
            assert!(s == "<5" || s == "withheld", "a hidden count reads <5 or withheld: {s}");
            None
        }
        other => panic!("not a count: {other}"),
    }
}

#[test]
fn json_counts_what_the_logs_hold_and_hides_small_counts_and_their_complements() {
    let dir = TestDir::new();
    let text = report(&dir, "json", &[]);
    assert_no_personal_data(&text);
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(doc["sources"]["lines_read"], 128 + 2);
    assert_eq!(doc["sources"]["lines_skipped_malformed"], 2);
    assert_eq!(doc["period"]["first_day"], "2026-03-02");
    assert_eq!(doc["period"]["last_day"], "2026-03-06");

    // Each day's cells: shown ones true, small ones "<5", and no policy total (over its days,
    // over its modes) that gives a hidden cell away by subtraction.
    let truth = truth();
    let days = doc["days"].as_array().expect("days");
    assert_eq!(days.len(), 5);
    for (p, policy) in ["ban", "guests"].into_iter().enumerate() {
        let totals = &doc["policies"][p];
        assert_eq!(totals["name"], policy);
        for mode in ["enforce", "audit"] {
            let mut hidden = usize::from(shown(&totals[mode]).is_none());
            for day in days {
                let date = day["date"].as_str().expect("date");
                let real = truth.get(&(date.to_string(), policy, mode)).copied().unwrap_or(0);
                let cell = &day["policies"][policy][mode];
                match shown(cell) {
                    Some(n) => {
                        assert_eq!(n, real, "{date} {policy} {mode}");
                        assert!(n == 0 || n >= 5, "{date} {policy} {mode}: {n} shown");
                    }
                    None => {
                        assert!(real > 0, "{date} {policy} {mode}: a zero hidden");
                        assert_eq!(cell == "<5", real < 5, "{date} {policy} {mode}: {real} shown as {cell}");
                        hidden += 1;
                    }
                }
            }
            assert_ne!(
                hidden, 1,
                "{policy} {mode}: its total minus the shown days gives the hidden one"
            );
        }
        let by_mode = ["enforce", "audit", "total"].map(|m| shown(&totals[m]).is_none());
        assert_ne!(by_mode.iter().filter(|&&h| h).count(), 1, "{policy}: {by_mode:?}");
    }
    // The guests' 3 blocks on 5 March: "<5", and so is their policy total; the ban's 27 that day
    // are shown.
    assert_eq!(days[3]["policies"]["guests"]["enforce"], "<5");
    assert_eq!(shown(&days[3]["policies"]["ban"]["enforce"]), Some(27));
    let guests = &doc["policies"][1];
    assert_eq!(guests["name"], "guests");
    assert_eq!(guests["total"], "<5");
    // The grace period and the ban, both there, 40 attempts audited on days the policy audited.
    assert_eq!(shown(&days[0]["policies"]["ban"]["enforce"]), Some(0));
    assert_eq!(shown(&days[4]["policies"]["ban"]["audit"]), Some(0));
    let ban = &doc["policies"][0];
    assert_eq!(ban["timeline"][0]["mode"], "audit");
    assert_eq!(ban["timeline"][1]["mode"], "enforce");
    assert_eq!(ban["timeline"][0]["from"], 1_772_409_600i64);
    // Six of the ban's nine networks (its /21 as eight /24s, and a /24) tried; the hashed
    // client is placed nowhere.
    assert_eq!(ban["networks"]["configured"], 9);
    assert_eq!(ban["networks"]["with_attempts"], 6);
    assert_eq!(ban["networks"]["unit"], "/24 and /56 networks");
    assert_eq!(
        shown(&guests["networks"]["with_attempts"]),
        None,
        "one network: fewer than 5"
    );

    // Apexes: the rules, never the names; byteoversea's 3 hidden, and one more beside it.
    let apexes: Vec<(&str, Option<u64>)> = doc["apexes"]
        .as_array()
        .expect("apexes")
        .iter()
        .map(|a| (a["apex"].as_str().expect("apex"), shown(&a["count"])))
        .collect();
    assert_eq!(apexes[0], ("tiktok.com", Some(40 + 45 + 1 + 3)));
    assert!(apexes.contains(&("byteoversea.com", None)), "{apexes:?}");
    let hidden = apexes.iter().filter(|a| a.1.is_none()).count()
        + usize::from(shown(&doc["other_apexes"]).is_none())
        + usize::from(shown(&doc["totals"]["total"]).is_none());
    assert!(
        hidden >= 2,
        "the total minus the shown apexes would give byteoversea's count: {apexes:?}"
    );
    // TCP's 3 hidden, and DoH's 7 beside them, or the total minus UDP and DoH would give them.
    assert_eq!(shown(&doc["protocols"]["tcp"]), None);
    assert_eq!(shown(&doc["protocols"]["doh"]), None);
    assert_eq!(shown(&doc["protocols"]["udp"]), Some(128 - 7 - 3));
}

#[test]
fn csv_has_the_same_counts_and_a_date_filter_keeps_whole_utc_days() {
    let dir = TestDir::new();
    let text = report(&dir, "csv", &["--from", "2026-03-03", "--until", "2026-03-04"]);
    assert_no_personal_data(&text);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["table", "day", "policy", "mode", "name", "count"]);
    let get = |table: &str, day: &str, policy: &str, mode: &str, name: &str| {
        rows.iter()
            .find(|r| r[..5] == [table, day, policy, mode, name])
            .map(|r| r[5])
            .unwrap_or_else(|| panic!("no row {table},{day},{policy},{mode},{name}:\n{text}"))
    };
    assert_eq!(get("day", "2026-03-03", "ban", "audit", ""), "20");
    assert_eq!(get("day", "2026-03-04", "ban", "enforce", ""), "27");
    assert!(!text.contains("2026-03-02") && !text.contains("2026-03-05"), "{text}");
    assert_eq!(get("total", "", "", "total", ""), "47");
    assert_eq!(get("source", "", "", "", "lines_outside_period"), "81");
    assert_eq!(get("protocol", "", "", "", "doh"), "7");
}

#[test]
fn a_missing_hit_log_fails_naming_it() {
    let dir = TestDir::new();
    let missing = dir.path().join("nope.log");
    let out = run_sinkhole(&["report", "--hits", missing.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.log") && stderr.contains("cannot read the hit log"),
        "{stderr}"
    );
}

#[test]
fn an_empty_log_gives_a_report_that_says_so_and_a_reversed_period_is_refused() {
    let dir = TestDir::new();
    let empty = dir.write_file("hits.log", "");
    let empty = empty.to_str().expect("utf-8");
    let html = sinkhole_stdout(&["report", "--hits", empty]);
    assert!(html.contains("No blocked attempt in the period."), "{html}");
    assert!(
        html.contains("Networks that tried: not available, as the report was made without the daemon"),
        "{html}"
    );
    let json: Value =
        serde_json::from_str(&sinkhole_stdout(&["report", "--hits", empty, "--format", "json"])).expect("JSON");
    assert_eq!(json["totals"]["total"], 0);
    assert_eq!(json["days"].as_array().map(Vec::len), Some(0));
    let out = run_sinkhole(&[
        "report",
        "--hits",
        empty,
        "--from",
        "2026-03-05",
        "--until",
        "2026-03-04",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from is after --until"));
}

/// Runs Chromium headless with `args` and a page, killed after a minute; its stdout.
fn chromium(args: &[&str], profile: &Path) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {args:?} did not finish within a minute");
            }
        }
    }
    reader.join().unwrap_or_default()
}

/// Pixels of the screenshot within a few levels of `rgb`.
fn pixels_of(png: &Path, rgb: (u8, u8, u8)) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).expect("screenshot")));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("screenshot colour type {other:?}"),
    };
    let near = |a: u8, b: u8| a.abs_diff(b) <= 4;
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| near(p[0], rgb.0) && near(p[1], rgb.1) && near(p[2], rgb.2))
        .count()
}

#[test]
fn the_html_report_draws_its_charts_and_shows_no_one_in_chromium() {
    let dir = TestDir::new();
    let html = report(&dir, "html", &[]);
    assert!(!html.contains("<script"), "no script");
    assert!(!html.contains("http:") && !html.contains("https:"), "no URL at all");
    assert!(!html.contains("src="), "nothing loaded from elsewhere");
    if Command::new("chromium").arg("--version").output().is_err() {
        println!("SKIPPED: chromium is not installed (apt-get install chromium): the page was not rendered");
        return;
    }
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).expect("write the page");
    let url = format!("file://{}", page.display());
    let profile = dir.path().join("chromium");

    let dom = chromium(&["--dump-dom", &url], &profile);
    assert!(dom.contains("DNS ban report"), "chromium rendered nothing:\n{dom}");
    // The text as the page shows it: tags out, entities as characters.
    let text = dom
        .split('<')
        .map(|part| part.split_once('>').map_or(part, |(_, text)| text))
        .collect::<Vec<_>>()
        .join(" ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    assert_no_personal_data(&text);
    // The guests' summary row: enforce "< 5", audit 0, total "< 5".
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("guests < 5 0 < 5"),
        "hidden counts read \"< 5\":\n{words}"
    );
    assert!(
        text.contains("tiktok.com") && text.contains("byteoversea.com"),
        "{text}"
    );

    let shot = dir.path().join("report.png");
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2000",
            &url,
        ],
        &profile,
    );
    // The ban's enforced blocks in its colour, its audit days in the light shade, the guests'
    // hidden count hatched, the apex bars: each drawn, in pixels.
    for (what, rgb) in [
        ("ban enforce bars", (0x1f, 0x5f, 0xa8)),
        ("ban audit bars", (0x9a, 0xb7, 0xd7)),
        ("apex bars", (0x3b, 0x6e, 0x8f)),
    ] {
        let n = pixels_of(&shot, rgb);
        assert!(n > 500, "{what}: {n} pixels of {rgb:?} in the screenshot");
    }
}
