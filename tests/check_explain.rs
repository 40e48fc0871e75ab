//! The operator's commands beyond the daemon: `check --probe` and `check`'s warnings of lists
//! and policies that do nothing, `explain --file`, and `--version`, run as an admin runs them.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use sinkhole_testkit::*;

/// `sinkhole ARGS` with `stdin` fed to it: (exit status success, stdout, stderr).
fn run_with_stdin(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(sinkhole_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sinkhole starts");
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    let out = child.wait_with_output().expect("sinkhole ends");
    texts(&out)
}

fn texts(out: &Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sinkhole check -c FILE` on `config`, written to `dir`, with `extra` arguments.
fn check_in(dir: &TestDir, config: &str, extra: &[&str]) -> (bool, String, String) {
    let path = dir.write_file("sinkhole.toml", config);
    let mut args = vec!["check", "-c", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    texts(&run_sinkhole(&args))
}

#[test]
fn check_probe_names_who_answered_and_in_how_long_and_warns_of_the_rest() {
    let up = FakeUpstream::start();
    let dead = FakeUpstream::start_dead();
    // Nothing listens there: the port refuses.
    let closed = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[upstream]\nservers = [\"{}\", \"{}\", \"{closed}\"]\ntimeout_ms = 700\n\
         [lists.t]\ndomains = [\"tiktok.com\"]\n[[policy]]\nname = \"staff\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"t\"]\n",
        up.addr(),
        dead.addr()
    );
    let dir = TestDir::new();

    // Offline without --probe: no upstream is asked.
    let (ok, out, err) = check_in(&dir, &config, &[]);
    assert!(ok, "{out}{err}");
    assert!(!out.contains("probe") && !out.contains("warning: upstream"), "{out}");
    assert!(
        up.received().is_empty() && dead.received().is_empty(),
        "check without --probe asked an upstream"
    );

    let (ok, out, err) = check_in(&dir, &config, &["--probe"]);
    assert!(ok, "warnings leave the exit status 0:\n{out}{err}");
    let line = |needle: &str| out.lines().find(|l| l.starts_with(needle)).map(str::to_string);
    let answered = line(&format!("  {}", up.addr())).unwrap_or_else(|| panic!("no line for {}:\n{out}", up.addr()));
    assert!(
        answered.contains("answered NOERROR in ") && answered.ends_with(" ms"),
        "{answered}\n{out}"
    );
    assert!(!out.contains(&format!("warning: upstream {}", up.addr())), "{out}");
    assert_eq!(
        up.received(),
        vec![(String::new(), 2, "udp")],
        "the probe is one `. NS` over UDP"
    );
    assert!(
        out.contains(&format!("warning: upstream {}: no answer within 700 ms", dead.addr())),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with(&format!("warning: upstream {closed}: failed after ")) && l.contains("network error")
        ),
        "{out}"
    );
    assert!(
        out.contains("probe     . NS to each upstream, 700 ms at most each"),
        "{out}"
    );
}

/// `check --probe` of encrypted upstreams goes over their own transport, with the certificate
/// checked as the daemon checks it: a real Unbound serving DoT (and DoH where it can) answers;
/// the same server named with a name its certificate lacks is warned of.
#[test]
fn check_probe_asks_encrypted_upstreams_over_their_transport_with_the_certificate_checked() {
    let Some(program) = unbound_program("unbound") else {
        println!("SKIPPED: unbound is not installed (apt-get install unbound)");
        return;
    };
    let doh = unbound_has_doh(&program);
    let dir = TestDir::new();
    let ca = TestCa::new();
    let ca_file = ca.write_ca(dir.path());
    ca.server_cert(&["upstream.test"]).write(dir.path(), "server");
    let (tls_port, https_port) = (free_port(), free_port());
    let https = if doh {
        format!("    interface: 127.0.0.1@{https_port}\n    https-port: {https_port}\n    http-notls-downstream: no\n")
    } else {
        println!("(this unbound has no DNS over HTTPS: DoH left out)");
        String::new()
    };
    // The root's NS from local data: the test has no Internet to ask the roots.
    let server = format!(
        "    interface: 127.0.0.1@{tls_port}\n{https}    tls-port: {tls_port}\n    tls-service-key: \"{d}/server.key\"\n    \
         tls-service-pem: \"{d}/server.crt\"\n    module-config: \"iterator\"\n    local-zone: \".\" transparent\n    \
         local-data: \". 3600 IN NS a.root-servers.net.\"\n",
        d = dir.path().display()
    );
    let _unbound = Unbound::start(&program, dir.path(), &server, "");
    let good_tls = format!("tls://upstream.test:{tls_port}#127.0.0.1");
    let wrong_name = format!("tls://other.test:{tls_port}#127.0.0.1");
    let good_https = format!("https://upstream.test:{https_port}/dns-query#127.0.0.1");
    let mut servers = vec![good_tls.clone(), wrong_name.clone()];
    if doh {
        servers.push(good_https.clone());
    }
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    let config = format!(
        "[upstream]\nservers = [{}]\nca = \"{}\"\ntimeout_ms = 3000\n[lists.t]\ndomains = [\"tiktok.com\"]\n\
         [[policy]]\nname = \"staff\"\nclients = [\"10.0.0.0/8\"]\nblock = [\"t\"]\n",
        servers.join(", "),
        ca_file.display()
    );
    let (ok, out, err) = check_in(&dir, &config, &["--probe"]);
    assert!(ok, "{out}{err}");
    let answered = |label: &str| {
        out.lines()
            .any(|l| l.starts_with(&format!("  {label} ")) && l.contains("answered NOERROR in "))
    };
    assert!(answered(&good_tls), "{out}");
    assert!(!doh || answered(&good_https), "{out}");
    assert!(!answered(&wrong_name), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("warning: upstream {wrong_name}: "))),
        "{out}"
    );
    assert_eq!(out.matches("warning: upstream").count(), 1, "{out}");
}

#[test]
fn check_warns_of_empty_lists_and_of_policies_that_block_nothing_but_not_of_exemptions() {
    let dir = TestDir::new();
    dir.write_file("empty.txt", "# filled in next week\n\n! nothing yet\n");
    let config = r#"
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com"]
[lists.later]
files = ["empty.txt"]
[[policy]]
name = "staff"
clients = ["10.1.0.0/16"]
block = ["tiktok", "later"]
[[policy]]
name = "guests"
clients = ["10.2.0.0/16"]
block = ["later"]
[[policy]]
name = "comms"
clients = ["10.3.0.0/16"]
block = []
[[policy]]
name = "ban-2023"
clients = ["10.4.0.0/16"]
block = ["later"]
active_until = "2023-09-17T00:00:00+02:00"
"#;
    let (ok, out, err) = check_in(&dir, config, &[]);
    assert!(ok, "warnings leave the exit status 0:\n{out}{err}");
    let warnings: Vec<&str> = out.lines().skip_while(|l| *l != "warnings").skip(1).collect();
    let about = |needle: &str| warnings.iter().filter(|w| w.contains(needle)).count();
    assert_eq!(about("list \"later\" has no rules"), 1, "{out}");
    assert!(out.contains("empty.txt holds only comments or blank lines"), "{out}");
    assert_eq!(about("list \"tiktok\""), 0, "{out}");
    assert_eq!(about("policy \"guests\" blocks nothing"), 1, "{out}");
    assert!(out.contains("every list it blocks (later) has no rules"), "{out}");
    // Blocks tiktok too: not idle.
    assert_eq!(about("policy \"staff\""), 0, "{out}");
    // An exemption on purpose: no warning, and the summary calls it one.
    assert_eq!(about("comms"), 0, "{out}");
    assert!(
        out.contains("blocks nothing (an exemption: block = [], so its clients are never blocked)"),
        "{out}"
    );
    // Its window is over, as a warning of its own says already: said once.
    assert_eq!(about("ban-2023"), 1, "{out}");
    assert!(out.contains("its window ended already"), "{out}");
}

/// Three policies: one blocking now, one from 2030 on, and an exemption; 127.0.0.9 relays.
const EXPLAIN_CONFIG: &str = r#"
[server]
trusted_relays = ["127.0.0.9/32"]
[upstream]
servers = ["127.0.0.1:5300"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "staff"
clients = ["10.1.0.0/16"]
block = ["tiktok"]
[[policy]]
name = "later"
clients = ["10.2.0.0/16"]
block = ["tiktok"]
active_from = "2030-01-01T00:00:00Z"
[[policy]]
name = "comms"
clients = ["10.3.0.0/16"]
block = []
"#;

#[test]
fn explain_file_gives_one_verdict_a_line_and_reports_bad_lines_by_number() {
    let dir = TestDir::new();
    let config = dir.write_file("sinkhole.toml", EXPLAIN_CONFIG);
    let config = config.to_str().expect("utf-8 path");
    let queries = "# client name [type]\n\
                   10.1.2.3 www.tiktok.com AAAA\n\
                   \n\
                   10.3.0.1 tiktok.com   # the comms office\n\
                   10.2.0.1 tiktok.com\n\
                   10.1.2.x tiktok.com\n\
                   10.1.2.3\n\
                   10.1.2.3 example.com NOTATYPE\n\
                   10.1.2.3 example.com TYPE65\n";
    let file = dir.write_file("queries.txt", queries);
    let file = file.to_str().expect("utf-8 path");
    let out = run_sinkhole(&["explain", "-c", config, "--file", file]);
    let (ok, stdout, stderr) = texts(&out);
    assert!(!ok, "a bad line fails the run:\n{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "10.1.2.3 www.tiktok.com AAAA: policy staff, blocked (list tiktok rule \"tiktok.com\"); answer NXDOMAIN (nxdomain)",
            "10.3.0.1 tiktok.com A: policy comms, allowed; answer forwarded to 127.0.0.1:5300",
            "10.2.0.1 tiktok.com A: policy later, allowed; answer forwarded to 127.0.0.1:5300",
            "10.1.2.3 example.com HTTPS: policy staff, allowed; answer forwarded to 127.0.0.1:5300",
        ],
        "{stdout}"
    );
    let errors: Vec<&str> = stderr.lines().collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    assert!(
        errors[0].starts_with(&format!("{file}:6: \"10.1.2.x\" is not an IP address")),
        "{stderr}"
    );
    assert!(
        errors[1].starts_with(&format!("{file}:7: \"10.1.2.3\": expected `client name [type]`")),
        "{stderr}"
    );
    assert!(
        errors[2].starts_with(&format!("{file}:8: unknown query type \"NOTATYPE\"")),
        "{stderr}"
    );

    // --at applies to every line: in 2031 "later" blocks too.
    let good = "10.1.2.3 tiktok.com\n10.2.0.1 tiktok.com\n";
    let (ok, stdout, stderr) = run_with_stdin(
        &["explain", "-c", config, "-f", "-", "--at", "2031-01-01T00:00:00Z"],
        good,
    );
    assert!(ok, "all lines good: exit 0\n{stdout}{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(", blocked (list tiktok")).count(),
        2,
        "{stdout}"
    );

    // --via applies to every line: through an untrusted relay, the relay's own policy (none).
    let (ok, stdout, _) = run_with_stdin(&["explain", "-c", config, "-f", "-", "--via", "127.0.0.7"], good);
    assert!(ok);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("127.0.0.7 (untrusted relay; its client "))
            .count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains(": policy none, allowed"), "{stdout}");
    let (ok, stdout, _) = run_with_stdin(&["explain", "-c", config, "-f", "-", "--via", "127.0.0.9"], good);
    assert!(ok);
    assert!(
        stdout.starts_with("10.1.2.3 via 127.0.0.9 tiktok.com A: policy staff, blocked"),
        "{stdout}"
    );

    // A single query stays as it was, and --file with --client is refused.
    let single = run_sinkhole(&["explain", "-c", config, "--client", "10.1.2.3", "tiktok.com"]);
    assert!(single.status.success());
    assert!(String::from_utf8_lossy(&single.stdout).contains("match     list tiktok rule \"tiktok.com\""));
    let both = run_sinkhole(&["explain", "-c", config, "-f", file, "--client", "10.1.2.3"]);
    assert!(!both.status.success());
}

/// `0.1.0 (commit abc1234, built-in lists of 2026-12-01)`, after `sinkhole `: the version's three
/// numbers, a hex commit or "unknown", and a date.
fn assert_version_line(line: &str) {
    let rest = line.strip_prefix("sinkhole ").unwrap_or_else(|| panic!("{line:?}"));
    let (version, rest) = rest.split_once(" (commit ").unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
        "{line:?}"
    );
    let (commit, rest) = rest
        .split_once(", built-in lists of ")
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line:?}"
    );
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line:?}"));
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3
            && [4, 2, 2]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_digit())),
        "{line:?}"
    );
}

#[test]
fn version_names_the_commit_and_the_date_of_the_built_in_lists_as_does_the_build_info_metric() {
    let long = sinkhole_stdout(&["--version"]);
    assert_version_line(long.trim_end());
    assert_eq!(sinkhole_stdout(&["-V"]), long);

    let (_up, d) = Daemon::start_forwarding(
        "[server]\nlisten = [\"{listen}\"]\nmetrics = \"{metrics}\"\nallow = [\"127.0.0.0/8\"]\n\
         [upstream]\nservers = [\"{upstream}\"]\n[lists.t]\ndomains = [\"tiktok.com\"]\n\
         [[policy]]\nname = \"staff\"\nclients = [\"127.10.0.0/16\"]\nblock = [\"t\"]\n",
        &[],
    );
    let rest = long.trim_end().strip_prefix("sinkhole ").expect("checked above");
    let (version, rest) = rest.split_once(" (commit ").expect("checked above");
    let (commit, rest) = rest.split_once(", built-in lists of ").expect("checked above");
    let lists = rest.strip_suffix(')').expect("checked above");
    let page = d.scrape_metrics();
    assert_eq!(
        metric(
            &page,
            "sinkhole_build_info",
            &[("version", version), ("commit", commit), ("lists", lists)]
        ),
        Some(1.0),
        "{page}"
    );
}
