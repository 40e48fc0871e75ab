//! Operating the daemon: reloads (good, bad, under load), the metrics page, and the `check` and
//! `explain` commands, as an admin would use them.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const STAFF_IP: &str = "127.10.0.5";
const NOBODY_IP: &str = "127.20.0.5";

fn config(upstream: &FakeUpstream) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 2
[upstream]
servers = ["{}"]
timeout_ms = 5000
[lists.tiktok]
files = ["{{dir}}/tiktok.txt"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "{{dir}}/hits.jsonl"
"#,
        upstream.addr()
    )
}

fn start(list: &str) -> (FakeUpstream, Daemon) {
    let up = FakeUpstream::start();
    let dir = TestDir::new();
    dir.write_file("tiktok.txt", list);
    let d = Daemon::start_in(dir, &config(&up));
    (up, d)
}

fn rcode(d: &Daemon, name: &str) -> ResponseCode {
    query_udp(d.addr(), ip(STAFF_IP), name, RecordType::A, false)
        .expect("answer")
        .metadata
        .response_code
}

/// Polls until `name` gets `want` (a reload is asynchronous), or fails after 5 s.
fn wait_for_rcode(d: &Daemon, name: &str, want: ResponseCode) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while rcode(d, name) != want {
        assert!(Instant::now() < deadline, "{name} never became {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one() {
    let (_up, d) = start("tiktok.com\n");
    assert_eq!(rcode(&d, "facebook.com"), ResponseCode::NoError);

    d.write_file("tiktok.txt", "tiktok.com\nfacebook.com\n");
    d.reload();
    wait_for_rcode(&d, "facebook.com", ResponseCode::NXDomain);

    let good_config = std::fs::read_to_string(d.dir().join("sinkhole.toml")).expect("config");
    d.write_file(
        "sinkhole.toml",
        &good_config.replace("[[policy]]", "[[policy]]\nnmae = \"typo\""),
    );
    d.reload();
    d.wait_for_stderr("reload failed", Duration::from_secs(5));
    assert!(
        d.stderr().contains("unknown field `nmae`"),
        "the error names the problem:\n{}",
        d.stderr()
    );
    assert_eq!(
        rcode(&d, "tiktok.com"),
        ResponseCode::NXDomain,
        "old state keeps serving"
    );
    assert_eq!(rcode(&d, "facebook.com"), ResponseCode::NXDomain);

    d.write_file("sinkhole.toml", &good_config);
    std::fs::remove_file(d.dir().join("tiktok.txt")).expect("remove list");
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !d.stderr().contains("cannot read") {
        assert!(
            Instant::now() < deadline,
            "a missing list fails the reload:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        rcode(&d, "tiktok.com"),
        ResponseCode::NXDomain,
        "old lists keep serving"
    );

    let page = d.scrape_metrics();
    assert_eq!(
        metric(&page, "sinkhole_reloads_total", &[("result", "failed")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&page, "sinkhole_reloads_total", &[("result", "ok")]),
        Some(2.0),
        "start + 1 reload"
    );
    assert_eq!(metric(&page, "sinkhole_last_reload_success", &[]), Some(0.0));
}

#[test]
fn a_reload_that_would_stop_all_blocking_is_refused_and_an_empty_config_never_loads() {
    // Found from outside: an empty config file was accepted by SIGHUP (and by `check`): all
    // blocking stopped and the upstream became /etc/resolv.conf's, logged at INFO.
    let (_up, d) = start("tiktok.com\n");
    let good_config = std::fs::read_to_string(d.dir().join("sinkhole.toml")).expect("config");

    d.write_file("sinkhole.toml", "");
    d.reload();
    d.wait_for_stderr("the config is empty", Duration::from_secs(5));
    // Every policy gone, or the list emptied by a bad edit: refused, the running state serves.
    d.write_file(
        "sinkhole.toml",
        &good_config.replace("block = [\"tiktok\"]", "block = []"),
    );
    d.reload();
    d.wait_for_stderr("reload refused: the new config blocks nothing", Duration::from_secs(5));
    d.write_file("sinkhole.toml", &good_config);
    d.write_file("tiktok.txt", "# emptied\n");
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.stderr().matches("reload refused").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "an emptied list is refused too:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        rcode(&d, "tiktok.com"),
        ResponseCode::NXDomain,
        "the old state keeps blocking"
    );
    let page = d.scrape_metrics();
    assert_eq!(
        metric(&page, "sinkhole_reloads_total", &[("result", "refused")]),
        Some(2.0)
    );
    assert_eq!(
        metric(&page, "sinkhole_reloads_total", &[("result", "failed")]),
        Some(1.0)
    );
    assert_eq!(metric(&page, "sinkhole_last_reload_success", &[]), Some(0.0));

    // A reload that changes the lists but still blocks goes through.
    d.write_file("tiktok.txt", "tiktokv.com\n");
    d.reload();
    wait_for_rcode(&d, "tiktokv.com", ResponseCode::NXDomain);

    let empty = d.dir().join("empty.toml");
    std::fs::write(&empty, "\n").expect("write");
    let out = run_sinkhole(&["check", "-c", empty.to_str().expect("utf-8 path")]);
    assert!(!out.status.success(), "check fails an empty file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty.toml:1:1: the config is empty"));
}

#[test]
fn hit_log_names_the_policy_of_the_config_that_decided_across_a_reload() {
    // Each UDP worker names the snapshot of its hits only when it changes: the lines before a
    // reload must name the old policy, those after it the new one, none be lost.
    let (_up, d) = start("tiktok.com\n");
    let log = d.dir().join("hits.jsonl");
    for _ in 0..20 {
        assert_eq!(rcode(&d, "www.tiktok.com"), ResponseCode::NXDomain);
    }
    wait_for_hits(&log, 20, Duration::from_secs(5));
    let config = std::fs::read_to_string(d.dir().join("sinkhole.toml")).expect("config");
    d.write_file(
        "sinkhole.toml",
        &config.replace("name = \"staff\"", "name = \"staff-byod\""),
    );
    d.reload();
    d.wait_for_stderr("reloaded", Duration::from_secs(5));
    for _ in 0..20 {
        assert_eq!(rcode(&d, "www.tiktok.com"), ResponseCode::NXDomain);
    }
    let hits = wait_for_hits(&log, 40, Duration::from_secs(5));
    let policies: Vec<&str> = hits.iter().map(|h| h["policy"].as_str().expect("a policy")).collect();
    assert_eq!(policies.len(), 40, "{policies:?}");
    assert!(policies[..20].iter().all(|p| *p == "staff"), "{policies:?}");
    assert!(policies[20..].iter().all(|p| *p == "staff-byod"), "{policies:?}");
}

#[test]
fn no_query_is_lost_during_reloads() {
    let (_up, d) = start("tiktok.com\n");
    let addr = d.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (asked, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let (stop, asked, lost) = (Arc::clone(&stop), Arc::clone(&asked), Arc::clone(&lost));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 5000 {
                    let name = if n % 2 == 0 {
                        "www.tiktok.com".to_string()
                    } else {
                        format!("n{i}-{}.example", n % 50)
                    };
                    asked.fetch_add(1, Ordering::Relaxed);
                    match query_udp(addr, ip(STAFF_IP), &name, RecordType::A, false) {
                        Ok(msg) if msg.metadata.response_code != ResponseCode::ServFail => {}
                        other => {
                            eprintln!("lost {name}: {:?}", other.map(|m| m.metadata.response_code));
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for i in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        d.write_file("tiktok.txt", &format!("tiktok.com\nextra{i}.example\n"));
        d.reload();
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let asked = asked.load(Ordering::Relaxed);
    assert!(asked > 100, "the clients ran ({asked} queries)");
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "every one of {asked} queries answered across 5 reloads"
    );
}

#[test]
fn metrics_count_outcomes_blocks_cache_and_upstreams() {
    let (up, d) = start("tiktok.com\n");
    // The harness's start-up probes are queries too (one every 100 ms until the first answer, so
    // on a busy machine a few may still be in flight): count from when they are all answered.
    let mut before = d.scrape_metrics();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = d.scrape_metrics();
        if now == before || Instant::now() > deadline {
            break;
        }
        before = now;
    }
    query_udp(d.addr(), ip(STAFF_IP), "www.tiktok.com", RecordType::A, false).expect("answer");
    query_udp(d.addr(), ip(NOBODY_IP), "a.example", RecordType::A, false).expect("answer");
    query_udp(d.addr(), ip(NOBODY_IP), "a.example", RecordType::A, false).expect("answer");
    query_tcp(d.addr(), ip(NOBODY_IP), "b.example", RecordType::A, false).expect("answer");
    let page = d.scrape_metrics();
    let get = |name: &str, labels: &[(&str, &str)]| {
        metric(&page, name, labels).unwrap_or(0.0) - metric(&before, name, labels).unwrap_or(0.0)
    };
    assert_eq!(
        get("sinkhole_queries_total", &[("protocol", "udp"), ("outcome", "blocked")]),
        1.0,
        "{page}"
    );
    assert_eq!(
        get(
            "sinkhole_queries_total",
            &[("protocol", "udp"), ("outcome", "forwarded")]
        ),
        1.0
    );
    assert_eq!(
        get("sinkhole_queries_total", &[("protocol", "udp"), ("outcome", "cached")]),
        1.0
    );
    assert_eq!(
        get(
            "sinkhole_queries_total",
            &[("protocol", "tcp"), ("outcome", "forwarded")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "sinkhole_blocks_total",
            &[("policy", "staff"), ("list", "tiktok"), ("mode", "enforce")]
        ),
        1.0
    );
    assert_eq!(
        metric(&page, "sinkhole_list_rules", &[("list", "tiktok")]),
        Some(1.0),
        "a gauge"
    );
    assert!(get("sinkhole_cache_hits_total", &[]) >= 1.0);
    let upstream = up.addr().to_string();
    assert_eq!(
        get("sinkhole_upstream_duration_seconds_count", &[("upstream", &upstream)]),
        2.0
    );
    assert!(page.contains("# HELP sinkhole_queries_total"), "described metrics");
    assert!(page.contains("sinkhole_build_info{version="));
    for forbidden in ["tiktok.com", "a.example", STAFF_IP, NOBODY_IP] {
        assert!(
            !page.contains(forbidden),
            "metrics must not carry names or clients: {forbidden}"
        );
    }
    // The Prometheus tool's own linter, where it is installed (CI installs it).
    promtool_lint(&page);
}

#[test]
fn check_summarises_a_good_config_and_locates_errors() {
    let dir = TestDir::new();
    dir.write_file("tiktok.txt", "tiktok.com\n||tiktokv.com^\nnot a domain!\n");
    let config = r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
files = ["tiktok.txt"]
[[policy]]
name = "staff"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
[[policy]]
name = "byod"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
[[policy]]
name = "ban-2023"
clients = ["10.70.0.0/16"]
block = ["tiktok"]
active_until = "2023-09-17T00:00:00+02:00"
"#;
    let path = dir.write_file("sinkhole.toml", config);
    let path = path.to_str().expect("utf-8 path");
    let out = run_sinkhole(&["check", "-c", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check passes with warnings:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("tiktok") && text.contains("2 rules, 1 bad lines"),
        "{text}"
    );
    assert!(
        text.contains("claimed by policy \"staff\" and policy \"byod\""),
        "{text}"
    );
    assert!(text.contains("its window ended already"), "{text}");
    assert!(text.contains("tiktok.txt:3: list tiktok: skipped line"), "{text}");

    dir.write_file(
        "sinkhole.toml",
        &config.replace(
            "block = [\"tiktok\"]\n[[policy]]\nname = \"byod\"",
            "block = [\"tiktk\"]\n[[policy]]\nname = \"byod\"",
        ),
    );
    let out = run_sinkhole(&["check", "-c", path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinkhole.toml:9:10: policy \"staff\" names list \"tiktk\""),
        "{err}"
    );

    dir.write_file("sinkhole.toml", "[server]\nlisten = [\"127.0.0.1:53\"]\nthreds = 2\n");
    let out = run_sinkhole(&["check", "-c", path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sinkhole.toml:3:1: unknown field `threds`"), "{err}");
}

#[test]
fn explain_names_policy_prefix_list_rule_and_answer() {
    let dir = TestDir::new();
    let path = dir.write_file(
        "sinkhole.toml",
        r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
builtin = ["tiktok"]
[[policy]]
name = "staff"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
[[policy]]
name = "comms"
clients = ["10.50.0.0/24"]
block = []
"#,
    );
    let path = path.to_str().expect("utf-8 path");
    let out = run_sinkhole(&["explain", "-c", path, "--client", "10.1.2.3", "www.tiktok.com", "AAAA"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("policy    staff (through 10.0.0.0/8"), "{text}");
    assert!(text.contains("match     list tiktok rule \"tiktok.com\""), "{text}");
    assert!(text.contains("answer    NXDOMAIN (nxdomain)"), "{text}");
    assert!(text.contains("SOA"), "{text}");

    let out = run_sinkhole(&["explain", "-c", path, "--client", "10.50.0.9", "www.tiktok.com"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("policy    comms (through 10.50.0.0/24"), "{text}");
    assert!(text.contains("answer    forwarded"), "{text}");

    let out = run_sinkhole(&["explain", "-c", path, "--client", "8.8.8.8", "www.tiktok.com"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("REFUSED"), "{text}");
}

#[test]
fn help_documents_the_commands() {
    let out = run_sinkhole(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check", "explain"] {
        assert!(text.contains(word), "{text}");
    }
    let out = run_sinkhole(&["explain", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--client"));
}

/// The salt of [`hits_with_privacy`].
const SALT: &str = "a secret of the admins, 32 bytes";

/// A daemon whose hit log uses `client_ip = mode` (and a salt), and one blocked query from STAFF_IP.
fn hits_with_privacy(mode: &str) -> serde_json::Value {
    hits_with_log(TestDir::new(), &format!("client_ip = \"{mode}\"\nsalt = \"{SALT}\"\n"))
}

/// The first hit of a daemon whose `[log]` section also holds `log`, after one blocked query from STAFF_IP.
fn hits_with_log(dir: TestDir, log: &str) -> serde_json::Value {
    let up = FakeUpstream::start();
    dir.write_file("tiktok.txt", "tiktok.com\n");
    let config = config(&up).replace("[log]\n", &format!("[log]\n{log}"));
    let d = Daemon::start_in(dir, &config);
    assert_eq!(rcode(&d, "tiktok.com"), ResponseCode::NXDomain);
    wait_for_hits(d.dir().join("hits.jsonl"), 1, Duration::from_secs(5)).remove(0)
}

#[test]
fn hit_log_client_privacy_modes() {
    assert_eq!(hits_with_privacy("full")["client"], STAFF_IP);
    assert_eq!(hits_with_privacy("truncated")["client"], "127.10.0.0/24");
    assert!(hits_with_privacy("none").get("client").is_none());
    let hashed = hits_with_privacy("hashed");
    let token = hashed["client"].as_str().expect("a token");
    assert_eq!(token.len(), 16, "{token}");
    assert!(
        token.chars().all(|c| c.is_ascii_hexdigit()) && !token.contains("127"),
        "{token}"
    );
    assert_eq!(hits_with_privacy("hashed")["client"], token, "stable for a salt");
    // The same salt from a file only its owner and group may read, named relative to the config.
    let dir = TestDir::new();
    let file = dir.write_file("salt", &format!("{SALT}\n"));
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o640)).expect("chmod");
    let from_file = hits_with_log(dir, "client_ip = \"hashed\"\nsalt_file = \"salt\"\n");
    assert_eq!(
        from_file["client"], token,
        "the same token from the same salt in a file"
    );
}

#[test]
fn sighup_reopens_the_hit_log_for_logrotate() {
    let (_up, d) = start("tiktok.com\n");
    let log = d.dir().join("hits.jsonl");
    assert_eq!(rcode(&d, "tiktok.com"), ResponseCode::NXDomain);
    wait_for_hits(&log, 1, Duration::from_secs(5));
    std::fs::rename(&log, d.dir().join("hits.jsonl.1")).expect("rotate");
    d.reload();
    d.wait_for_stderr("reloaded", Duration::from_secs(5));
    assert_eq!(rcode(&d, "www.tiktok.com"), ResponseCode::NXDomain);
    let fresh = wait_for_hits(&log, 1, Duration::from_secs(5));
    assert_eq!(fresh[0]["qname"], "www.tiktok.com", "new lines go to the new file");
    assert_eq!(
        read_hits(d.dir().join("hits.jsonl.1")).len(),
        1,
        "the rotated file keeps the old line"
    );
}

/// Runs `sinkhole check -c FILE` on `config` written to a fresh dir: (success, stdout, stderr).
fn check_config(config: &str) -> (bool, String, String) {
    let dir = TestDir::new();
    let path = dir.write_file("sinkhole.toml", config);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_lists_every_error_of_the_file_in_line_order() {
    // Three mistakes, in an order unlike the order validation looks at sections in.
    let config = r#"[log]
client_ip = "hashed"
[lists.tiktok]
builtin = ["tiktok"]
[[policy]]
name = "staff"
clients = ["10.0.0.0/8"]
block = ["tiktk"]
[server]
tcp_idle_timeout = 0
"#;
    let (ok, _, err) = check_config(config);
    assert!(!ok, "errors fail the check:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("sinkhole.toml:")).collect();
    assert_eq!(lines.len(), 3, "each error once:\n{err}");
    assert!(
        lines[0].contains("sinkhole.toml:2:13: log.client_ip = \"hashed\" needs log.salt"),
        "{err}"
    );
    assert!(
        lines[1].contains("sinkhole.toml:8:10: policy \"staff\" names list \"tiktk\""),
        "{err}"
    );
    assert!(
        lines[2].contains("sinkhole.toml:10:20: server.tcp_idle_timeout must be at least 1"),
        "{err}"
    );
}

#[test]
fn a_list_file_that_is_a_url_says_where_urls_go() {
    let (ok, _, err) = check_config(
        "[lists.tiktok]\nfiles = [\"https://example.com/tiktok.txt\"]\n[[policy]]\nname = \"staff\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"tiktok\"]\n",
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("sinkhole.toml:2:10: list tiktok: \"https://example.com/tiktok.txt\" is a URL"),
        "{err}"
    );
    assert!(err.contains("`urls`") && !err.contains("cannot read"), "{err}");
}

#[test]
fn a_policy_whose_clients_lie_outside_server_allow_warns_in_check_and_at_start() {
    let config = r#"
[server]
allow = ["127.0.0.0/8", "10.0.0.0/9"]
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
builtin = ["tiktok"]
[[policy]]
name = "staff"
clients = ["10.0.0.0/8"]
block = ["tiktok"]
[[policy]]
name = "guests"
clients = ["192.0.2.0/24"]
block = ["tiktok"]
"#;
    let (ok, out, err) = check_config(config);
    assert!(ok, "a warning, not an error:\n{out}\n{err}");
    assert!(
        out.contains(
            "sinkhole.toml:10:12: policy \"staff\": part of 10.0.0.0/8 is outside server.allow (10.128.0.0/9)"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "sinkhole.toml:14:12: policy \"guests\" never applies to 192.0.2.0/24: none of it is in server.allow"
        ),
        "{out}"
    );

    let up = FakeUpstream::start();
    let d = Daemon::start(&format!(
        "[server]\nlisten = [\"{{listen}}\"]\nallow = [\"127.0.0.0/8\"]\n[upstream]\nservers = [\"{}\"]\n[lists.tiktok]\nbuiltin = [\"tiktok\"]\n[[policy]]\nname = \"guests\"\nclients = [\"192.0.2.0/24\"]\nblock = [\"tiktok\"]\n",
        up.addr()
    ));
    d.wait_for_stderr(
        "policy \"guests\" never applies to 192.0.2.0/24",
        Duration::from_secs(5),
    );
}

#[test]
fn an_upstream_that_is_sinkhole_itself_is_refused() {
    for (listen, upstream) in [
        ("0.0.0.0:53", "127.0.0.1:53"),
        ("0.0.0.0:53", "127.0.0.1"),
        ("[::]:5353", "[::1]:5353"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
    ] {
        let (ok, _, err) = check_config(&format!(
            "[server]\nlisten = [\"{listen}\"]\n[upstream]\nservers = [\"192.0.2.1\", \"{upstream}\"]\n"
        ));
        assert!(!ok, "{listen} forwarding to {upstream}:\n{err}");
        assert!(
            err.contains("sinkhole.toml:4:25: upstream ") && err.contains("is sinkhole itself"),
            "{listen} forwarding to {upstream}:\n{err}"
        );
    }
    let (ok, out, err) =
        check_config("[server]\nlisten = [\"0.0.0.0:53\"]\n[upstream]\nservers = [\"127.0.0.1:5300\"]\n");
    assert!(ok, "another port is another server:\n{out}\n{err}");
}

/// Starts `sinkhole ARGS` with stderr piped and `env` set, and returns it with the first `lines` lines of
/// its stderr (or fewer, if it stops writing for 10 s).
fn stderr_lines(args: &[&str], env: &[(&str, &str)], lines: usize) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = Command::new(sinkhole_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sinkhole");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < lines {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    (child, seen)
}

/// A config for a daemon started by hand on `port` (with `log`, a `[log]` section's keys).
fn hand_started(dir: &TestDir, port: u16, up: &FakeUpstream, log: &str) -> String {
    let path = dir.write_file(
        "sinkhole.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nmetrics = \"off\"\nthreads = 1\n[upstream]\nservers = [\"{}\"]\n[lists.tiktok]\nbuiltin = [\"tiktok\"]\n[[policy]]\nname = \"staff\"\nclients = [\"127.0.0.0/8\"]\nblock = [\"tiktok\"]\n[log]\n{log}",
            up.addr()
        ),
    );
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn logs_through_a_pipe_have_no_colour_and_are_json_on_request() {
    let up = FakeUpstream::start();
    let dir = TestDir::new();
    let root = harness_run_args();
    let root: Vec<&str> = root.iter().map(String::as_str).collect();

    let config = hand_started(&dir, free_port(), &up, "");
    let args = [&["run", "-c", config.as_str()][..], &root].concat();
    let (mut child, lines) = stderr_lines(&args, &[], 3);
    let _ = child.kill();
    let _ = child.wait();
    assert!(!lines.is_empty(), "it logs at start");
    for line in &lines {
        assert!(!line.contains("\x1b["), "no ANSI colour through a pipe: {line:?}");
    }

    for (env, log) in [
        (&[("SINKHOLE_LOG_FORMAT", "json")][..], ""),
        (&[][..], "format = \"json\"\n"),
        (&[("SINKHOLE_LOG_FORMAT", "json")][..], "format = \"text\"\n"),
    ] {
        let config = hand_started(&dir, free_port(), &up, log);
        let args = [&["run", "-c", config.as_str()][..], &root].concat();
        let (mut child, lines) = stderr_lines(&args, env, 3);
        let _ = child.kill();
        let _ = child.wait();
        assert!(!lines.is_empty(), "{env:?} {log}: it logs at start");
        for line in &lines {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{env:?} {log}: not JSON ({e}): {line}"));
            assert!(value["level"].is_string() && value["fields"].is_object(), "{line}");
        }
    }
}

#[test]
fn run_flags_work_without_the_run_subcommand() {
    let up = FakeUpstream::start();
    let dir = TestDir::new();
    let port = free_port();
    let config = hand_started(&dir, port, &up, "");
    let root = harness_run_args();
    let root: Vec<&str> = root.iter().map(String::as_str).collect();
    let args = [&["-c", config.as_str()][..], &root].concat();
    let (mut child, lines) = stderr_lines(&args, &[], 1);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        match query_udp(addr, ip(STAFF_IP), "www.tiktok.com", RecordType::A, false) {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "`sinkhole -c FILE` never answered ({e}): {lines:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NXDomain,
        "it runs the config given"
    );

    let out = run_sinkhole(&[&["-c", "/nonexistent/sinkhole.toml"][..], &root].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/sinkhole.toml: cannot read the config"),
        "{err}"
    );
}
