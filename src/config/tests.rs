//! The config's unit tests: what loads, what does not and where each error points.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::validate::check_private;
use super::*;

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
        vec!["127.0.0.1:5300".parse().expect("addr")]
    );
    let window = config.window(&config.policies[0]);
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
    assert_eq!(config.window(&config.policies[0]).from, Some(1_679_007_600));
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
