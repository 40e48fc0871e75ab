//! The metrics listener as an operator and an orchestrator use it: `/health`, `/ready` with what
//! is not ready, `/metrics` with the process and readiness metrics, `sinkhole health`, and the
//! log line and counter of a policy's change of phase.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const STAFF_IP: &str = "127.10.0.5";
const DEADLINE: Duration = Duration::from_secs(15);

/// A config forwarding to `upstream`, with a file list blocked by `staff`; `extra` at the end.
fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["{upstream}"]
timeout_ms = 500
[lists.tiktok]
files = ["{{dir}}/tiktok.txt"]
[log]
hits = "off"
{extra}"#
    )
}

const STAFF: &str = "[[policy]]\nname = \"staff\"\nclients = [\"127.10.0.0/16\"]\nblock = [\"tiktok\"]\n";

fn start(upstream: &str, extra: &str) -> Daemon {
    let dir = TestDir::new();
    dir.write_file("tiktok.txt", "tiktok.com\n");
    Daemon::start_in(dir, &config(upstream, extra))
}

/// One request on a fresh connection: the status, the head (lowercased) and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let answer = http_request(addr, method, path, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    (answer.status, answer.head, answer.body)
}

fn ready_json(d: &Daemon) -> (u16, serde_json::Value) {
    let (status, head, body) = http(d.metrics_addr(), "GET", "/ready");
    assert!(head.contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(&body).expect("JSON body"))
}

fn health_cli(d: &Daemon, ready: bool) -> std::process::Output {
    let config = d.dir().join("sinkhole.toml");
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec!["health", "-c", config];
    if ready {
        args.push("--ready");
    }
    run_sinkhole(&args)
}

/// Polls `check` every 100 ms until it holds, or fails after [`DEADLINE`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_and_ready_answer_200_when_all_is_well() {
    let up = FakeUpstream::start();
    let d = start(&up.addr().to_string(), STAFF);

    let (status, head, body) = http(d.metrics_addr(), "GET", "/health");
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}\n"));
    assert!(head.contains("content-type: application/json"), "{head}");

    let (status, ready) = ready_json(&d);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "checks": {"listeners": "ok", "lists": "ok", "upstreams": "ok"}})
    );

    // HEAD: the status and headers, no body.
    let (status, head, body) = http(d.metrics_addr(), "HEAD", "/ready");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");

    let out = health_cli(&d, false);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"status\":\"ok\"}\n");
    let out = health_cli(&d, true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ready\":true"),
        "{out:?}"
    );
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let up = FakeUpstream::start();
    let d = start(&up.addr().to_string(), STAFF);
    for path in ["/", "/nope", "/metrics/x", "/healthz"] {
        let (status, _, _) = http(d.metrics_addr(), "GET", path);
        assert_eq!(status, 404, "GET {path}");
    }
    for (method, path) in [("POST", "/ready"), ("PUT", "/metrics"), ("DELETE", "/health")] {
        let (status, head, _) = http(d.metrics_addr(), method, path);
        assert_eq!(status, 405, "{method} {path}");
        assert!(head.contains("allow: get, head"), "{head}");
    }
    // A head far past the 8 KiB cap is refused, not buffered.
    let mut stream = TcpStream::connect(d.metrics_addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let huge = format!("GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = stream.write_all(huge.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "an oversized head gets no 200: {answer:?}"
    );
    // And the listener still serves.
    assert_eq!(http(d.metrics_addr(), "GET", "/health").0, 200);
}

#[test]
fn idle_connections_cannot_lock_probes_out_for_long() {
    let up = FakeUpstream::start();
    let d = start(&up.addr().to_string(), STAFF);
    // More silent connections than the listener serves at once (32): the rest wait in the backlog.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(d.metrics_addr()).expect("connect"))
        .collect();
    let started = Instant::now();
    let (status, _, _) = http(d.metrics_addr(), "GET", "/health");
    assert_eq!(status, 200);
    // Each silent connection is closed after 5 s without a request head.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "a probe waited {:?} behind idle connections",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn metrics_show_process_and_readiness_and_pass_promtool() {
    let up = FakeUpstream::start();
    let d = start(&up.addr().to_string(), STAFF);
    // An answer from the upstream first, so that its series exist.
    let answer = query_udp(d.addr(), ip(STAFF_IP), "a.example", RecordType::A, false).expect("answer");
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    let page = d.scrape_metrics();
    let (_, head, _) = http(d.metrics_addr(), "GET", "/metrics");
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        let value = metric(&page, name, &[]).unwrap_or_else(|| panic!("{name} missing:\n{page}"));
        assert!(value > 0.0, "{name} = {value}");
    }
    assert!(metric(&page, "process_cpu_seconds_total", &[]).is_some(), "{page}");
    assert!(page.contains("# TYPE process_cpu_seconds_total counter"), "{page}");
    assert_eq!(metric(&page, "sinkhole_ready", &[]), Some(1.0), "{page}");
    let upstream = up.addr().to_string();
    assert_eq!(
        metric(&page, "sinkhole_upstream_up", &[("upstream", &upstream)]),
        Some(1.0),
        "{page}"
    );
    // A policy always on: no change ahead, all its next-change series 0.
    assert_eq!(
        metric(
            &page,
            "sinkhole_policy_next_change_timestamp_seconds",
            &[("policy", "staff"), ("mode", "enforce")]
        ),
        Some(0.0),
        "{page}"
    );
    promtool_lint(&page);
}

#[test]
fn an_upstream_a_reload_removed_leaves_the_page() {
    let (first, second) = (FakeUpstream::start(), FakeUpstream::start());
    let d = start(&first.addr().to_string(), STAFF);
    let (first, second) = (first.addr().to_string(), second.addr().to_string());
    let up = |page: &str, upstream: &str| metric(page, "sinkhole_upstream_up", &[("upstream", upstream)]);
    assert_eq!(up(&d.scrape_metrics(), &first), Some(1.0));
    let text = std::fs::read_to_string(d.dir().join("sinkhole.toml")).expect("config");
    d.write_file("sinkhole.toml", &text.replace(&first, &second));
    d.reload();
    wait_until("the new upstream on the page", || {
        up(&d.scrape_metrics(), &second) == Some(1.0)
    });
    let page = d.scrape_metrics();
    assert_eq!(up(&page, &first), None, "{page}");
}

#[test]
fn ready_is_503_naming_the_upstream_when_the_only_one_is_dead() {
    // A loopback port nothing answers on: each query to it is refused at once.
    let dead = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let d = start(&dead.to_string(), STAFF);
    let mut last = serde_json::Value::Null;
    wait_until("/ready says 503", || {
        let _ = query_udp(d.addr(), ip(STAFF_IP), "a.example", RecordType::A, false);
        let (status, ready) = ready_json(&d);
        last = ready;
        status == 503
    });
    assert_eq!(last["ready"], false, "{last}");
    assert_eq!(last["checks"]["listeners"], "ok", "{last}");
    assert_eq!(last["checks"]["lists"], "ok", "{last}");
    let upstreams = last["checks"]["upstreams"].as_str().expect("a reason");
    assert!(
        upstreams.starts_with(&format!("no upstream healthy: {dead} down since 20")),
        "{last}"
    );
    // The CLI agrees: alive, not ready. (Queries keep the server in its backoff.)
    let _ = query_udp(d.addr(), ip(STAFF_IP), "b.example", RecordType::A, false);
    let out = health_cli(&d, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&dead.to_string()),
        "{out:?}"
    );
    assert_eq!(health_cli(&d, false).status.code(), Some(0));
    let _ = query_udp(d.addr(), ip(STAFF_IP), "c.example", RecordType::A, false);
    let page = d.scrape_metrics();
    assert_eq!(metric(&page, "sinkhole_ready", &[]), Some(0.0), "{page}");
    assert_eq!(
        metric(&page, "sinkhole_upstream_up", &[("upstream", &dead.to_string())]),
        Some(0.0),
        "{page}"
    );
}

#[test]
fn ready_is_503_naming_the_list_a_blocking_policy_has_not_loaded_until_it_loads() {
    let up = FakeUpstream::start();
    let http_server = HttpServer::start();
    http_server.set("/list.txt", "remote.example\n");
    http_server.behave("/list.txt", Behaviour::Status(404));
    let state = TestDir::new();
    let extra = format!(
        "[lists.remote]\nurls = [\"{}\"]\nrefresh = \"1s\"\ntimeout = \"1s\"\n\
         [[policy]]\nname = \"staff\"\nclients = [\"127.10.0.0/16\"]\nblock = [\"remote\"]\n",
        http_server.url("/list.txt")
    );
    let text = config(&up.addr().to_string(), &extra).replace(
        "threads = 1\n",
        &format!(
            "threads = 1\nstate_dir = \"{}\"\nlist_wait = \"1s\"\n",
            state.path().display()
        ),
    );
    let d = start_text(&text);
    let (status, ready) = ready_json(&d);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        ready["checks"]["lists"], "list remote (policy staff) has not loaded",
        "{ready}"
    );
    assert_eq!(ready["checks"]["upstreams"], "ok", "{ready}");
    assert_eq!(health_cli(&d, true).status.code(), Some(1));

    // Once it loads (the next refresh), the daemon is ready.
    http_server.behave("/list.txt", Behaviour::Serve);
    wait_until("/ready says 200 once the list loaded", || ready_json(&d).0 == 200);
}

/// A daemon of a whole config text (the file list written first).
fn start_text(text: &str) -> Daemon {
    let dir = TestDir::new();
    dir.write_file("tiktok.txt", "tiktok.com\n");
    Daemon::start_in(dir, text)
}

#[test]
fn a_policy_window_that_opens_and_closes_is_logged_counted_and_announced() {
    let up = FakeUpstream::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let (opens, closes) = (now + 5, now + 8);
    let at = |t: i64| jiff::Timestamp::from_second(t).expect("time").to_string();
    let policy = format!(
        "{STAFF}active_from = \"{}\"\nactive_until = \"{}\"\n",
        at(opens),
        at(closes)
    );
    let d = start(&up.addr().to_string(), &policy);

    // Before: announced, on the mode it enters.
    let page = d.scrape_metrics();
    let next = |page: &str, mode: &str| {
        metric(
            page,
            "sinkhole_policy_next_change_timestamp_seconds",
            &[("policy", "staff"), ("mode", mode)],
        )
    };
    assert_eq!(next(&page, "enforce"), Some(opens as f64), "{page}");
    assert_eq!(next(&page, "none"), Some(0.0), "{page}");
    assert_eq!(
        rcode_of(&d, "tiktok.com"),
        ResponseCode::NoError,
        "not blocking before its window"
    );

    d.wait_for_stderr("policy enters a phase", DEADLINE);
    let line = d
        .stderr()
        .lines()
        .find(|l| l.contains("policy enters a phase"))
        .map(str::to_string)
        .expect("the line");
    assert!(
        line.contains(" INFO ")
            && line.contains("policy=staff")
            && line.contains("phase=0")
            && line.contains("mode=enforce"),
        "{line}"
    );

    d.wait_for_stderr("policy stops blocking", DEADLINE);
    let line = d
        .stderr()
        .lines()
        .find(|l| l.contains("policy stops blocking"))
        .map(str::to_string)
        .expect("the line");
    assert!(line.contains("policy=staff"), "{line}");
    let page = d.scrape_metrics();
    let changes = |mode: &str| {
        metric(
            &page,
            "sinkhole_policy_changes_total",
            &[("policy", "staff"), ("mode", mode)],
        )
    };
    assert_eq!(changes("enforce"), Some(1.0), "{page}");
    assert_eq!(changes("none"), Some(1.0), "{page}");
    // Over: no change ahead.
    assert_eq!(next(&page, "enforce"), Some(0.0), "{page}");
    assert_eq!(next(&page, "none"), Some(0.0), "{page}");
}

fn rcode_of(d: &Daemon, name: &str) -> ResponseCode {
    query_udp(d.addr(), ip(STAFF_IP), name, RecordType::A, false)
        .expect("answer")
        .metadata
        .response_code
}

#[test]
fn sinkhole_health_fails_when_nothing_listens() {
    let dir = TestDir::new();
    let port = free_port();
    let path = dir.write_file(
        "sinkhole.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\nmetrics = \"127.0.0.1:{port}\"\n",
            free_port()
        ),
    );
    let out = run_sinkhole(&["health", "-c", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the metrics listener"),
        "{out:?}"
    );
    // A config without a metrics listener: said so, exit 1.
    let path = dir.write_file(
        "no-metrics.toml",
        "[server]\nlisten = [\"127.0.0.1:5353\"]\nmetrics = \"off\"\n",
    );
    let out = run_sinkhole(&["health", "-c", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.metrics is not set"),
        "{out:?}"
    );
}
