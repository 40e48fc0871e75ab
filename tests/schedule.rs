//! Weekly windows (`schedule` in a `[[policy]]`), through the real binary: what `check` shows of
//! them, what `explain --at` answers at instants around their edges (a range past midnight and a
//! DST change included), where config errors point, and a running daemon whose schedule is on
//! now for one policy and off for another: blocked and forwarded answers, and the phase gauge.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

/// Office hours on weekdays in Brussels, and Friday night into Saturday morning; the ban itself
/// runs from 2026-03-01 to 2099, in phases.
const CONFIG: &str = r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "office"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
active_from = "2026-03-01T00:00:00+01:00"
phases = [
  { until = "2026-04-01T00:00:00+02:00", mode = "audit" },
  { until = "2099-01-01T00:00:00+01:00", mode = "enforce" },
]
schedule = { days = ["mon", "tue", "wed", "thu", "fri"], hours = ["08:00-18:00", "22:00-02:00"], time_zone = "Europe/Brussels" }
"#;

#[test]
fn check_shows_the_schedule_in_the_timeline() {
    let dir = TestDir::new();
    let path = dir.write_file("sinkhole.toml", CONFIG);
    let text = sinkhole_stdout(&["check", "-c", path.to_str().expect("utf-8 path")]);
    assert!(
        text.contains(
            "    schedule: mon,tue,wed,thu,fri 08:00-18:00,22:00-02:00 (Europe/Brussels); blocks only inside it\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    phase 1: enforce until 2098-12-31T23:00:00Z\n"),
        "{text}"
    );
    // Whichever it is now, the line says so and when it changes.
    let now = text.lines().find(|l| l.starts_with("    now: ")).expect("a now line");
    assert!(
        (now.starts_with("    now: enforce (phase 1), inside its schedule until 20")
            || now.starts_with("    now: not blocking (outside its schedule until 20")),
        "{text}"
    );
}

#[test]
fn explain_at_answers_inside_and_outside_the_weekly_windows() {
    let dir = TestDir::new();
    let path = dir.write_file("sinkhole.toml", CONFIG);
    let path = path.to_str().expect("utf-8 path");
    let at = |time: &str| {
        sinkhole_stdout(&[
            "explain",
            "-c",
            path,
            "--client",
            "10.1.2.3",
            "--at",
            time,
            "www.tiktok.com",
        ])
    };
    let blocked = |text: &str| text.contains("answer    NXDOMAIN (nxdomain)");
    let forwarded = |text: &str| {
        text.contains("match     none (the policy does not block now)") && text.contains("answer    forwarded")
    };

    // Tuesday 2026-12-01, winter (+01:00).
    let t = at("2026-12-01T07:59:59+01:00");
    assert!(
        t.contains("now: not blocking (outside its schedule until 2026-12-01T07:00:00Z)"),
        "{t}"
    );
    assert!(forwarded(&t), "{t}");
    let t = at("2026-12-01T08:00:00+01:00");
    assert!(
        t.contains("now: enforce (phase 1), inside its schedule until 2026-12-01T17:00:00Z"),
        "{t}"
    );
    assert!(blocked(&t), "{t}");
    let t = at("2026-12-01T18:00:00+01:00");
    assert!(forwarded(&t), "{t}");
    // Friday 22:00 runs into Saturday 02:00, though Saturday is not listed.
    let t = at("2026-12-05T01:59:59+01:00");
    assert!(blocked(&t), "{t}");
    let t = at("2026-12-05T02:00:00+01:00");
    assert!(forwarded(&t), "{t}");
    // Sunday night into Monday is not a window: Sunday is not listed.
    let t = at("2026-12-07T00:30:00+01:00");
    assert!(forwarded(&t), "{t}");
    // The grace period (phase 0, audit), inside the hours: logged, answered normally.
    let t = at("2026-03-10T09:00:00+01:00");
    assert!(t.contains("now: audit (phase 0), inside its schedule"), "{t}");
    assert!(t.contains("audit mode logs the hit and answers normally"), "{t}");
    // After the spring DST change (2026-03-29), 08:00 is 06:00 UTC.
    let t = at("2026-03-30T05:59:59Z");
    assert!(forwarded(&t), "{t}");
    let t = at("2026-03-30T06:00:00Z");
    assert!(t.contains("now: audit (phase 0)"), "{t}");
    // Before active_from, inside the hours: the dates win.
    let t = at("2026-02-27T09:00:00+01:00");
    assert!(t.contains("now: not blocking (before active_from)"), "{t}");
}

#[test]
fn schedule_errors_point_at_their_keys() {
    let dir = TestDir::new();
    let bad = CONFIG
        .replace("\"fri\"]", "\"fry\"]")
        .replace("\"22:00-02:00\"", "\"22:00\"")
        .replace("Europe/Brussels", "Europe/Atlantis");
    let path = dir.write_file("sinkhole.toml", &bad);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for want in [
        "sinkhole.toml:15:50: policy \"office\": schedule.days: \"fry\" is not a day",
        "sinkhole.toml:15:66: policy \"office\": schedule.hours: \"22:00\" is not a range of hours",
        "sinkhole.toml:15:104: policy \"office\": schedule.time_zone \"Europe/Atlantis\" is not a time zone",
    ] {
        assert!(text.contains(want), "{want}\nin\n{text}");
    }
}

/// `HH:MM-HH:MM` from `from` to `to` minutes after the present minute, in `zone`'s clock.
fn hours_around(zone: &str, from: i64, to: i64) -> String {
    let tz = jiff::tz::TimeZone::get(zone).expect("tzdata has the zone");
    let now = tz.to_datetime(jiff::Timestamp::now());
    let minute = i64::from(now.hour()) * 60 + i64::from(now.minute());
    let hm = |m: i64| {
        let m = m.rem_euclid(24 * 60);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!("{}-{}", hm(minute + from), hm(minute + to))
}

#[test]
fn a_running_daemon_blocks_inside_its_schedule_and_forwards_outside() {
    // "on": every day, from two hours ago to two hours ahead on Kolkata's clock (+05:30, so that
    // an offset is applied); "off": every day, from two to four hours ahead, in UTC. Either may
    // span midnight, depending on when the test runs. The test has two hours to run.
    let up = FakeUpstream::start();
    let config = format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["{}"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "on"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
schedule = {{ hours = "{}", time_zone = "Asia/Kolkata" }}
[[policy]]
name = "off"
clients = ["127.20.0.0/16"]
block = ["tiktok"]
schedule = {{ hours = "{}", time_zone = "UTC" }}
[log]
hits = "off"
"#,
        up.addr(),
        hours_around("Asia/Kolkata", -120, 120),
        hours_around("UTC", 120, 240),
    );
    let d = Daemon::start(&config);
    let ask = |client: &str| {
        let client: std::net::IpAddr = client.parse().expect("literal");
        query_udp(d.addr(), client, "www.tiktok.com", RecordType::A, true).expect("an answer")
    };
    let on = ask("127.10.0.5");
    assert_eq!(on.metadata.response_code, ResponseCode::NXDomain, "{on:?}");
    let off = ask("127.20.0.5");
    assert_eq!(off.metadata.response_code, ResponseCode::NoError, "{off:?}");
    assert!(!addresses(&off).is_empty(), "forwarded to the upstream: {off:?}");
    assert_eq!(
        up.count("www.tiktok.com"),
        1,
        "only the unscheduled query went upstream"
    );

    let phase = |page: &str, policy: &str, phase: &str, mode: &str| {
        metric(
            page,
            "sinkhole_policy_phase",
            &[("policy", policy), ("phase", phase), ("mode", mode)],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = d.scrape_metrics();
        if phase(&page, "off", "none", "none").is_some() || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(phase(&page, "on", "0", "enforce"), Some(1.0), "{page}");
    assert_eq!(phase(&page, "on", "none", "none"), Some(0.0), "{page}");
    assert_eq!(phase(&page, "off", "0", "enforce"), Some(0.0), "{page}");
    assert_eq!(phase(&page, "off", "none", "none"), Some(1.0), "{page}");
}

/// A blocked query under a weekly schedule allocates nothing on the fast path, inside the windows
/// computed at load and past them (worked out per query from the time zone), as a policy without
/// one does (tests/alloc.rs); allocation-counter counts this thread's allocations.
#[test]
fn a_blocked_query_under_a_schedule_does_not_allocate() {
    use sinkhole::server::handler::{Clock, Handler, Protocol, Step, Worker};
    use sinkhole::state::{ConfigSource, State};
    let dir = TestDir::new();
    let path = dir.write_file(
        "sinkhole.toml",
        r#"
[server]
listen = ["127.0.0.1:5399"]
metrics = "off"
allow = ["10.0.0.0/8"]
[upstream]
servers = ["127.0.0.1:9"]
[lists.tiktok]
builtin = ["tiktok"]
[[policy]]
name = "office"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
schedule = { hours = ["00:00-11:59", "12:00-23:59"], time_zone = "Europe/Brussels" }
[log]
hits = "off"
# Thousands of queries from one client in a moment: not what this test measures.
[ratelimit]
exempt = ["10.0.0.0/8"]
"#,
    );
    let state = State::new(ConfigSource::File(path)).unwrap_or_else(|e| panic!("config: {e}"));
    let handler = Handler::new(
        std::sync::Arc::new(state),
        std::sync::Arc::new(sinkhole::cache::PacketCache::new(100, 1 << 20)),
        sinkhole::hitlog::HitLog::disabled(),
    );
    let zone = jiff::tz::TimeZone::get("Europe/Brussels").expect("tzdata");
    let six_am = |years: i16| {
        let day = zone.to_datetime(jiff::Timestamp::now()).date();
        let day = day.checked_add(jiff::Span::new().years(years)).expect("a date");
        let at = zone.to_ambiguous_timestamp(day.at(6, 0, 0, 0)).compatible();
        at.expect("06:00 exists").as_second()
    };
    let mut message = hickory_proto::op::Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("www.tiktok.com.").expect("name"),
        RecordType::A,
    ));
    let packet = message.to_vec().expect("encode");
    let client: IpAddr = "10.1.2.3".parse().expect("literal");
    for (label, at) in [("inside the computed windows", six_am(0)), ("past them", six_am(3))] {
        let mut out = Vec::with_capacity(512);
        let mut worker = Worker::default();
        let mut answer = |out: &mut Vec<u8>| {
            let step = handler.answer_fast(&packet, client, Protocol::Udp, Clock::at(at), out, &mut worker);
            matches!(step, Step::Reply) && out.get(3).map(|b| b & 0x0f) == Some(3)
        };
        for _ in 0..16 {
            assert!(answer(&mut out), "{label}: blocked on the fast path");
        }
        let mut wrong = 0;
        let counted = allocation_counter::measure(|| {
            for _ in 0..1000 {
                if !answer(&mut out) {
                    wrong += 1;
                }
            }
        });
        assert_eq!(wrong, 0, "{label}: every query blocked");
        assert_eq!(counted.count_total, 0, "{label}: allocations in 1000 blocked queries");
    }
}
