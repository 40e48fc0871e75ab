//! `sinkhole export`: the shipped TikTok list exported as RPZ and loaded into a real Unbound
//! (the Debian package) on loopback blocks exactly the names a sinkhole daemon with the same list
//! blocks, over a sample of blocked apexes, their subdomains and names that must pass; the rules
//! RPZ cannot express (wildcards inside a label) are named on stderr with exit status 2, and
//! blocked by sinkhole alone. The Unbound export (`local-zone` lines), included into a real
//! Unbound, blocks the same names but for the rules it names as left out, and passes
//! `unbound-checkconf`.
//!
//! Skipped, with a message, where Unbound is not installed (`apt-get install unbound`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

/// The daemon's config: the shipped TikTok list, blocked for every loopback client.
fn daemon_config(up: &FakeUpstream) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "off"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["{}"]
[lists.tiktok]
builtin = ["tiktok"]
[[policy]]
name = "ban"
clients = ["127.0.0.0/8"]
block = ["tiktok"]
[log]
hits = "off"
"#,
        up.addr()
    )
}

/// Starts Unbound with `clause` (the export under test: an `rpz:` clause, or an `include:`) and
/// every other name forwarded to `upstream`; answers are not cached, so each query is decided
/// anew.
fn start_unbound(program: &Path, dir: &Path, clause: &str, upstream: SocketAddr) -> Unbound {
    let server = format!(
        "    do-not-query-localhost: no\n    module-config: \"respip iterator\"\n    qname-minimisation: no\n    \
         cache-max-ttl: 0\n{clause}"
    );
    let forward = format!(
        "forward-zone:\n    name: \".\"\n    forward-addr: {}@{}\n",
        upstream.ip(),
        upstream.port()
    );
    Unbound::start(program, dir, &server, &forward)
}

/// The rcode of an A query for `name` to `server`, from 127.0.0.1; None without an answer.
fn rcode(server: SocketAddr, name: &str) -> Option<ResponseCode> {
    let client: IpAddr = "127.0.0.1".parse().expect("literal");
    query_udp(server, client, name, RecordType::A, true)
        .ok()
        .map(|m| m.metadata.response_code)
}

/// Runs `sinkhole export` with `args` after `export -c config`: (stdout, stderr, exit code).
fn export(config: &Path, args: &[&str]) -> (String, String, Option<i32>) {
    let mut all = vec!["export", "-c", config.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let out = run_sinkhole(&all);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

/// The rules an RPZ export wrote: each name, and whether it is a domain rule (with `*.name`).
fn rpz_rules(rpz: &str) -> Vec<(String, bool)> {
    let owners: Vec<&str> = rpz.lines().filter_map(|l| l.strip_suffix(" CNAME .")).collect();
    owners
        .iter()
        .filter(|n| !n.starts_with("*."))
        .map(|name| (name.to_string(), owners.contains(&format!("*.{name}").as_str())))
        .collect()
}

/// The rules an Unbound export wrote: each a domain rule.
fn unbound_rules(conf: &str) -> Vec<(String, bool)> {
    conf.lines()
        .filter_map(|l| l.strip_prefix("local-zone: \"")?.strip_suffix(".\" always_nxdomain"))
        .map(|name| (name.to_string(), true))
        .collect()
}

/// The names to compare, from the rules written, each with what it must get where that is
/// certain: each rule's name (blocked), a subdomain of it (blocked for a domain rule; for an exact
/// one, whatever sinkhole says), look-alikes (the name with a letter before it, the name under
/// another domain: whatever sinkhole says, as another rule of the list may cover them), and names
/// that must pass.
fn sample(rules: &[(String, bool)]) -> Vec<(String, Option<bool>)> {
    let mut names = Vec::new();
    for (name, domain) in rules {
        names.push((name.to_string(), Some(true)));
        names.push((format!("www.{name}"), domain.then_some(true)));
        names.push((format!("a.b-c.{name}"), domain.then_some(true)));
        names.push((format!("x{name}"), None));
        names.push((format!("{name}.example.org"), None));
    }
    names.extend(
        ["example.com", "www.example.org", "mozilla.org", "apple.com"]
            .iter()
            .map(|n| (n.to_string(), Some(false))),
    );
    names
}

/// The rule `sinkhole explain` says blocks `name` for a loopback client, if any.
fn blocking_rule(config: &Path, name: &str) -> Option<String> {
    let out = run_sinkhole(&[
        "explain",
        "-c",
        config.to_str().expect("utf-8 path"),
        "--client",
        "127.0.0.1",
        name,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("match     list tiktok rule "))?;
    let rule = line.split('"').nth(1)?;
    Some(rule.to_string())
}

/// Asks `d` (sinkhole) and `unbound` each of `names`: they must give the same rcode, the one
/// expected where it is certain; a name sinkhole alone blocks must be blocked through a rule the
/// export named as left out on `stderr` (and those are few).
fn compare(d: &Daemon, config: &Path, unbound: &Unbound, names: &[(String, Option<bool>)], stderr: &str) {
    assert!(names.len() > 300, "a real sample: {}", names.len());
    let mut differ = Vec::new();
    let mut through_left_out = Vec::new();
    for (name, blocked) in names {
        let by_sinkhole = rcode(d.addr(), name);
        let by_unbound = rcode(unbound.addr(), name);
        let want = blocked.map(|b| {
            if b {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            }
        });
        let sure = want.is_none_or(|want| by_sinkhole == Some(want));
        if sure && by_sinkhole == by_unbound && by_sinkhole.is_some() {
            continue;
        }
        // Sinkhole blocking through a rule the export named as left out is the one difference
        // there may be.
        if by_sinkhole == Some(ResponseCode::NXDomain)
            && by_unbound == Some(ResponseCode::NoError)
            && let Some(rule) = blocking_rule(config, name)
            && stderr.contains(&format!("  {rule}  ("))
        {
            through_left_out.push(name.clone());
            continue;
        }
        differ.push(format!(
            "{name}: want {want:?}, sinkhole {by_sinkhole:?}, unbound {by_unbound:?}"
        ));
    }
    assert!(
        differ.is_empty(),
        "{} of {} names differ:\n{}\n--- unbound log ---\n{}",
        differ.len(),
        names.len(),
        differ.join("\n"),
        unbound.log()
    );
    assert!(
        through_left_out.len() < names.len() / 10,
        "most names compared, few blocked through left-out rules: {through_left_out:?}"
    );
}

#[test]
fn an_rpz_export_blocks_in_unbound_exactly_what_sinkhole_blocks() {
    let Some(program) = unbound_program("unbound") else {
        eprintln!("SKIPPED: unbound is not installed (apt-get install unbound); the RPZ export was not checked");
        return;
    };
    let up = FakeUpstream::start();
    let d = Daemon::start(&daemon_config(&up));
    let config = d.dir().join("sinkhole.toml");
    let (rpz, stderr, code) = export(&config, &["--format", "rpz", "tiktok"]);
    // The shipped list has wildcards inside labels, which RPZ cannot say: named, status 2.
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("left out, which rpz cannot express:"), "{stderr}");
    assert!(
        stderr.contains("  ||p16-musical-*.ibyteimg.com^  (a wildcard"),
        "{stderr}"
    );
    assert!(rpz.contains("\n$ORIGIN rpz.sinkhole.\n"), "{rpz}");

    let dir = TestDir::new();
    let rpz_file = dir.write_file("tiktok.rpz", &rpz);
    let clause = format!(
        "rpz:\n    name: \"rpz.sinkhole.\"\n    zonefile: \"{}\"",
        rpz_file.display()
    );
    let unbound = start_unbound(&program, dir.path(), &clause, up.addr());

    compare(&d, &config, &unbound, &sample(&rpz_rules(&rpz)), &stderr);
    // What was left out is blocked by sinkhole alone, as stderr said.
    let wildcard = "p16-musical-abc.ibyteimg.com";
    assert_eq!(rcode(d.addr(), wildcard), Some(ResponseCode::NXDomain));
    assert_eq!(rcode(unbound.addr(), wildcard), Some(ResponseCode::NoError));
}

#[test]
fn an_unbound_export_blocks_in_unbound_exactly_what_sinkhole_blocks() {
    let Some(program) = unbound_program("unbound") else {
        eprintln!("SKIPPED: unbound is not installed (apt-get install unbound); the Unbound export was not checked");
        return;
    };
    let up = FakeUpstream::start();
    let d = Daemon::start(&daemon_config(&up));
    let config = d.dir().join("sinkhole.toml");
    let (conf, stderr, code) = export(&config, &["--format", "unbound", "tiktok"]);
    assert_eq!(code, Some(2), "{stderr}");
    let dir = TestDir::new();
    let file = dir.write_file("tiktok.conf", &conf);
    let unbound = start_unbound(
        &program,
        dir.path(),
        &format!("include: \"{}\"", file.display()),
        up.addr(),
    );
    let rules = unbound_rules(&conf);
    assert!(rules.len() > 50, "{conf}");
    compare(&d, &config, &unbound, &sample(&rules), &stderr);
    // An exact-name rule was left out: sinkhole blocks the name, Unbound does not.
    let exact = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix('|')?.split_once("^  (an Unbound local-zone"))
        .map(|(name, _)| name.to_string())
        .expect("the shipped list has an exact-name rule, named on stderr");
    assert_eq!(rcode(d.addr(), &exact), Some(ResponseCode::NXDomain), "{exact}");
    assert_eq!(rcode(unbound.addr(), &exact), Some(ResponseCode::NoError), "{exact}");
}

#[test]
fn the_unbound_export_passes_unbound_checkconf_and_the_others_are_written_whole() {
    let dir = TestDir::new();
    let config = dir.write_file(
        "sinkhole.toml",
        "[lists.tiktok]\nbuiltin = [\"tiktok\"]\n[[policy]]\nname = \"ban\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"tiktok\"]\n",
    );
    let out = dir.path().join("tiktok.conf");
    let (stdout, stderr, code) = export(
        &config,
        &["--format", "unbound", "-o", out.to_str().expect("utf-8 path"), "tiktok"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "-o writes the file, not stdout: {stdout}");
    let text = std::fs::read_to_string(&out).expect("the export file");
    assert!(
        text.contains("\nserver:\nlocal-zone: \"tiktok.com.\" always_nxdomain\n"),
        "{text}"
    );
    assert!(
        stderr.contains("(an Unbound local-zone covers the subdomains too; this rule blocks the name alone)"),
        "{stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left: {leftovers:?}");
    match unbound_program("unbound-checkconf") {
        Some(checkconf) => {
            let checked = Command::new(checkconf)
                .arg(&out)
                .output()
                .expect("run unbound-checkconf");
            assert!(
                checked.status.success(),
                "unbound-checkconf:\n{}{}",
                String::from_utf8_lossy(&checked.stdout),
                String::from_utf8_lossy(&checked.stderr)
            );
        }
        None => eprintln!("SKIPPED: unbound-checkconf is not installed (apt-get install unbound)"),
    }

    // hosts and domains: every line a rule or a comment; a list with no wildcard exports whole,
    // status 0.
    let plain = dir.write_file(
        "plain.toml",
        "[lists.l]\ndomains = [\"tiktok.com\", \"|exact.example^\"]\n[[policy]]\nname = \"p\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"l\"]\n",
    );
    let (hosts, stderr, code) = export(&plain, &["--format", "hosts", "l"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("list l: 2 rules written as hosts"), "{stderr}");
    assert!(
        hosts.ends_with("\n0.0.0.0 tiktok.com\n0.0.0.0 exact.example\n"),
        "{hosts}"
    );
    let (domains, stderr, code) = export(&plain, &["--format", "domains", "l"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(domains.ends_with("\ntiktok.com\n"), "{domains}");
    assert!(
        stderr.contains("  |exact.example^  (a domains line blocks the subdomains too"),
        "{stderr}"
    );
    let (_, stderr, code) = export(&plain, &["--format", "rpz", "nope"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("the config has no list \"nope\"; its lists: l"),
        "{stderr}"
    );
}
