//! Least privilege as an operator sees it: `sinkhole run --user nobody` binds a privileged port as root, then runs
//! every one of its threads as nobody with no capability left, and still answers, blocks, logs its blocks, serves
//! metrics and reloads; as root without `--user` or `--allow-root` it refuses to start and says what to pass.
//!
//! Binding a port below 1024 and switching users need root: run as anyone else, the tests that need it say so on
//! stderr and pass without checking anything (CI runs as root).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nix::unistd::{Group, User};
use sinkhole_testkit::*;

const CONFIG: &str = r#"
[server]
listen = ["{listen}"]
metrics = "{metrics}"
allow = ["127.0.0.0/8"]
threads = 2
[upstream]
servers = ["{upstream}"]
timeout_ms = 1000
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "{dir}/hits.jsonl"
"#;

/// True (and says why on stderr) when the tests do not run as root, so that a root-only test can return early.
fn not_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    eprintln!("{test}: skipped: it needs root (to bind a port below 1024 and switch users); CI runs the tests as root");
    true
}

/// The value fields of a `/proc/PID/status` line (`Uid:`, `Gid:`, `Groups:`, `CapEff:` ...).
fn status_field<'a>(status: &'a str, key: &str) -> Vec<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(|rest| rest.split_whitespace().collect())
        .unwrap_or_default()
}

#[test]
fn run_as_nobody_binds_as_root_then_every_thread_serves_as_nobody() {
    if not_root("run_as_nobody_binds_as_root_then_every_thread_serves_as_nobody") {
        return;
    }
    let nobody = User::from_name("nobody")
        .expect("user database")
        .expect("a user nobody");
    let group = Group::from_gid(nobody.gid)
        .expect("group database")
        .expect("nobody's group");
    let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
    let upstream = FakeUpstream::start();
    let dir = TestDir::new();
    // Readable by nobody, so that a reload after the drop can read the config again.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod the test dir");
    let config = CONFIG.replace("{upstream}", &upstream.addr().to_string());
    let port = free_privileged_port();
    let args = ["--user".to_string(), "nobody".to_string()];
    let daemon = Daemon::start_with(dir, &config, &args, Some(port));
    assert!(daemon.addr().port() < 1024);
    daemon.wait_for_stderr("dropped root privileges", Duration::from_secs(5));

    // Every thread: the runtime's, the hit log writer, each UDP worker; real, effective, saved and file system ids.
    let tasks = fs::read_dir(format!("/proc/{}/task", daemon.pid())).expect("read /proc/PID/task");
    let mut names = Vec::new();
    for task in tasks {
        let path = task.expect("task entry").path();
        let status = fs::read_to_string(path.join("status")).expect("read a task's status");
        let name = status_field(&status, "Name:").join(" ");
        assert_eq!(
            status_field(&status, "Uid:"),
            [uid.as_str(); 4],
            "thread {name}:\n{status}"
        );
        assert_eq!(
            status_field(&status, "Gid:"),
            [gid.as_str(); 4],
            "thread {name}:\n{status}"
        );
        assert_eq!(
            status_field(&status, "Groups:"),
            [gid.as_str()],
            "thread {name}: its group alone"
        );
        for caps in ["CapEff:", "CapPrm:"] {
            assert_eq!(
                status_field(&status, caps),
                ["0000000000000000"],
                "thread {name}: {caps}"
            );
        }
        names.push(name);
    }
    for thread in ["udp-0", "udp-1", "hitlog", "sinkhole"] {
        assert!(names.iter().any(|n| n == thread), "no thread {thread} among {names:?}");
    }

    // It answers on the port root bound: blocks over UDP and TCP, forwards the rest.
    let blocked = query_udp(daemon.addr(), STAFF, "www.tiktok.com", RecordType::A, true).expect("UDP answer");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    let blocked = query_tcp(daemon.addr(), STAFF, "www.tiktok.com", RecordType::A, false).expect("TCP answer");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    let allowed = query_udp(daemon.addr(), OTHER, "www.example.com", RecordType::A, false).expect("UDP answer");
    assert_eq!(allowed.metadata.response_code, ResponseCode::NoError);
    assert!(!addresses(&allowed).is_empty(), "forwarded: {allowed:?}");
    // The hit log, opened as root, is written as nobody; the metrics listener bound as root still serves.
    let hits = wait_for_hits(daemon.dir().join("hits.jsonl"), 2, Duration::from_secs(5));
    assert_eq!(hits[0]["qname"], "www.tiktok.com");
    let page = daemon.scrape_metrics();
    assert_eq!(
        metric(&page, "sinkhole_queries_total", &[("outcome", "blocked")]),
        Some(2.0)
    );
    // A reload reads the config again as nobody.
    daemon.reload();
    daemon.wait_for_stderr("reloaded", Duration::from_secs(5));
    let status = fs::read_to_string(format!("/proc/{}/status", daemon.pid())).expect("status");
    assert_eq!(status_field(&status, "Uid:"), [uid.as_str(); 4]);
    eprintln!(
        "served as {} ({uid}), group {} ({gid}), on port {port}",
        nobody.name, group.name
    );
}

#[test]
fn root_without_user_or_allow_root_refuses_to_run() {
    if not_root("root_without_user_or_allow_root_refuses_to_run") {
        return;
    }
    let dir = TestDir::new();
    let config = CONFIG
        .replace("{listen}", &format!("127.0.0.1:{}", free_port()))
        .replace("{metrics}", &format!("127.0.0.1:{}", free_port()))
        .replace("{upstream}", "127.0.0.1:9")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.write_file("sinkhole.toml", &config);
    let path = path.to_str().expect("UTF-8 temp path");
    let out = run_sinkhole(&["run", "-c", path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it ran as root unasked: {stderr}");
    for needed in [
        "refusing to run as root",
        "--user NAME",
        "--allow-root",
        "CAP_NET_BIND_SERVICE",
    ] {
        assert!(stderr.contains(needed), "{needed:?} missing from: {stderr}");
    }
    // Commands that serve nothing run as root without a word.
    let check = run_sinkhole(&["check", "-c", path]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let explain = run_sinkhole(&["explain", "-c", path, "--client", "127.10.0.5", "www.tiktok.com"]);
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
}

#[test]
fn an_unknown_user_fails_the_start_at_once() {
    let out = run_sinkhole(&["run", "--user", "no-such-user-sinkhole"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--user no-such-user-sinkhole: no such user"),
        "{stderr}"
    );
    let out = run_sinkhole(&["run", "--user", "nobody", "--allow-root"]);
    assert!(
        !out.status.success(),
        "--user and --allow-root together are a usage error"
    );
}
