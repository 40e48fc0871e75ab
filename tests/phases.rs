//! A ban's whole timeline in one policy (`phases`): what `check` shows of it, what `explain --at`
//! answers at each moment, and where config errors about it point, through the real binary.

use sinkhole_testkit::*;

/// A grace period (audit until 31 March), then the ban (enforce until 17 September), then nothing.
const CONFIG: &str = r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "ban"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
active_from = "2023-03-17T00:00:00+01:00"
phases = [
  { until = "2023-03-31T00:00:00+02:00", mode = "audit" },
  { until = "2023-09-17T00:00:00+02:00", mode = "enforce" },
]
"#;

#[test]
fn check_shows_the_timeline_and_the_phase_now() {
    let dir = TestDir::new();
    let path = dir.write_file("sinkhole.toml", CONFIG);
    let text = sinkhole_stdout(&["check", "-c", path.to_str().expect("utf-8 path")]);
    assert!(
        text.contains("    phase 0: audit until 2023-03-30T22:00:00Z\n"),
        "{text}"
    );
    assert!(
        text.contains("    phase 1: enforce until 2023-09-16T22:00:00Z\n"),
        "{text}"
    );
    // The test runs long after the last phase.
    assert!(text.contains("    now: not blocking (over)\n"), "{text}");
}

#[test]
fn explain_at_answers_for_each_phase() {
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

    let grace = at("2023-03-30T23:59:59+02:00");
    assert!(grace.contains("now: audit (phase 0)"), "{grace}");
    assert!(grace.contains("match     list tiktok rule \"tiktok.com\""), "{grace}");
    assert!(
        grace.contains("audit mode logs the hit and answers normally"),
        "{grace}"
    );

    let ban = at("2023-03-31T00:00:00+02:00");
    assert!(ban.contains("now: enforce (phase 1)"), "{ban}");
    assert!(ban.contains("answer    NXDOMAIN (nxdomain)"), "{ban}");

    let over = at("2023-09-17T00:00:00+02:00");
    assert!(over.contains("now: not blocking (over)"), "{over}");
    assert!(
        over.contains("match     none (the policy does not block now)"),
        "{over}"
    );
    assert!(over.contains("answer    forwarded"), "{over}");

    let before = at("2023-03-16T23:59:59+01:00");
    assert!(before.contains("now: not blocking (before active_from)"), "{before}");
}

#[test]
fn phase_errors_point_at_their_keys() {
    let dir = TestDir::new();
    let bad = CONFIG
        .replace(
            "block = [\"tiktok\"]\n",
            "block = [\"tiktok\"]\nactive_until = \"2024-01-01T00:00:00Z\"\n",
        )
        .replace("2023-09-17T00:00:00+02:00", "2023-03-20T00:00:00+02:00");
    let path = dir.write_file("sinkhole.toml", &bad);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("sinkhole.toml:10:16: policy \"ban\": active_until and phases are both set"),
        "{text}"
    );
    assert!(
        text.contains("sinkhole.toml:14:13: policy \"ban\" phase 1: until is not after phase 0's until"),
        "{text}"
    );
}

/// The reported bug: "grace" (audit, until 31 March) then "ban" (enforce, from 31 March) as two
/// policies on 10.0.0.0/8 blocked nothing after 31 March, as "grace" held the prefix. `check`
/// now refuses the config, naming both and pointing at `phases`.
#[test]
fn two_policies_as_a_timeline_on_one_prefix_are_refused() {
    let dir = TestDir::new();
    let path = dir.write_file(
        "sinkhole.toml",
        r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "grace"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
mode = "audit"
active_until = "2023-03-31T00:00:00+02:00"
[[policy]]
name = "ban"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
active_from = "2023-03-31T00:00:00+02:00"
"#,
    );
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("is claimed by policy \"grace\" and policy \"ban\"") && text.contains("phases = ["),
        "{text}"
    );
}

/// A daemon config on loopback whose policy "ban" (127.10.0.0/16) is past its grace period (phase 0, audit, until
/// 2023) and in its ban (phase 1, enforce, until 2099); `extra` goes at the end (more policies, `[log]`).
fn running_ban(up: &FakeUpstream, metrics: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{metrics}"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["{}"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "ban"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
phases = [
  {{ until = "2023-03-31T00:00:00+02:00", mode = "audit" }},
  {{ until = "2099-09-17T00:00:00+02:00", mode = "enforce" }},
]
{extra}
"#,
        up.addr()
    )
}

#[test]
fn the_phase_each_policy_is_in_is_a_metric() {
    // The grace period is over and the ban runs until 2099: phase 1 (enforce) now. A second policy's window has not
    // begun: phase none.
    let up = FakeUpstream::start();
    let config = running_ban(
        &up,
        "{metrics}",
        r#"[[policy]]
name = "later"
clients = ["127.20.0.0/16"]
block = ["tiktok"]
active_from = "2098-01-01T00:00:00Z"
[log]
hits = "off""#,
    );
    let d = Daemon::start(&config);
    let phase = |page: &str, policy: &str, phase: &str, mode: &str| {
        metric(
            page,
            "sinkhole_policy_phase",
            &[("policy", policy), ("phase", phase), ("mode", mode)],
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let page = loop {
        let page = d.scrape_metrics();
        if phase(&page, "ban", "1", "enforce").is_some() || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(phase(&page, "ban", "0", "audit"), Some(0.0), "{page}");
    assert_eq!(phase(&page, "ban", "1", "enforce"), Some(1.0), "{page}");
    assert_eq!(phase(&page, "ban", "none", "none"), Some(0.0), "{page}");
    assert_eq!(phase(&page, "later", "0", "enforce"), Some(0.0), "{page}");
    assert_eq!(phase(&page, "later", "none", "none"), Some(1.0), "{page}");
}

#[test]
fn a_hit_names_the_phase_it_was_blocked_in() {
    // The grace period is over; the ban (phase 1, enforce) runs until 2099.
    let up = FakeUpstream::start();
    let config = running_ban(&up, "off", "[log]\nhits = \"{dir}/hits.jsonl\"");
    let d = Daemon::start_in(TestDir::new(), &config);
    let client: std::net::IpAddr = "127.10.0.5".parse().expect("literal");
    let answer = query_udp(
        d.addr(),
        client,
        "www.tiktok.com",
        hickory_proto::rr::RecordType::A,
        true,
    )
    .expect("answer");
    assert_eq!(answer.metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
    let hits = wait_for_hits(d.dir().join("hits.jsonl"), 1, std::time::Duration::from_secs(5));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["policy"], "ban", "{hits:?}");
    assert_eq!(hits[0]["mode"], "enforce", "{hits:?}");
    assert_eq!(hits[0]["phase"], 1, "{hits:?}");
}
