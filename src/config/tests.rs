//! The config's unit tests: what loads, what does not and where each error points.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::validate::{self, check_private};
use super::*;
use crate::policy::Window;

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_in(Path::new("/etc/sinkhole"), text)
}

/// Parses `text` as `test.toml` in `dir`, where its list files are looked for.
fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    Config::parse(Origin {
        name: "test.toml".into(),
        dir: dir.to_path_buf(),
        text: text.into(),
    })
}

/// The repository, which holds the list files the issue's example names.
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn errors(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config should not load:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const ISSUE_EXAMPLE: &str = r#"
[server]
listen = ["127.0.0.1:5353"]
metrics = "127.0.0.1:9153"
allow = ["127.0.0.0/8", "10.0.0.0/8"]

[upstream]
servers = ["127.0.0.1:5300"]
timeout_ms = 1500

[cache]
entries = 100000

[lists.tiktok]
files = ["blocklists/tiktok.txt"]

[lists.exceptions]
files = ["blocklists/allow-example.txt"]

[[policy]]
name = "staff"
clients = ["10.0.0.0/8", "127.10.0.0/16"]
block = ["tiktok"]
allow = ["exceptions"]
answer = "nxdomain"
mode = "enforce"
active_from = "2023-03-17T00:00:00+01:00"
active_until = "2023-09-17T00:00:00+02:00"

[[policy]]
name = "comms-phones"
clients = ["10.50.0.0/24"]
block = []

[log]
hits = "stderr"
client_ip = "full"
"#;

#[test]
fn the_issue_example_loads_as_written() {
    let config = parse_in(Path::new(REPO), ISSUE_EXAMPLE).expect("loads");
    assert_eq!(config.policies.len(), 2);
    assert_eq!(
        config.upstream_servers().expect("servers"),
        vec![UpstreamAddr::plain("127.0.0.1:5300".parse().expect("addr"))]
    );
    let window = config.policies[0].window;
    assert_eq!(window.from, Some(1_679_007_600));
    assert_eq!(window.until, Some(1_694_901_600));
    assert!(window.contains(1_680_000_000));
    assert!(!window.contains(1_694_901_600));
    assert_eq!(
        config.resolve(Path::new("blocklists/tiktok.txt")),
        Path::new(REPO).join("blocklists/tiktok.txt")
    );
    let elsewhere = parse("[cache]\nentries = 1000\n").expect("loads");
    assert_eq!(
        elsewhere.resolve(Path::new("blocklists/tiktok.txt")),
        PathBuf::from("/etc/sinkhole/blocklists/tiktok.txt")
    );
    assert!(config.warnings(1_680_000_000).is_empty());
    assert_eq!(config.warnings(1_700_000_000).len(), 1, "window over");
}

#[test]
fn embedded_default_loads() {
    let config = Config::embedded().expect("the embedded default must load");
    assert_eq!(config.policies[0].name.get_ref(), "internal");
    assert_eq!(config.server.metrics, Some(defaults::METRICS));
}

#[test]
fn unknown_keys_are_located() {
    let e = errors("[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = []\n");
    assert!(e.starts_with("test.toml:3:1: "), "{e}");
    assert!(e.contains("unknown field `listne`"), "{e}");
}

#[test]
fn bad_values_are_located() {
    let e = errors("[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/33\"]\n");
    assert!(e.starts_with("test.toml:3:"), "{e}");
    let e = errors("[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nanswer = \"nxdomian\"\n");
    assert!(e.starts_with("test.toml:4:10: "), "{e}");
    assert!(e.contains("expected nxdomain"), "{e}");
    let e = errors("[upstream]\nservers = [\"dns.example\"]\n");
    assert!(e.contains("is not an upstream address"), "{e}");
}

#[test]
fn references_and_windows_are_checked() {
    let e = errors(
        "[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"tikotk\"]\nactive_from = \"2023-03-17\"\n",
    );
    assert!(e.contains("test.toml:4:10: policy \"x\" names list \"tikotk\""), "{e}");
    assert!(e.contains("test.toml:5:15: \"2023-03-17\" is not an RFC 3339"), "{e}");
    let e = errors(
        "[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nactive_from = 2023-09-01T00:00:00Z\nactive_until = 2023-03-01T00:00:00Z\n",
    );
    assert!(e.contains("active_until is not after active_from"), "{e}");
}

#[test]
fn native_toml_datetimes_work() {
    let config =
        parse("[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nactive_from = 2023-03-17T00:00:00+01:00\n")
            .expect("loads");
    assert_eq!(config.policies[0].window.from, Some(1_679_007_600));
}

#[test]
fn duplicate_prefixes_warn() {
    let config = parse(
        "[lists.l]\ndomains = [\"x.example\"]\n[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\n[[policy]]\nname = \"b\"\nclients = [\"10.1.2.3/8\"]\n",
    )
    .expect("loads");
    let warnings = config.warnings(0);
    assert_eq!(warnings.len(), 1);
    let text = warnings[0].to_string();
    assert!(
        text.starts_with("test.toml:9:12: 10.0.0.0/8 is claimed by policy \"a\" and policy \"b\""),
        "{text}"
    );
}

#[test]
fn an_empty_config_is_an_error_and_one_that_blocks_nothing_or_refuses_all_warns() {
    for text in ["", "\n  \n", "# only a comment\n\n# another\n"] {
        let e = errors(text);
        assert!(e.starts_with("test.toml:1:1: the config is empty"), "{e}");
    }
    let config = parse("[server]\nallow = []\n").expect("loads: a choice, if an odd one");
    let warnings: Vec<String> = config.warnings(0).iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("test.toml:2:9: server.allow is empty"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("no policy blocks a list"), "{warnings:?}");
}

#[test]
fn sizes_read_as_operators_write_them() {
    let bytes = |text: &str| text.parse::<ByteSize>().map(|b| b.0);
    assert_eq!(bytes("64MiB"), Ok(64 << 20));
    assert_eq!(bytes("512 KiB"), Ok(512 << 10));
    assert_eq!(bytes("2GB"), Ok(2_000_000_000));
    assert_eq!(bytes("1000"), Ok(1000));
    assert!(bytes("64 mb").unwrap_err().contains("not a size unit"));
    assert!(bytes("MiB").is_err());
    assert!(bytes("99999999999999 GiB").is_err(), "overflow is an error, not a wrap");
    let config = parse("[cache]\nmax_bytes = 33554432\n").expect("an integer is bytes");
    assert_eq!(config.cache.max_bytes.get_ref().to_string(), "32 MiB");
    let config = parse("[cache]\nmax_bytes = \"64 MB\"\n").expect("a string with a unit");
    assert_eq!(config.cache.max_bytes.get_ref().0, 64_000_000);
    let e = errors("[cache]\nmax_bytes = \"100KiB\"\n");
    assert!(
        e.starts_with("test.toml:2:13: cache.max_bytes must be at least 1 MiB"),
        "{e}"
    );
}

#[test]
fn hashed_needs_a_salt() {
    assert!(errors("[log]\nclient_ip = \"hashed\"\n").contains("needs log.salt"));
    assert!(errors("[log]\nclient_ip = \"hashed\"\nsalt = \"short\"\n").contains("at least 16"));
    parse("[log]\nclient_ip = \"hashed\"\nsalt = \"0123456789abcdef\"\n").expect("loads");
}

/// A config `[log]` section in a fresh temp dir holding a salt file `salt` with `content` and `mode`.
fn with_salt_file(log: &str, content: &str, mode: u32) -> (PathBuf, Result<Config, ConfigError>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sinkhole-config-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("salt");
    std::fs::write(&path, content).expect("write the salt file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod the salt file");
    let config = Config::parse(Origin {
        name: "test.toml".into(),
        dir: dir.clone(),
        text: format!("[log]\nclient_ip = \"hashed\"\n{log}"),
    });
    (dir, config)
}

#[test]
fn the_salt_may_come_from_a_private_file() {
    let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "  a secret of the admins, 32 b\n", 0o640);
    let config = config.expect("a private salt file loads");
    assert_eq!(config.log.hash_salt(), Some("a secret of the admins, 32 b"), "trimmed");
    let _ = std::fs::remove_dir_all(dir);
    let inline = parse("[log]\nclient_ip = \"hashed\"\nsalt = \"0123456789abcdef\"\n").expect("loads");
    assert_eq!(inline.log.hash_salt(), Some("0123456789abcdef"));
}

#[test]
fn a_salt_file_others_may_read_or_write_is_refused() {
    for mode in [0o644, 0o602, 0o601, 0o604, 0o666] {
        let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "0123456789abcdef0123", mode);
        let e = config.expect_err("others have access").to_string();
        assert!(e.starts_with("test.toml:3:13: log.salt_file "), "{mode:o}: {e}");
        assert!(
            e.contains(&format!("(mode 0{mode:o})")) && e.contains("chmod o-rwx"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    for mode in [0o600, 0o640, 0o660, 0o400] {
        let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "0123456789abcdef0123", mode);
        assert!(config.is_ok(), "{mode:o}: {:?}", config.err().map(|e| e.to_string()));
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(
        check_private(0o100640).is_ok(),
        "the file type bits are not permissions"
    );
}

#[test]
fn a_salt_file_must_hold_a_long_enough_salt_and_exist() {
    let (dir, config) = with_salt_file("salt_file = \"salt\"\n", "  short  \n", 0o600);
    let e = config.expect_err("too short").to_string();
    assert!(
        e.contains("holds 5 characters (trimmed); the salt must be at least 16"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let (dir, config) = with_salt_file("salt_file = \"missing\"\n", "", 0o600);
    let e = config.expect_err("no such file").to_string();
    assert!(e.starts_with("test.toml:3:13: log.salt_file: cannot read "), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn salt_and_salt_file_exclude_each_other() {
    let both = "salt = \"0123456789abcdef\"\nsalt_file = \"salt\"\n";
    let (dir, config) = with_salt_file(both, "0123456789abcdef0123", 0o600);
    let e = config.expect_err("both set").to_string();
    assert!(
        e.starts_with("test.toml:4:13: log.salt and log.salt_file are both set"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn resolv_conf() {
    let servers = resolv_conf_nameservers(
        "# comment\nnameserver 192.0.2.1\nsearch example\nnameserver fe80::1%eth0\nnameserver bogus\n",
    );
    assert_eq!(servers, vec!["192.0.2.1:53".parse().expect("a")]);
}

/// Every validation error of a file that parses, with where it must point (`line:col` of the
/// value at fault, or of the key's section when the key is not written) and how it starts.
const VALIDATION_ERRORS: &[(&str, &str, &str)] = &[
    ("[server]\nlisten = []\n", "2:10", "server.listen is empty"),
    ("[server]\nlisten = [\"127.0.0.1:0\"]\n", "2:11", "listen port 0"),
    (
        "[server]\nmax_udp_payload = 100\n",
        "2:19",
        "server.max_udp_payload must be between 512 and 4096",
    ),
    (
        "[server]\ntcp_idle_timeout = 0\n",
        "2:20",
        "server.tcp_idle_timeout must be at least 1 second",
    ),
    (
        "[server]\ntcp_io_timeout = 0\n",
        "2:18",
        "server.tcp_io_timeout must be at least 1 second",
    ),
    (
        "[server]\ntcp_max_connections = 0\n",
        "2:23",
        "server.tcp_max_connections must be at least 1",
    ),
    (
        "[server]\ntcp_max_connections_per_client = 0\n",
        "2:34",
        "server.tcp_max_connections_per_client must be at least 1",
    ),
    (
        "[server]\ntcp_pipeline = 0\n",
        "2:16",
        "server.tcp_pipeline must be at least 1",
    ),
    (
        "[server]\nmax_inflight = 0\n",
        "2:16",
        "server.max_inflight must be at least 1",
    ),
    (
        "[server]\ntcp_buffer = 1000\n",
        "2:14",
        "server.tcp_buffer must be at least 64 KiB",
    ),
    (
        "[server]\nthreads = 0\n",
        "2:11",
        "server.threads must be between 1 and 256",
    ),
    ("[upstream]\nservers = []\n", "2:11", "upstream.servers is empty"),
    (
        "[server]\nlisten = [\"0.0.0.0:53\"]\n[upstream]\nservers = [\"192.0.2.1\", \"127.0.0.1\"]\n",
        "4:25",
        "upstream 127.0.0.1:53: that is sinkhole itself (server.listen 0.0.0.0:53)",
    ),
    (
        "[server]\ntls = [\"127.0.0.1:8853\"]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n\
         [upstream]\nservers = [\"tls://127.0.0.1:8853\"]\n",
        "6:12",
        "upstream tls://127.0.0.1:8853: that is sinkhole itself (server.tls 127.0.0.1:8853)",
    ),
    (
        "[upstream]\ntimeout_ms = 5\n",
        "2:14",
        "upstream.timeout_ms must be between 10 and 60000",
    ),
    (
        "[upstream]\nmax_inflight = 0\n",
        "2:16",
        "upstream.max_inflight must be between 1 and 1000000",
    ),
    (
        "[ratelimit]\nqps = 2000000\nburst = 10\n",
        "2:7",
        "ratelimit.qps is at most 1000000",
    ),
    (
        "[ratelimit]\nburst = 2000000\n",
        "2:9",
        "ratelimit.burst is at most 1000000",
    ),
    (
        "[ratelimit]\nqps = 600000\n",
        "2:7",
        "ratelimit.qps = 600000 makes its default burst",
    ),
    (
        "[ratelimit]\nburst = 0\n",
        "2:9",
        "ratelimit.burst must be at least 1 where ratelimit.qps is set",
    ),
    (
        "[ratelimit]\nidentical_qps = 2000000\nidentical_burst = 10\n",
        "2:17",
        "ratelimit.identical_qps is at most 1000000",
    ),
    (
        "[ratelimit]\nidentical_qps = 10\nidentical_burst = 0\n",
        "3:19",
        "ratelimit.identical_burst must be at least 1 where ratelimit.identical_qps is set",
    ),
    (
        "[cache]\nmax_bytes = \"100KiB\"\n",
        "2:13",
        "cache.max_bytes must be at least 1 MiB",
    ),
    (
        "[cache]\nserve_stale = 999999\n",
        "2:15",
        "cache.serve_stale is at most 604800 seconds",
    ),
    (
        "[cache]\nservfail_ttl = 31\n",
        "2:16",
        "cache.servfail_ttl is at most 30 seconds",
    ),
    (
        "[cache]\nmin_ttl = 100\nmax_ttl = 10\n",
        "2:11",
        "cache.min_ttl (100) is above cache.max_ttl (10)",
    ),
    (
        "[lists.l]\nbuiltin = [\"nope\"]\n",
        "2:12",
        "no builtin list \"nope\" (lists l)",
    ),
    (
        "[lists.l]\nfiles = [\"https://example.com/l.txt\"]\n",
        "2:10",
        "list l: \"https://example.com/l.txt\" is a URL, and `files` takes paths",
    ),
    (
        "[lists.l]\nurls = [\"ftp://example.com/l.txt\"]\n",
        "2:9",
        "list l: \"ftp://example.com/l.txt\" is not an http:// or https:// URL with a host",
    ),
    (
        "[lists.l]\nurls = [\"https://a.example/l\", \"https://a.example/l\"]\n",
        "2:32",
        "list l: \"https://a.example/l\" is named twice",
    ),
    (
        "[lists.l]\nurls = [\"https://a.example/l\"]\nrefresh = \"500ms\"\n",
        "3:11",
        "list l: refresh must be at least 1s",
    ),
    (
        "[lists.l]\nurls = [\"https://a.example/l\"]\nmax_shrink = 1.5\n",
        "3:14",
        "list l: a share is between 0 and 1",
    ),
    (
        "[lists.l]\ndomains = [\"a.example\"]\nrefresh = \"1h\"\n",
        "3:11",
        "list l: refresh is about lists fetched by URL, and this one has no urls",
    ),
    (
        "[server]\nlist_wait = \"1h\"\n",
        "2:13",
        "server.list_wait is at most 5m",
    ),
    (
        "[lists.l]\nfiles = [\"missing.txt\"]\n",
        "2:10",
        "list l: cannot read /etc/sinkhole/missing.txt",
    ),
    (
        "[[policy]]\nname = \"\"\nclients = [\"10.0.0.0/8\"]\n",
        "2:8",
        "policy name must be 1 to 64 printable characters",
    ),
    (
        "[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n[[policy]]\nname = \"a\"\nclients = [\"10.1.0.0/16\"]\n",
        "5:8",
        "a policy \"a\" is defined twice",
    ),
    (
        "[[policy]]\nname = \"a\"\nclients = []\n",
        "3:11",
        "policy \"a\" has no clients",
    ),
    (
        "[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nallow = [\"nope\"]\n",
        "4:10",
        "policy \"a\" names list \"nope\", which no [lists.nope] defines",
    ),
    (
        "[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nactive_until = 2023\n",
        "4:16",
        "expected a date-time like",
    ),
    (
        "[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nactive_from = 2023-09-01T00:00:00Z\nactive_until = 2023-03-01T00:00:00Z\n",
        "5:16",
        "policy \"a\": active_until is not after active_from",
    ),
    (
        "[log]\nsalt = \"0123456789abcdef\"\nsalt_file = \"salt\"\n",
        "3:13",
        "log.salt and log.salt_file are both set",
    ),
    (
        "[log]\nsalt = \"short\"\n",
        "2:8",
        "log.salt must be at least 16 characters",
    ),
    (
        "[log]\nclient_ip = \"hashed\"\n",
        "2:13",
        "log.client_ip = \"hashed\" needs log.salt or log.salt_file",
    ),
    ("[log]\nqueue = 0\n", "2:9", "log.queue must be at least 1"),
    (
        "[server]\ntls = [\"127.0.0.1:853\"]\n",
        "2:7",
        "server.tls needs server.certificate and server.key",
    ),
    (
        "[server]\nhttps = [\"127.0.0.1:443\"]\ncertificate = \"c.pem\"\n",
        "2:9",
        "server.https needs server.certificate and server.key",
    ),
    (
        "[server]\ntls_handshake_timeout = 0\n",
        "2:25",
        "server.tls_handshake_timeout must be at least 1 second",
    ),
];

#[test]
fn every_validation_error_points_at_its_key() {
    for (text, at, message) in VALIDATION_ERRORS {
        let e = errors(text);
        assert_eq!(e.lines().count(), 1, "one error for:\n{text}\n{e}");
        let want = format!("test.toml:{at}: {message}");
        assert!(e.starts_with(&want), "\n{text}\nwant {want}\ngot  {e}");
    }
}

#[test]
fn a_file_with_several_errors_lists_them_all_in_line_order() {
    let text = "[log]\nqueue = 0\n[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"x\"]\n[cache]\nservfail_ttl = 99\n[server]\nthreads = 0\nlisten = []\n";
    let e = errors(text);
    let at: Vec<&str> = e.lines().map(|l| l.split(": ").next().unwrap_or(l)).collect();
    assert_eq!(
        at,
        [
            "test.toml:2:9",
            "test.toml:6:10",
            "test.toml:8:16",
            "test.toml:10:11",
            "test.toml:11:10"
        ],
        "{e}"
    );
}

#[test]
fn an_error_about_a_key_not_written_points_at_its_section() {
    let config = parse("[cache]\nentries = 1000\n\n[upstream]\ntimeout_ms = 100\n").expect("loads");
    assert_eq!(
        config.origin.locate(config.keys.of("upstream.servers").start),
        "test.toml:4:1"
    );
    assert_eq!(
        config.origin.locate(config.keys.of("server.threads").start),
        "test.toml:1:1"
    );
    assert_eq!(
        config.origin.locate(config.keys.of("cache.entries").start),
        "test.toml:2:11"
    );
}

#[test]
fn prefixes_say_what_is_wrong_with_them() {
    for (text, message) in [
        (
            "10.0.0.0/33",
            "10.0.0.0/33: prefix length 33 is longer than 32 for IPv4",
        ),
        (
            "fc00::/129",
            "fc00::/129: prefix length 129 is longer than 128 for IPv6",
        ),
        (
            "10.0.0.256/8",
            "10.0.0.256/8: \"10.0.0.256\" is not an IPv4 or IPv6 address",
        ),
        ("10.0.0.0/x", "10.0.0.0/x: prefix length \"x\" is not a number"),
        (
            "10.1.2.3",
            "10.1.2.3: a prefix needs its length: write 10.1.2.3/32 for this one address",
        ),
        (
            "::1",
            "::1: a prefix needs its length: write ::1/128 for this one address",
        ),
        (
            "office",
            "\"office\" is not a prefix like \"10.0.0.0/8\" or \"fc00::/7\"",
        ),
    ] {
        assert_eq!(parse_prefix(text).err().as_deref(), Some(message), "{text}");
    }
    assert_eq!(
        parse_prefix("10.1.2.3/8").map(|n| n.trunc().to_string()),
        Ok("10.0.0.0/8".into())
    );
    let e = errors("[server]\nallow = [\"10.0.0.0/33\", \"10.0.0.0/8\", \"office\"]\n");
    assert_eq!(e.lines().count(), 2, "every bad prefix, in one run:\n{e}");
    assert!(
        e.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("test.toml:2:39: \"office\"")),
        "{e}"
    );
    for (key, value, at) in [
        ("[server]\nallow", "[\"10.0.0.0/33\"]", "2:10"),
        ("[ratelimit]\nexempt", "[\"127.0.0.1/8\", \"10.0.0.0/33\"]", "2:26"),
        ("[server]\ntrusted_relays", "[\"10.1.0.1/32\", \"10.0.0.0/33\"]", "2:34"),
        ("[[policy]]\nname = \"a\"\nclients", "[\"10.0.0.0/33\"]", "3:12"),
    ] {
        let e = errors(&format!("{key} = {value}\n"));
        assert!(
            e.starts_with(&format!(
                "test.toml:{at}: 10.0.0.0/33: prefix length 33 is longer than 32 for IPv4"
            )),
            "{key}: {e}"
        );
    }
}

#[test]
fn trusted_relays_are_read_as_prefixes_and_none_by_default() {
    let config = parse("[server]\ntrusted_relays = [\"10.1.0.1/32\", \"fd00::1/64\"]\n").expect("loads");
    let relays: Vec<String> = config.server.trusted_relays.iter().map(ToString::to_string).collect();
    assert_eq!(relays, ["10.1.0.1/32", "fd00::/64"]);
    let config = parse("[server]\nallow = [\"10.0.0.0/8\"]\n").expect("loads");
    assert!(config.server.trusted_relays.is_empty());
    assert!(!config.upstream.forward_client_subnet);
}

#[test]
fn dates_are_read_once_into_the_policy_window() {
    let config = parse(
        "[[policy]]\nname = \"x\"\nclients = [\"10.0.0.0/8\"]\nactive_from = \"2023-03-17T00:00:00+01:00\"\nactive_until = 2023-09-17T00:00:00+02:00\n",
    )
    .expect("loads");
    assert_eq!(
        config.policies[0].window,
        Window {
            from: Some(1_679_007_600),
            until: Some(1_694_901_600)
        }
    );
}

#[test]
fn a_forwarding_loop_is_seen_for_each_way_an_upstream_can_be_sinkhole() {
    let local = |ip: IpAddr| ip == "192.0.2.53".parse::<IpAddr>().expect("ip") || ip.is_loopback();
    let addr = |s: &str| s.parse::<std::net::SocketAddr>().expect("socket address");
    for (upstream, listen, loops) in [
        ("127.0.0.1:53", "127.0.0.1:53", true),
        ("127.0.0.1:53", "0.0.0.0:53", true),
        ("127.0.0.53:53", "0.0.0.0:53", true),
        ("0.0.0.0:53", "0.0.0.0:53", true),
        ("192.0.2.53:53", "0.0.0.0:53", true),
        ("[::1]:53", "[::]:53", true),
        ("127.0.0.1:53", "[::]:53", true),
        ("[::ffff:127.0.0.1]:53", "127.0.0.1:53", true),
        ("0.0.0.0:53", "127.0.0.1:53", true),
        ("192.0.2.53:53", "192.0.2.53:53", true),
        ("127.0.0.1:5300", "0.0.0.0:53", false),
        ("127.0.0.1:53", "127.0.0.2:53", false),
        ("192.0.2.1:53", "0.0.0.0:53", false),
        ("[::1]:53", "0.0.0.0:53", false),
        ("127.0.0.1:53", "192.0.2.53:53", false),
    ] {
        assert_eq!(
            validate::reaches(addr(upstream), addr(listen), local),
            loops,
            "{upstream} from a sinkhole on {listen}"
        );
    }
}

#[test]
fn the_parts_of_a_policy_prefix_outside_allow_are_found() {
    let nets = |list: &[&str]| -> Vec<ipnet::IpNet> { list.iter().map(|s| s.parse().expect("prefix")).collect() };
    let allow = nets(&["10.0.0.0/9", "10.200.0.0/16", "192.168.0.0/16", "fc00::/7"]);
    for (net, outside) in [
        ("10.0.0.0/9", &[][..]),
        ("10.1.0.0/16", &[]),
        ("192.0.2.0/24", &["192.0.2.0/24"]),
        (
            "10.0.0.0/8",
            &[
                "10.128.0.0/10",
                "10.192.0.0/13",
                "10.201.0.0/16",
                "10.202.0.0/15",
                "10.204.0.0/14",
                "10.208.0.0/12",
                "10.224.0.0/11",
            ],
        ),
        ("2001:db8::/32", &["2001:db8::/32"]),
    ] {
        assert_eq!(
            validate::outside(net.parse().expect("prefix"), &allow),
            nets(outside),
            "{net}"
        );
    }
}

#[test]
fn policy_clients_outside_allow_warn_with_the_parts_outside() {
    let config = parse(
        "[server]\nallow = [\"10.0.0.0/9\"]\n[lists.l]\ndomains = [\"x.example\"]\n[[policy]]\nname = \"staff\"\nclients = [\"10.0.0.0/8\", \"10.1.0.0/16\", \"192.0.2.0/24\"]\nblock = [\"l\"]\n",
    )
    .expect("a warning, not an error");
    let warnings: Vec<String> = config.warnings(0).iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "test.toml:7:12: policy \"staff\": part of 10.0.0.0/8 is outside server.allow (10.128.0.0/9): clients \
             there are REFUSED, whatever the policy says. Add those to server.allow, or narrow the policy",
            "test.toml:7:41: policy \"staff\" never applies to 192.0.2.0/24: none of it is in server.allow, so these \
             clients are all REFUSED, whatever the policy says. Add 192.0.2.0/24 to server.allow, or take it out of \
             the policy",
        ],
    );
    assert!(
        Config::embedded().expect("loads").warnings(0).is_empty(),
        "the embedded default's policy lies inside its allow"
    );
}

#[test]
fn a_log_format_is_text_or_json() {
    assert_eq!(
        parse("[log]\nformat = \"json\"\n").expect("loads").log.format,
        LogFormat::Json
    );
    assert_eq!(
        parse("[log]\nhits = \"off\"\n").expect("loads").log.format,
        LogFormat::Text
    );
    assert!(errors("[log]\nformat = \"xml\"\n").starts_with("test.toml:2:10: "));
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert!("JSON".parse::<LogFormat>().is_err());
}

/// A policy's `phases`: parsed once into its timeline, the window ending with the last phase.
#[test]
fn phases_make_a_timeline() {
    let config = parse(
        "[[policy]]\nname = \"ban\"\nclients = [\"10.0.0.0/8\"]\nactive_from = \"2023-03-17T00:00:00+01:00\"\n\
         phases = [{ until = \"2023-03-31T00:00:00+02:00\", mode = \"audit\" }, \
         { until = 2023-09-17T00:00:00+02:00, mode = \"enforce\" }]\n",
    )
    .expect("loads");
    let p = &config.policies[0];
    assert_eq!(p.window.from, Some(1_679_007_600));
    assert_eq!(p.window.until, Some(1_694_901_600));
    assert_eq!(p.mode, crate::policy::Mode::Audit);
    let phases: Vec<(i64, &str)> = p.timeline.iter().map(|ph| (ph.until, ph.mode.as_str())).collect();
    assert_eq!(phases, [(1_680_213_600, "audit"), (1_694_901_600, "enforce")]);
}

/// Every phase problem at its key, all of them at once.
#[test]
fn phase_errors_point_at_their_keys() {
    let text = "[[policy]]\nname = \"ban\"\nclients = [\"10.0.0.0/8\"]\nmode = \"audit\"\n\
                active_from = \"2023-04-01T00:00:00Z\"\nactive_until = \"2024-01-01T00:00:00Z\"\nphases = [\n\
                { until = \"2023-03-31T00:00:00Z\", mode = \"audit\" },\n\
                { until = \"2023-09-17T00:00:00Z\", mode = \"enforce\" },\n\
                { until = \"2023-06-01T00:00:00Z\", mode = \"audit\" },\n\
                { until = \"soon\", mode = \"audit\" },\n]\n";
    let e = errors(text);
    for want in [
        "test.toml:4:8: policy \"ban\": mode and phases are both set",
        "test.toml:6:16: policy \"ban\": active_until and phases are both set",
        "test.toml:8:11: policy \"ban\" phase 0: until is not after active_from",
        "test.toml:10:11: policy \"ban\" phase 2: until is not after phase 1's until",
        "test.toml:11:11: policy \"ban\" phase 3: \"soon\" is not an RFC 3339 date-time",
    ] {
        assert!(e.contains(want), "{want}\nin\n{e}");
    }
    let e = errors("[[policy]]\nname = \"ban\"\nclients = [\"10.0.0.0/8\"]\nphases = []\n");
    assert!(e.contains("test.toml:4:10: policy \"ban\": phases is empty"), "{e}");
}

/// The reported bug: a grace policy and a ban policy on the same prefix, with windows that do not
/// overlap. Only one policy can hold a prefix, so the ban would never apply: the config is refused,
/// naming both and pointing at `phases`.
#[test]
fn a_timeline_of_two_policies_on_one_prefix_is_an_error() {
    let e = errors(
        "[lists.l]\ndomains = [\"x.example\"]\n\
         [[policy]]\nname = \"grace\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\nmode = \"audit\"\nactive_until = \"2023-03-31T00:00:00+02:00\"\n\
         [[policy]]\nname = \"ban\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\nactive_from = \"2023-03-31T00:00:00+02:00\"\n",
    );
    assert!(
        e.starts_with("test.toml:11:12: 10.0.0.0/8 is claimed by policy \"grace\" and policy \"ban\""),
        "{e}"
    );
    assert!(e.contains("\"ban\" never") && e.contains("phases = ["), "{e}");
}

#[test]
fn durations_read_as_operators_write_them() {
    let config = parse(
        "[server]\nlist_wait = 2\n[lists.a]\nurls = [\"https://a.example/l\"]\nrefresh = \"6h\"\ntimeout = \"1m 30s\"\n\
         [lists.b]\nurls = [\"http://b.example/l\"]\n[[policy]]\nname = \"p\"\nclients = [\"10.0.0.0/8\"]\n\
         block = [\"a\", \"b\"]\non_missing_list = \"open\"\n",
    )
    .expect("loads");
    let secs = |d: std::time::Duration| d.as_secs();
    assert_eq!(secs(config.server.list_wait()), 2);
    assert_eq!(secs(config.lists["a"].refresh()), 6 * 3600);
    assert_eq!(secs(config.lists["a"].timeout()), 90);
    assert_eq!(config.lists["b"].refresh(), defaults::LIST_REFRESH);
    assert_eq!(config.lists["b"].max_bytes(), defaults::LIST_MAX_BYTES);
    assert_eq!(config.policies[0].on_missing_list, crate::policy::OnMissingList::Open);
    let e = errors("[lists.a]\nurls = [\"https://a.example/l\"]\nrefresh = \"soon\"\n");
    assert!(e.contains("\"soon\" is not a duration like \"6h\""), "{e}");
    let e = errors("[[policy]]\nname = \"p\"\nclients = [\"10.0.0.0/8\"]\non_missing_list = \"maybe\"\n");
    assert!(e.contains("closed") && e.contains("open"), "{e}");
}

#[test]
fn the_state_directory_is_the_configs_else_systemds_else_var_lib() {
    let config = parse("[server]\nstate_dir = \"state\"\n").expect("loads");
    assert_eq!(
        config.state_dir(),
        PathBuf::from("/etc/sinkhole/state"),
        "relative to the config"
    );
    let config = parse("[server]\nthreads = 1\n").expect("loads");
    // The test process's environment decides between the other two; both are absolute.
    let want = std::env::var("STATE_DIRECTORY")
        .ok()
        .and_then(|d| d.split(':').next().map(PathBuf::from))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR));
    assert_eq!(config.state_dir(), want);
}

#[test]
fn egress_defaults_and_a_policy_that_opts_in() {
    let config = parse(
        "[lists.l]\ndomains = [\"x.example\"]\n\
         [[policy]]\nname = \"ban\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\negress = true\n\
         [[policy]]\nname = \"other\"\nclients = [\"10.9.0.0/16\"]\nblock = [\"l\"]\n",
    )
    .expect("loads");
    assert!(config.egress_used());
    assert!(config.policies[0].egress && !config.policies[1].egress);
    assert_eq!(config.egress.table.get_ref(), "sinkhole");
    assert_eq!(config.egress.set_v4.get_ref(), "blocked_v4");
    assert_eq!(config.egress.set_v6.get_ref(), "blocked_v6");
    assert_eq!((config.egress.min_timeout, config.egress.max_timeout), (300, 86_400));
    assert!(config.egress.never_add.is_empty());
    assert!(
        !parse("[upstream]\nservers = [\"192.0.2.1\"]\n")
            .expect("loads")
            .egress_used()
    );
}

#[test]
fn egress_errors_point_at_their_keys() {
    let e = errors(
        "[egress]\ntable = \"my table\"\nset_v4 = \"s\"\nset_v6 = \"s\"\nmin_timeout = 600\nmax_timeout = 60\n\
         rate = 0\nqueue = 0\ndedup_window = 0\nnever_add = [\"192.0.2.0/33\", \"198.51.100.0/24\"]\n",
    );
    for expected in [
        "test.toml:2:9: egress.table \"my table\" is not an nftables name",
        "test.toml:4:10: egress.set_v6 names the same set as egress.set_v4",
        "test.toml:5:15: egress.min_timeout (600) is above egress.max_timeout (60)",
        "test.toml:7:8: egress.rate must be between 1 and 10000",
        "test.toml:8:9: egress.queue must be between 1 and 10000000",
        "test.toml:9:16: egress.dedup_window must be at least 1 second",
        "test.toml:10:14: 192.0.2.0/33: prefix length 33 is longer than 32 for IPv4",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    assert!(!e.contains("198.51.100.0/24"), "{e}");
}

/// A policy's `schedule`: days, hours (one or several) and zone read into the weekly windows
/// the packet path asks; without `days` every day, without `hours` the whole day.
#[test]
fn a_schedule_makes_weekly_windows() {
    let config = parse(
        "[[policy]]\nname = \"office\"\nclients = [\"10.0.0.0/8\"]\n\
         schedule = { days = [\"mon\", \"Tue\", \"wednesday\"], hours = [\"08:00-12:00\", \"22:00-06:00\"], \
         time_zone = \"Europe/Brussels\" }\n\
         [[policy]]\nname = \"weekend\"\nclients = [\"10.1.0.0/16\"]\n\
         schedule = { days = [\"sat\", \"sun\"], time_zone = \"UTC\" }\n\
         [[policy]]\nname = \"evenings\"\nclients = [\"10.2.0.0/16\"]\n\
         schedule = { hours = \"18:00-24:00\", time_zone = \"UTC\" }\n\
         [[policy]]\nname = \"always\"\nclients = [\"10.3.0.0/16\"]\n",
    )
    .expect("loads");
    let shown: Vec<Option<String>> = config
        .policies
        .iter()
        .map(|p| p.weekly.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(
        shown,
        [
            Some("mon,tue,wed 08:00-12:00,22:00-06:00 (Europe/Brussels)".to_string()),
            Some("sat,sun 00:00-24:00 (UTC)".to_string()),
            Some("mon,tue,wed,thu,fri,sat,sun 18:00-24:00 (UTC)".to_string()),
            None,
        ]
    );
    let t = |s: &str| s.parse::<jiff::Timestamp>().expect("time").as_second();
    let office = config.policies[0].weekly.as_ref().expect("scheduled");
    // Wednesday 22:00 runs into Thursday morning, which is not listed itself.
    assert!(office.contains(t("2026-12-03T05:59:59+01:00")));
    assert!(!office.contains(t("2026-12-03T08:00:00+01:00")));
    let weekend = config.policies[1].weekly.as_ref().expect("scheduled");
    assert!(weekend.contains(t("2026-12-05T00:00:00Z")) && !weekend.contains(t("2026-12-04T23:59:59Z")));
}

/// Every schedule problem at its key, all at once: a day that is not one, a day twice, no days,
/// hours that are not a range, hours of the wrong type, an unknown zone, an unknown key.
#[test]
fn schedule_errors_point_at_their_keys() {
    let text = "[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\n\
                schedule = { days = [\"mon\", \"lun\", \"mon\"], hours = [\"08:00-18:00\", \"8h-18h\"], \
                time_zone = \"Europe/Bruxelles\" }\n\
                [[policy]]\nname = \"b\"\nclients = [\"10.1.0.0/16\"]\n\
                schedule = { days = [], hours = 8 }\n\
                [[policy]]\nname = \"c\"\nclients = [\"10.2.0.0/16\"]\n\
                schedule = { hours = \"08:00-08:00\" }\n";
    let e = errors(text);
    for want in [
        "test.toml:4:29: policy \"a\": schedule.days: \"lun\" is not a day; use mon, tue, wed, thu, fri, sat, sun",
        "test.toml:4:36: policy \"a\": schedule.days names \"mon\" twice",
        "test.toml:4:52: policy \"a\": schedule.hours: \"8h-18h\"",
        "test.toml:4:91: policy \"a\": schedule.time_zone \"Europe/Bruxelles\" is not a time zone this system knows",
        "test.toml:8:21: policy \"b\": schedule.days is empty",
        "test.toml:8:33: policy \"b\": schedule.hours must be \"HH:MM-HH:MM\" or a list",
        "test.toml:12:22: policy \"c\": schedule.hours: \"08:00-08:00\" is empty",
    ] {
        assert!(e.contains(want), "{want}\nin\n{e}");
    }
    let e = errors("[[policy]]\nname = \"a\"\nclients = [\"10.0.0.0/8\"]\nschedule = { day = [\"mon\"] }\n");
    assert!(e.contains("test.toml:4") && e.contains("unknown field `day`"), "{e}");
}

/// Two policies on one prefix that differ only in their schedules are the timeline bug again:
/// only the first would ever apply.
#[test]
fn two_schedules_on_one_prefix_are_an_error() {
    let e = errors(
        "[lists.l]\ndomains = [\"x.example\"]\n\
         [[policy]]\nname = \"day\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\nschedule = { hours = \"08:00-18:00\", time_zone = \"UTC\" }\n\
         [[policy]]\nname = \"night\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\nschedule = { hours = \"18:00-08:00\", time_zone = \"UTC\" }\n",
    );
    assert!(
        e.contains("10.0.0.0/8 is claimed by policy \"day\" and policy \"night\""),
        "{e}"
    );
}
