//! Lists fetched by URL, as an admin meets them: the real daemon on loopback, an HTTP server the test owns
//! ([`HttpServer`]) serving the lists, and queries from a client of the blocking policy. A list that changes is
//! picked up at its refresh; one that 404s, times out, shrinks to nothing or by more than max_shrink, outgrows max_bytes or turns to garbage keeps the previous
//! list serving, with the failure in /metrics; an unchanged list costs a 304; a restart without the server serves
//! the saved copy at once; a list that never loaded fails closed or open as the policy says; and no query is lost
//! while lists are swapped.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

/// How long anything the daemon does in the background may take on a busy machine.
const DEADLINE: Duration = Duration::from_secs(45);
/// A client of the policy that fails closed (`staff`).
const CLOSED: IpAddr = STAFF;
/// A client of the policy that fails open.
const OPEN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 11, 0, 5));
/// A client of the policy that blocks the list named like the built-in `tiktok`.
const TIKTOK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 12, 0, 5));

/// A config with one list per `(name, urls)`, each refreshed every second, blocked by the `staff` policy;
/// `extra` goes at the end (more policies). State goes to `state_dir`.
fn config(upstream: &FakeUpstream, state_dir: &str, lists: &[(&str, &[String])], extra: &str) -> String {
    let mut text = format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 1
state_dir = "{state_dir}"
list_wait = "3s"
[upstream]
servers = ["{}"]
[log]
hits = "off"
"#,
        upstream.addr()
    );
    for (name, urls) in lists {
        let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
        text.push_str(&format!(
            "[lists.{name}]\nurls = [{}]\nrefresh = \"1s\"\ntimeout = \"1s\"\n",
            urls.join(", ")
        ));
    }
    let names: Vec<String> = lists.iter().map(|(name, _)| format!("{name:?}")).collect();
    text.push_str(&format!(
        "[[policy]]\nname = \"staff\"\nclients = [\"127.10.0.0/16\"]\nblock = [{}]\n{extra}",
        names.join(", ")
    ));
    text
}

fn ask(daemon: &Daemon, client: IpAddr, name: &str) -> Message {
    query_udp(daemon.addr(), client, name, RecordType::A, true).unwrap_or_else(|e| panic!("{name} from {client}: {e}"))
}

fn rcode(daemon: &Daemon, client: IpAddr, name: &str) -> ResponseCode {
    ask(daemon, client, name).metadata.response_code
}

/// Polls `what` until it holds, up to [`DEADLINE`]; panics with `why` and the daemon's log otherwise.
fn wait_until(daemon: &Daemon, why: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !what() {
        assert!(
            Instant::now() < deadline,
            "{why}: not within {DEADLINE:?}\n--- stderr ---\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A metric of the daemon's page, 0 when absent.
fn count(daemon: &Daemon, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&daemon.scrape_metrics(), name, labels).unwrap_or(0.0)
}

/// The usual start: a fresh upstream, state directory and HTTP server serving `body` at `path`, and a daemon whose
/// `staff` policy blocks one list, `name`, from that URL. The first three live as long as the test keeps them.
fn start_with_list(name: &str, path: &str, body: &str) -> (FakeUpstream, HttpServer, TestDir, Daemon) {
    let upstream = FakeUpstream::start();
    let http = HttpServer::start();
    http.set(path, body);
    let state = TestDir::new();
    let urls = [http.url(path)];
    let daemon = Daemon::start(&config(
        &upstream,
        &state.path().display().to_string(),
        &[(name, &urls)],
        "",
    ));
    (upstream, http, state, daemon)
}

/// `n` names under `tag`, one a line.
fn names(tag: &str, n: usize) -> String {
    (0..n).map(|i| format!("site{i}.{tag}.example\n")).collect()
}

#[test]
fn a_list_that_changes_blocks_its_new_names_after_the_refresh() {
    let (_upstream, http, _state, daemon) =
        start_with_list("remote", "/list.txt", "# version 1\nold.example\nkept.example\n");
    assert_eq!(rcode(&daemon, CLOSED, "old.example"), ResponseCode::NXDomain);
    assert_eq!(rcode(&daemon, CLOSED, "new.example"), ResponseCode::NoError);
    assert_eq!(
        rcode(&daemon, OTHER, "old.example"),
        ResponseCode::NoError,
        "only the policy's clients"
    );

    http.set("/list.txt", "# version 2\nnew.example\nkept.example\n");
    wait_until(&daemon, "new.example blocked after the refresh", || {
        rcode(&daemon, CLOSED, "new.example") == ResponseCode::NXDomain
    });
    assert_eq!(
        rcode(&daemon, CLOSED, "old.example"),
        ResponseCode::NoError,
        "the old name is gone"
    );
    assert_eq!(rcode(&daemon, CLOSED, "kept.example"), ResponseCode::NXDomain);
    assert!(
        count(
            &daemon,
            "sinkhole_list_updates_total",
            &[("list", "remote"), ("result", "updated")]
        ) >= 2.0
    );
    assert_eq!(count(&daemon, "sinkhole_list_rules", &[("list", "remote")]), 2.0);
    assert!(
        count(
            &daemon,
            "sinkhole_list_last_success_timestamp_seconds",
            &[("list", "remote")]
        ) > 1.7e9
    );
    daemon.wait_for_stderr("list updated", DEADLINE);
}

#[test]
fn failed_updates_keep_the_previous_list_and_are_counted() {
    let upstream = FakeUpstream::start();
    let http = HttpServer::start();
    const LISTS: [&str; 6] = ["gone", "slow", "shrinks", "halves", "garbage", "grows"];
    for tag in LISTS {
        http.set(&format!("/{tag}"), &names(tag, 10));
    }
    let state = TestDir::new();
    let urls: Vec<[String; 1]> = LISTS.iter().map(|tag| [http.url(&format!("/{tag}"))]).collect();
    let lists: Vec<(&str, &[String])> = LISTS.iter().zip(&urls).map(|(tag, u)| (*tag, &u[..])).collect();
    // 10 names fit in 1 KiB, 100 do not.
    let text = config(&upstream, &state.path().display().to_string(), &lists, "")
        .replace("[lists.grows]\n", "[lists.grows]\nmax_bytes = \"1KiB\"\n");
    let daemon = Daemon::start(&text);
    for tag in LISTS {
        assert_eq!(
            rcode(&daemon, CLOSED, &format!("site3.{tag}.example")),
            ResponseCode::NXDomain,
            "{tag}"
        );
    }

    http.behave("/gone", Behaviour::Status(404));
    http.behave("/slow", Behaviour::Slow(Duration::from_secs(20)));
    http.set("/shrinks", "");
    http.set("/halves", &names("halves", 4));
    http.set("/grows", &names("grows", 100));
    http.set(
        "/garbage",
        "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n<body>Back soon!</body>\n</html>\n",
    );
    for (list, reason) in [
        ("gone", "http_status"),
        ("slow", "timeout"),
        ("shrinks", "empty"),
        ("halves", "shrink"),
        ("garbage", "bad_lines"),
        ("grows", "too_large"),
    ] {
        wait_until(&daemon, &format!("a {reason} failure of {list} counted"), || {
            count(
                &daemon,
                "sinkhole_list_update_failures_total",
                &[("list", list), ("reason", reason)],
            ) >= 1.0
        });
        assert_eq!(
            rcode(&daemon, CLOSED, &format!("site3.{list}.example")),
            ResponseCode::NXDomain,
            "{list}: the previous copy still blocks"
        );
        assert_eq!(count(&daemon, "sinkhole_list_rules", &[("list", list)]), 10.0, "{list}");
    }
    let log = daemon.stderr();
    assert!(
        log.contains("list update failed") && log.contains("reason") && log.contains("/garbage"),
        "the failure is logged with list, url and reason:\n{log}"
    );
}

#[test]
fn an_unchanged_list_is_confirmed_by_a_304_and_not_parsed_again() {
    let (_upstream, http, _state, daemon) = start_with_list("remote", "/list.txt", &names("same", 5));
    wait_until(&daemon, "two conditional requests answered 304", || {
        http.not_modified("/list.txt") >= 2
    });
    wait_until(&daemon, "the 304s counted as unchanged", || {
        count(
            &daemon,
            "sinkhole_list_updates_total",
            &[("list", "remote"), ("result", "unchanged")],
        ) >= 2.0
    });
    assert_eq!(
        count(
            &daemon,
            "sinkhole_list_updates_total",
            &[("list", "remote"), ("result", "updated")]
        ),
        1.0,
        "downloaded and parsed once"
    );
    assert_eq!(
        daemon.stderr().matches("lists rebuilt").count(),
        1,
        "one rebuild, for the first download; none for an unchanged list"
    );
    assert_eq!(rcode(&daemon, CLOSED, "site4.same.example"), ResponseCode::NXDomain);
}

#[test]
fn a_restart_without_the_server_serves_the_saved_copy_at_once() {
    let upstream = FakeUpstream::start();
    let mut http = HttpServer::start();
    http.set("/list.txt", &names("saved", 3));
    let state = TestDir::new();
    let urls = [http.url("/list.txt")];
    let text = config(&upstream, &state.path().display().to_string(), &[("remote", &urls)], "");
    let mut first = Daemon::start(&text);
    assert_eq!(rcode(&first, CLOSED, "site1.saved.example"), ResponseCode::NXDomain);
    first.terminate();
    http.stop();

    let check = run_sinkhole(&["check", "-c", &first.dir().join("sinkhole.toml").display().to_string()]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        report.contains(&format!("{} (copy of", urls[0])) && report.contains("3 rules; refreshed every 1s"),
        "check says where the list came from and when:\n{report}"
    );

    let second = Daemon::start(&text);
    assert_eq!(
        rcode(&second, CLOSED, "site1.saved.example"),
        ResponseCode::NXDomain,
        "the first query after the start is blocked from the saved copy"
    );
    wait_until(&second, "the failed refresh counted", || {
        count(
            &second,
            "sinkhole_list_update_failures_total",
            &[("list", "remote"), ("reason", "network")],
        ) >= 1.0
    });
    assert_eq!(rcode(&second, CLOSED, "site2.saved.example"), ResponseCode::NXDomain);
}

#[test]
fn a_list_that_never_loaded_fails_closed_or_open_as_the_policy_says() {
    let upstream = FakeUpstream::start();
    let mut http = HttpServer::start();
    let port = http.addr();
    http.stop();
    let state = TestDir::new();
    let remote = [format!("http://{port}/list.txt")];
    let tiktok = [format!("http://{port}/tiktok.txt")];
    let extra = r#"
[lists.local]
domains = ["local.example"]
[[policy]]
name = "open"
clients = ["127.11.0.0/16"]
block = ["remote", "local"]
on_missing_list = "open"
[[policy]]
name = "tiktok-only"
clients = ["127.12.0.0/16"]
block = ["tiktok"]
"#;
    let text = config(
        &upstream,
        &state.path().display().to_string(),
        &[("remote", &remote), ("tiktok", &tiktok)],
        extra,
    )
    .replace("list_wait = \"3s\"", "list_wait = \"1s\"")
    .replace("block = [\"remote\", \"tiktok\"]", "block = [\"remote\", \"local\"]");
    let daemon = Daemon::start(&text);

    let closed = ask(&daemon, CLOSED, "anything.example");
    assert_eq!(closed.metadata.response_code, ResponseCode::ServFail, "fails closed");
    assert_eq!(ede(&closed).map(|(code, _)| code), Some(14), "EDE 14 Not Ready");
    assert_eq!(
        rcode(&daemon, CLOSED, "local.example"),
        ResponseCode::NXDomain,
        "blocked names still blocked"
    );
    assert_eq!(
        rcode(&daemon, OPEN, "anything.example"),
        ResponseCode::NoError,
        "fails open"
    );
    assert_eq!(rcode(&daemon, OPEN, "local.example"), ResponseCode::NXDomain);
    assert_eq!(
        rcode(&daemon, TIKTOK, "www.tiktok.com"),
        ResponseCode::NXDomain,
        "the built-in tiktok list stands in"
    );
    assert_eq!(
        rcode(&daemon, TIKTOK, "anything.example"),
        ResponseCode::NoError,
        "so nothing is missing"
    );
    assert_eq!(count(&daemon, "sinkhole_list_loaded", &[("list", "remote")]), 0.0);
    let log = daemon.stderr();
    assert!(
        log.contains("on_missing_list = \"closed\"") && log.contains("on_missing_list = \"open\""),
        "{log}"
    );

    let check = run_sinkhole(&["check", "-c", &daemon.dir().join("sinkhole.toml").display().to_string()]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains("(never loaded; tried every 1s)")
            && report.contains("fails closed")
            && report.contains("fails open"),
        "{report}"
    );

    // The server comes up: the list loads at the next retry, and the policy blocks it and forwards the rest.
    let http = HttpServer::start_on(port);
    http.set("/list.txt", "remote.example\n");
    http.set("/tiktok.txt", "tiktok.example\n");
    wait_until(&daemon, "the list loads once the server is up", || {
        rcode(&daemon, CLOSED, "remote.example") == ResponseCode::NXDomain
    });
    assert_eq!(rcode(&daemon, CLOSED, "anything.example"), ResponseCode::NoError);
    wait_until(&daemon, "the tiktok list from its URL replaces the stand-in", || {
        rcode(&daemon, TIKTOK, "tiktok.example") == ResponseCode::NXDomain
    });
    assert_eq!(
        rcode(&daemon, TIKTOK, "www.tiktok.com"),
        ResponseCode::NoError,
        "the stand-in is gone"
    );
}

#[test]
fn a_reload_keeps_the_copies_and_fetches_only_new_urls() {
    let upstream = FakeUpstream::start();
    let http = HttpServer::start();
    http.set("/a.txt", "a.example\n");
    http.set("/b.txt", "b.example\n");
    let state = TestDir::new();
    let a = [http.url("/a.txt")];
    let both = [http.url("/a.txt"), http.url("/b.txt")];
    let dir = state.path().display().to_string();
    let slow = |t: String| t.replace("refresh = \"1s\"", "refresh = \"1h\"");
    let daemon = Daemon::start(&slow(config(&upstream, &dir, &[("remote", &a)], "")));
    assert_eq!(rcode(&daemon, CLOSED, "a.example"), ResponseCode::NXDomain);
    assert_eq!(http.requests("/a.txt"), 1);

    daemon.write_file(
        "sinkhole.toml",
        &slow(config(&upstream, &dir, &[("remote", &both)], "")),
    );
    daemon.reload();
    wait_until(&daemon, "the new URL's name blocked", || {
        rcode(&daemon, CLOSED, "b.example") == ResponseCode::NXDomain
    });
    assert_eq!(
        rcode(&daemon, CLOSED, "a.example"),
        ResponseCode::NXDomain,
        "a union of both URLs"
    );
    assert_eq!(http.requests("/b.txt"), 1);
    assert_eq!(http.requests("/a.txt"), 1, "the reload used the copy it had");
}

#[test]
fn no_query_is_lost_while_lists_are_refreshed() {
    let big = names("big", 20_000);
    let (_upstream, http, _state, daemon) = start_with_list("remote", "/list.txt", &format!("{big}one.example\n"));
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let addr = daemon.addr();
    let client = {
        let (stop, asked) = (Arc::clone(&stop), Arc::clone(&asked));
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (name, want) = if i.is_multiple_of(2) {
                    ("site7.big.example", ResponseCode::NXDomain)
                } else {
                    ("allowed.example", ResponseCode::NoError)
                };
                match query_udp(addr, CLOSED, name, RecordType::A, true) {
                    Ok(m) if m.metadata.response_code == want => {}
                    Ok(m) => failures.push(format!("{name}: {:?}", m.metadata.response_code)),
                    Err(e) => failures.push(format!("{name}: {e}")),
                }
                asked.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            failures
        })
    };
    for version in ["two", "three", "four"] {
        http.set("/list.txt", &format!("{big}{version}.example\n"));
        wait_until(&daemon, &format!("version {version} serving"), || {
            rcode(&daemon, CLOSED, &format!("{version}.example")) == ResponseCode::NXDomain
        });
    }
    stop.store(true, Ordering::Relaxed);
    let failures = client.join().expect("the client thread");
    assert!(asked.load(Ordering::Relaxed) > 10, "the client kept asking");
    assert!(
        failures.is_empty(),
        "{} queries lost or wrong: {failures:?}",
        failures.len()
    );
    assert!(
        count(
            &daemon,
            "sinkhole_list_updates_total",
            &[("list", "remote"), ("result", "updated")]
        ) >= 4.0
    );
}

/// A process the test started, killed and reaped when the test ends, however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command to completion, panicking with its output if it fails.
fn run_tool(dir: &std::path::Path, program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (installed?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_list_over_https_is_checked_against_the_system_roots() {
    // A CA of the test's own, served by `openssl s_server`: trusted where SSL_CERT_FILE names it (how system roots
    // are read on Linux, and where an admin's corporate CA goes), refused where it does not.
    let upstream = FakeUpstream::start();
    let tls = TestDir::new();
    let openssl = |args: &str| run_tool(tls.path(), "openssl", &args.split(' ').collect::<Vec<_>>());
    openssl(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=sinkhole-test-CA \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
    );
    openssl("req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1");
    std::fs::write(
        tls.path().join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("leaf.ext");
    openssl("x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile leaf.ext");
    std::fs::create_dir_all(tls.path().join("www")).expect("www dir");
    std::fs::write(tls.path().join("www/list.txt"), "tls.example\n").expect("the list");
    let port = free_port();
    let server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-WWW",
            "-cert",
            "../cert.pem",
            "-key",
            "../key.pem",
            "-accept",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(tls.path().join("www"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let _server = Reaped(server);
    let deadline = Instant::now() + DEADLINE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let urls = [format!("https://127.0.0.1:{port}/list.txt")];

    // Trusted: the daemon started with SSL_CERT_FILE naming the CA.
    let state = TestDir::new();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let text = config(&upstream, &state.path().display().to_string(), &[("remote", &urls)], "")
        .replace("{listen}", &listen.to_string())
        .replace("metrics = \"{metrics}\"", "metrics = \"off\"");
    std::fs::write(state.path().join("sinkhole.toml"), &text).expect("the config");
    let stderr = state.path().join("stderr.log");
    let daemon = std::process::Command::new(sinkhole_bin())
        .arg("run")
        .arg("-c")
        .arg(state.path().join("sinkhole.toml"))
        .args(harness_run_args())
        .env("SSL_CERT_FILE", tls.path().join("ca.pem"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr.log"))
        .spawn()
        .expect("start sinkhole");
    let _daemon = Reaped(daemon);
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    while !log().contains("list updated") {
        assert!(
            Instant::now() < deadline,
            "the list over HTTPS never loaded:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut blocked = None;
    while blocked.is_none() && Instant::now() < deadline {
        blocked = query_udp(listen, CLOSED, "tls.example", RecordType::A, true).ok();
    }
    let blocked = blocked.unwrap_or_else(|| panic!("no answer from the daemon:\n{}", log()));
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);

    // Not trusted: the same URL from a daemon that does not know the CA is a network failure, and nothing loads.
    let other = TestDir::new();
    let untrusted = Daemon::start(&config(
        &upstream,
        &other.path().display().to_string(),
        &[("remote", &urls)],
        "",
    ));
    wait_until(&untrusted, "the unknown certificate refused", || {
        count(
            &untrusted,
            "sinkhole_list_update_failures_total",
            &[("list", "remote"), ("reason", "network")],
        ) >= 1.0
    });
    assert_eq!(count(&untrusted, "sinkhole_list_loaded", &[("list", "remote")]), 0.0);
    assert!(
        untrusted.stderr().contains("certificate"),
        "the log says why:\n{}",
        untrusted.stderr()
    );
}

#[test]
fn start_up_waits_for_a_slow_list_no_longer_than_list_wait() {
    // The server hangs for longer than the harness waits for the daemon to answer (10 s): the start goes on after
    // list_wait (1 s) and the policy fails closed meanwhile.
    let upstream = FakeUpstream::start();
    let http = HttpServer::start();
    http.set("/list.txt", "late.example\n");
    http.behave("/list.txt", Behaviour::Slow(Duration::from_secs(30)));
    let state = TestDir::new();
    let urls = [http.url("/list.txt")];
    let text = config(&upstream, &state.path().display().to_string(), &[("remote", &urls)], "")
        .replace("list_wait = \"3s\"", "list_wait = \"1s\"")
        .replace("timeout = \"1s\"", "timeout = \"25s\"");
    let daemon = Daemon::start(&text);
    daemon.wait_for_stderr("did not all load within server.list_wait", DEADLINE);
    let answer = ask(&daemon, CLOSED, "anything.example");
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&answer).map(|(code, _)| code), Some(14));
    assert_eq!(
        http.requests("/list.txt"),
        1,
        "one download in flight, not one per start attempt"
    );
}

#[test]
fn a_state_dir_that_cannot_be_written_is_a_warning_and_the_list_serves_from_memory() {
    let upstream = FakeUpstream::start();
    let http = HttpServer::start();
    http.set("/list.txt", "memory.example\n");
    let state = TestDir::new();
    // A file where the directory should be.
    let blocked_dir = state.write_file("not-a-dir", "");
    let urls = [http.url("/list.txt")];
    let daemon = Daemon::start(&config(
        &upstream,
        &blocked_dir.display().to_string(),
        &[("remote", &urls)],
        "",
    ));
    wait_until(&daemon, "the list serves", || {
        rcode(&daemon, CLOSED, "memory.example") == ResponseCode::NXDomain
    });
    daemon.wait_for_stderr("cannot save list copies in the state directory", DEADLINE);
}

#[test]
fn an_rpz_zone_by_url_is_read_as_one() {
    let zone = "$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n  NS localhost.\n; names\n\
                exact.example CNAME .\n*.wild.example CNAME .\n";
    let (_upstream, _http, _state, daemon) = start_with_list("zone", "/zone.rpz", zone);
    assert_eq!(rcode(&daemon, CLOSED, "exact.example"), ResponseCode::NXDomain);
    assert_eq!(rcode(&daemon, CLOSED, "a.wild.example"), ResponseCode::NXDomain);
    assert_eq!(
        rcode(&daemon, CLOSED, "sub.exact.example"),
        ResponseCode::NoError,
        "RPZ: the name only"
    );
    assert_eq!(count(&daemon, "sinkhole_list_bad_lines", &[("list", "zone")]), 0.0);
}
