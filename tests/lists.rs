//! The shipped lists as users meet them: `sinkhole check` loads every built-in list with no bad line, and the
//! embedded default config (what `sinkhole run` uses without `-c`) blocks TikTok and the ways around the resolver
//! while the everyday names beside them (Apple, iCloud, Mozilla, Google, Cloudflare, Lark) are forwarded.

use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

/// The embedded default config, as the binary compiles it in.
const DEFAULT_CONFIG: &str = include_str!("../src/config/default.toml");

/// Every list compiled into the binary (`builtin = [...]`), as blocklists/README.md lists them.
const BUILTIN_LISTS: &[&str] = &["tiktok", "encrypted-dns-bypass", "facebook", "instagram"];

/// Every entry of blocklists/encrypted-dns-bypass.txt: the names, one per line, comments skipped.
fn bypass_names() -> Vec<&'static str> {
    include_str!("../blocklists/encrypted-dns-bypass.txt")
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|name| !name.is_empty())
        .collect()
}

/// TikTok names a phone in Europe queries, including the app's own HTTPDNS host and QUIC proxies.
const TIKTOK_SAMPLE: &[&str] = &[
    "www.tiktok.com",
    "api16-normal-c-useast1a.tiktokv.com",
    "api16-normal-no1a.tiktokv.eu",
    "v16m.tiktokcdn-eu.com",
    "p16-sign-va.tiktokcdn.com",
    "log.byteoversea.com",
    "dig.bdurl.net",
    "direct-http.quic-tiktok-proxy-i18n-v3.useast2a.byteglb.com",
    "direct-http.quic-webcast-proxy-i18n-v3.useast2a.byteglb.com",
];

/// Names beside the blocked ones that must stay reachable from the default policy.
const REACHABLE: &[&str] = &[
    "apple.com",
    "www.apple.com",
    "icloud.com",
    "www.icloud.com",
    "mozilla.org",
    "www.mozilla.org",
    "google.com",
    "www.google.com",
    "cloudflare.com",
    "www.cloudflare.com",
];

/// Lark's names, which the TikTok list must not take down (with or without the example exception list).
const LARK: &[&str] = &["larksuite.com", "www.larksuite.com", "feishu.cn"];

/// The default config with the harness's listen and metrics addresses and a fake upstream, nothing else changed.
fn default_config(upstream: &FakeUpstream) -> String {
    let config = DEFAULT_CONFIG
        .replace(r#"listen = ["127.0.0.1:5353"]"#, r#"listen = ["{listen}"]"#)
        .replace(r#"metrics = "127.0.0.1:9153""#, r#"metrics = "{metrics}""#)
        .replace(
            "# [upstream] servers default to the nameservers of /etc/resolv.conf",
            &format!("[upstream]\nservers = [\"{}\"]", upstream.addr()),
        );
    assert!(
        config.contains("{listen}") && config.contains("[upstream]"),
        "default.toml changed shape:\n{config}"
    );
    config
}

/// A client inside the default config's internal policy (127.0.0.0/8).
fn client() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

fn ask(daemon: &Daemon, name: &str) -> Message {
    query_udp(daemon.addr(), client(), name, RecordType::A, true).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn upstream_saw(upstream: &FakeUpstream, name: &str) -> bool {
    upstream.received().iter().any(|(qname, _, _)| qname == name)
}

fn assert_blocked(daemon: &Daemon, upstream: &FakeUpstream, name: &str) {
    let msg = ask(daemon, name);
    assert_eq!(
        msg.metadata.response_code,
        ResponseCode::NXDomain,
        "{name} gets the block answer"
    );
    assert!(!upstream_saw(upstream, name), "{name} must not be forwarded");
}

fn assert_forwarded(daemon: &Daemon, upstream: &FakeUpstream, name: &str) {
    let msg = ask(daemon, name);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{name} is answered");
    assert_eq!(
        addresses(&msg),
        vec!["192.0.2.1".to_string()],
        "{name} gets the upstream's answer"
    );
    assert!(upstream_saw(upstream, name), "{name} was forwarded");
}

#[test]
fn check_loads_every_builtin_list_with_no_bad_line() {
    let mut config =
        String::from("[server]\nlisten = [\"127.0.0.1:5353\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n");
    for name in BUILTIN_LISTS {
        config.push_str(&format!("[lists.{name}]\nbuiltin = [\"{name}\"]\n"));
    }
    let blocked: Vec<String> = BUILTIN_LISTS.iter().map(|n| format!("\"{n}\"")).collect();
    config.push_str(&format!(
        "[[policy]]\nname = \"all\"\nclients = [\"127.0.0.0/8\"]\nblock = [{}]\n",
        blocked.join(", ")
    ));
    let dir = TestDir::new();
    let path = dir.write_file("sinkhole.toml", &config);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check passes:\n{stdout}\n{stderr}");
    for name in BUILTIN_LISTS {
        let line = stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("check names list {name}:\n{stdout}"));
        assert!(line.contains(" 0 bad lines"), "{name}: {line}");
        assert!(line.contains(&format!("from builtin:{name}")), "{name}: {line}");
    }
    assert!(
        !stderr.contains("builtin:"),
        "no line of a builtin list is reported:\n{stderr}"
    );
}

#[test]
fn default_config_blocks_tiktok_and_every_bypass_name_and_forwards_the_rest() {
    let upstream = FakeUpstream::start();
    let daemon = Daemon::start(&default_config(&upstream));
    let bypass = bypass_names();
    assert!(bypass.len() > 20, "{bypass:?}");
    for name in bypass.iter().chain(TIKTOK_SAMPLE) {
        assert_blocked(&daemon, &upstream, name);
    }
    // Below a bypass name, too: per-profile DoH names, and one letter of difference is another name.
    assert_blocked(&daemon, &upstream, "abc123.dns.nextdns.io");
    for name in REACHABLE.iter().chain(LARK) {
        assert_forwarded(&daemon, &upstream, name);
    }
}

#[test]
fn lark_exception_example_keeps_lark_open_and_tiktok_blocked() {
    let upstream = FakeUpstream::start();
    let dir = TestDir::new();
    dir.write_file("lark.txt", include_str!("../blocklists/lark-exceptions-example.txt"));
    let config = default_config(&upstream)
        .replace("[[policy]]", "[lists.lark]\nfiles = [\"{dir}/lark.txt\"]\n\n[[policy]]")
        .replace("answer = \"nxdomain\"", "allow = [\"lark\"]\nanswer = \"nxdomain\"");
    let daemon = Daemon::start_in(dir, &config);
    for name in LARK.iter().chain(&["larksuite.com.ttdns2.com"]) {
        assert_forwarded(&daemon, &upstream, name);
    }
    for name in TIKTOK_SAMPLE.iter().chain(&["use-application-dns.net", "dns.google"]) {
        assert_blocked(&daemon, &upstream, name);
    }
}
