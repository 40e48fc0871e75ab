//! The egress companion against a real nftables, inside a network namespace the test creates (`ip netns add`):
//! the shipped table (deploy/nftables/sinkhole.nft) loaded there, a real Unbound there as the upstream
//! (authoritative for the test names through `local-data`), the real sinkhole binary there with a policy on
//! 127.0.0.0/8 that has `egress = true`, and `dig` there as the client. The sets fill with the addresses of the
//! blocked names that were asked (through a CNAME chain too), never with `never_add` ones or those of a name not
//! blocked, and expire after the clamped TTL. Nothing leaves the namespace.
//!
//! Where the namespace cannot be made (not root, no `ip`, no nftables in the kernel), each test says so on stderr
//! and passes without checking anything.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sinkhole_testkit::{TestDir, metric, run_sinkhole, sinkhole_bin};

/// How long anything the test waits for may take on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);
/// Between two polls.
const POLL: Duration = Duration::from_millis(200);
/// Where the daemon, Unbound and the metrics listen inside the namespace (all its ports are free).
const DNS_PORT: u16 = 5353;
const UNBOUND_PORT: u16 = 5300;
const METRICS_PORT: u16 = 9153;

/// A network namespace of this test's own, deleted on drop (with every process still in it killed first).
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    /// `sinkhole-egress-<pid>-<tag>`, with loopback up; None (and a message) where it cannot be made.
    fn create(tag: &str) -> Option<Netns> {
        let name = format!("sinkhole-egress-{}-{tag}", std::process::id());
        let made = Command::new("ip").args(["netns", "add", &name]).output();
        match made {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot create a network namespace (`ip netns add` needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run `ip` to create a network namespace: {e}");
                return None;
            }
        }
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        let up = ns.run(&["ip", "link", "set", "lo", "up"]);
        assert!(up.status.success(), "lo up: {}", String::from_utf8_lossy(&up.stderr));
        let nft = ns.run(&["nft", "list", "ruleset"]);
        if !nft.status.success() {
            eprintln!(
                "SKIPPED: nftables does not work in the namespace: {}",
                String::from_utf8_lossy(&nft.stderr).trim()
            );
            return None;
        }
        Some(ns)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }

    /// Runs `args` inside to completion.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("run {args:?} in the namespace: {e}"))
    }

    /// Starts `args` inside, with stderr to `log`; killed when the namespace goes.
    fn spawn(&mut self, args: &[&str], log: &Path) {
        let stderr = std::fs::File::create(log).expect("create a log file in the test dir");
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {args:?} in the namespace: {e}"));
        self.children.push(child);
    }

    /// The status and addresses of `dig @127.0.0.1 -p 5353 NAME TYPE`, or None while nothing answers.
    fn dig(&self, name: &str, qtype: &str) -> Option<(String, Vec<IpAddr>)> {
        self.dig_from("127.0.0.1", name, qtype)
    }

    /// [`Netns::dig`] from source address `src`.
    fn dig_from(&self, src: &str, name: &str, qtype: &str) -> Option<(String, Vec<IpAddr>)> {
        let port = DNS_PORT.to_string();
        let out = self.run(&[
            "dig",
            "+tries=1",
            "+time=2",
            "-b",
            src,
            "@127.0.0.1",
            "-p",
            &port,
            name,
            qtype,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let status = text.split("status: ").nth(1)?.split(',').next()?.to_string();
        let addresses = text
            .lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
            .collect();
        Some((status, addresses))
    }

    /// The addresses in set `set` of table inet sinkhole, each with its timeout in seconds.
    fn elements(&self, set: &str) -> Vec<(String, Option<u64>)> {
        let out = self.run(&["nft", "-j", "list", "set", "inet", "sinkhole", set]);
        assert!(
            out.status.success(),
            "nft list set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j prints JSON");
        let mut found = Vec::new();
        for object in json["nftables"].as_array().into_iter().flatten() {
            for elem in object["set"]["elem"].as_array().into_iter().flatten() {
                match &elem["elem"] {
                    serde_json::Value::Null => found.push((elem.to_string(), None)),
                    inner => found.push((
                        inner["val"]
                            .as_str()
                            .map_or_else(|| inner["val"].to_string(), str::to_string),
                        inner["timeout"].as_u64(),
                    )),
                }
            }
        }
        found
    }

    fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
        let out = self.run(&["curl", "-s", "--max-time", "5", &url]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Polls `f` until it returns Some, up to [`DEADLINE`]; panics with `what` past it.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// The shipped nftables file.
fn shipped_nft() -> String {
    format!("{}/deploy/nftables/sinkhole.nft", env!("CARGO_MANIFEST_DIR"))
}

/// An Unbound serving the test names from `local-data` only (TTL 3 s), on 127.0.0.1:5300 inside `ns`.
fn start_unbound(ns: &mut Netns, dir: &TestDir) {
    let conf = dir.write_file(
        "unbound.conf",
        &format!(
            r#"server:
    interface: 127.0.0.1
    port: {UNBOUND_PORT}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    module-config: "iterator"
    local-zone: "tiktokcdn.com." static
    local-data: "v16.tiktokcdn.com. 3 A 203.0.113.7"
    local-data: "v16.tiktokcdn.com. 3 AAAA 2001:db8::7"
    local-data: "office.tiktokcdn.com. 3 A 10.9.9.9"
    local-data: "shared.tiktokcdn.com. 3 A 198.51.100.20"
    local-zone: "chain.example." static
    local-data: "www.chain.example. 3 CNAME edge.cdnhost.test."
    local-zone: "cdnhost.test." static
    local-data: "edge.cdnhost.test. 3 A 203.0.113.9"
    local-zone: "audited.example." static
    local-data: "www.audited.example. 3 A 203.0.113.99"
    local-zone: "example.org." static
    local-data: "www.example.org. 3 A 192.0.2.55"
"#,
            dir = dir.path().display()
        ),
    );
    let conf = conf.display().to_string();
    ns.spawn(&["unbound", "-d", "-c", &conf], &dir.path().join("unbound.log"));
}

/// How the daemon is started.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunAs {
    /// As root (`--allow-root`).
    Root,
    /// As nobody, holding CAP_NET_ADMIN as an ambient capability and nothing else: as deploy/sinkhole.service
    /// runs it (DynamicUser, AmbientCapabilities=CAP_NET_ADMIN), so that the `nft` it runs inherits it.
    NobodyWithNetAdmin,
}

/// sinkhole inside `ns`, forwarding to the Unbound there, with `egress = true` for 127.0.0.0/8. Returns its pid.
fn start_sinkhole(ns: &mut Netns, dir: &TestDir, run_as: RunAs) -> u32 {
    write_config(dir, &[]);
    spawn_sinkhole(ns, dir, run_as)
}

/// The config of [`start_sinkhole`]; `ranges` (`ip = [...]`), if any, go into a list the egress
/// policy "office" blocks too. The audited list always has a range, which must never be published.
fn write_config(dir: &TestDir, ranges: &[&str]) {
    let ranges: Vec<String> = ranges.iter().map(|r| format!("{r:?}")).collect();
    let ranges = ranges.join(", ");
    dir.write_file(
        "sinkhole.toml",
        &format!(
            r#"[server]
listen = ["127.0.0.1:{DNS_PORT}"]
metrics = "127.0.0.1:{METRICS_PORT}"

[upstream]
servers = ["127.0.0.1:{UNBOUND_PORT}"]

[lists.ban]
domains = ["tiktokcdn.com", "chain.example"]

[lists.hidden]
ip = [{ranges}]

[lists.trial]
domains = ["audited.example"]
ip = ["192.0.2.0/28"]

[[policy]]
name = "office"
clients = ["127.0.0.0/8"]
block = ["ban", "hidden"]
egress = true

# In audit mode the ban is not enforced: nothing goes to the firewall either.
[[policy]]
name = "lab"
clients = ["127.2.0.0/16"]
block = ["trial"]
mode = "audit"
egress = true

[egress]
min_timeout = 2
max_timeout = 3
never_add = ["198.51.100.0/24"]
dedup_window = 1

[log]
hits = "off"
"#
        ),
    );
}

/// Runs sinkhole on the config [`write_config`] wrote; returns its pid once it answers.
fn spawn_sinkhole(ns: &mut Netns, dir: &TestDir, run_as: RunAs) -> u32 {
    let bin = sinkhole_bin().display().to_string();
    let conf = dir.path().join("sinkhole.toml").display().to_string();
    let log = dir.path().join("sinkhole.log");
    match run_as {
        RunAs::Root => ns.spawn(&[&bin, "run", "-c", &conf, "--allow-root"], &log),
        RunAs::NobodyWithNetAdmin => ns.spawn(
            &[
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--inh-caps=-all,+net_admin",
                "--ambient-caps=+net_admin",
                &bin,
                "run",
                "-c",
                &conf,
            ],
            &log,
        ),
    }
    wait_for("sinkhole to answer in the namespace", || {
        ns.dig("www.example.org", "A").filter(|(status, _)| status == "NOERROR")
    });
    // `ip netns exec` and setpriv exec the daemon in their own process.
    ns.children.last().map(Child::id).expect("the daemon was started")
}

/// Whether process `pid` holds CAP_NET_ADMIN in its `set` (`CapEff:`, `CapAmb:` ...), from /proc.
fn holds_net_admin(pid: u32, set: &str) -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's /proc status");
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix(set))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {set} line in /proc/{pid}/status"));
    let bits = u64::from_str_radix(hex, 16).expect("a hexadecimal capability set");
    bits & (1 << CAP_NET_ADMIN) != 0
}

#[test]
fn shipped_nftables_file_loads() {
    let Some(ns) = Netns::create("check") else { return };
    let file = shipped_nft();
    let check = ns.run(&["nft", "-c", "-f", &file]);
    assert!(
        check.status.success(),
        "nft -c -f {file}: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Loaded twice (a firewall reload), it keeps one copy of each rule.
    for _ in 0..2 {
        let load = ns.run(&["nft", "-f", &file]);
        assert!(
            load.status.success(),
            "nft -f {file}: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }
    let listed =
        String::from_utf8_lossy(&ns.run(&["nft", "list", "chain", "inet", "sinkhole", "forward"]).stdout).into_owned();
    assert_eq!(listed.matches("@blocked_v4").count(), 1, "{listed}");
    assert_eq!(listed.matches("@blocked_v6").count(), 1, "{listed}");
}

#[test]
fn sets_fill_with_the_addresses_of_blocked_names_and_expire() {
    let Some(mut ns) = Netns::create("fill") else { return };
    let dir = TestDir::new();
    let load = ns.run(&["nft", "-f", &shipped_nft()]);
    assert!(
        load.status.success(),
        "load the shipped table: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    start_unbound(&mut ns, &dir);
    if !setpriv_works() {
        return;
    }
    let pid = start_sinkhole(&mut ns, &dir, RunAs::NobodyWithNetAdmin);
    // A policy has egress = true: it keeps the capability, ambient, so that nft inherits it.
    assert!(holds_net_admin(pid, "CapEff:") && holds_net_admin(pid, "CapAmb:"));

    // Not blocked: answered, and nothing of it may reach the sets.
    let (status, addresses) = ns.dig("www.example.org", "A").expect("an answer");
    assert_eq!(
        (status.as_str(), addresses),
        ("NOERROR", vec!["192.0.2.55".parse().unwrap()])
    );
    // Audited: answered as usual, and nothing goes to the firewall.
    let (status, addresses) = ns.dig_from("127.2.0.1", "www.audited.example", "A").expect("an answer");
    assert_eq!(
        (status.as_str(), addresses),
        ("NOERROR", vec!["203.0.113.99".parse().unwrap()])
    );
    // Blocked: NXDOMAIN for the client, addresses for the firewall.
    for name in [
        "v16.tiktokcdn.com",
        "www.chain.example",
        "office.tiktokcdn.com",
        "shared.tiktokcdn.com",
    ] {
        let (status, _) = ns.dig(name, "A").expect("an answer");
        assert_eq!(status, "NXDOMAIN", "{name} is blocked");
    }

    // Everything seen in the sets while they fill (a batch a second; an element may expire before the last comes).
    let mut seen: Vec<(String, Option<u64>)> = Vec::new();
    wait_for("the blocked names' addresses in the sets", || {
        for element in ns.elements("blocked_v4").into_iter().chain(ns.elements("blocked_v6")) {
            if !seen.contains(&element) {
                seen.push(element);
            }
        }
        let has = |ip: &str| seen.iter().any(|(e, _)| e == ip);
        // Through a CNAME chain too (www.chain.example → edge.cdnhost.test).
        (has("203.0.113.7") && has("203.0.113.9") && has("2001:db8::7")).then_some(())
    });
    // Each with the answer's TTL (3 s) clamped to [2, 3] as its timeout.
    for (element, timeout) in &seen {
        assert!(matches!(timeout, Some(2..=3)), "{element} has timeout {timeout:?}");
    }
    // never_add (198.51.100.0/24), the always-excluded private range (10.9.9.9) and the name not blocked never go in.
    let never = ["198.51.100.20", "10.9.9.9", "192.0.2.55", "203.0.113.99"];
    for (element, _) in &seen {
        assert!(
            !never.contains(&element.as_str()),
            "{element} must never be added: {seen:?}"
        );
    }

    let page = ns.metrics();
    assert_eq!(metric(&page, "sinkhole_egress_sets_ready", &[]), Some(1.0), "{page}");
    assert!(
        metric(&page, "sinkhole_egress_elements_added_total", &[("family", "ipv4")]).unwrap_or(0.0) >= 2.0,
        "{page}"
    );
    assert!(
        metric(
            &page,
            "sinkhole_egress_addresses_skipped_total",
            &[("reason", "never_add")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{page}"
    );

    // The elements expire with their timeout: nobody asks again, nothing refreshes them.
    wait_for("the elements to expire", || {
        ns.elements("blocked_v4").is_empty().then_some(())
    });
    // Asked again after the dedup window, the name is resolved and added again.
    let (status, _) = ns.dig("v16.tiktokcdn.com", "A").expect("an answer");
    assert_eq!(status, "NXDOMAIN");
    wait_for("the address to be added again", || {
        ns.elements("blocked_v4")
            .iter()
            .any(|(e, _)| e == "203.0.113.7")
            .then_some(())
    });
    for (element, _) in ns.elements("blocked_v4") {
        assert!(!never.contains(&element.as_str()), "{element} must never be added");
    }
}

#[test]
fn without_the_sets_dns_goes_on_and_the_failure_is_reported() {
    let Some(mut ns) = Netns::create("missing") else { return };
    let dir = TestDir::new();
    // No table loaded: sinkhole must not create it.
    start_unbound(&mut ns, &dir);
    start_sinkhole(&mut ns, &dir, RunAs::Root);
    let (status, _) = ns.dig("v16.tiktokcdn.com", "A").expect("an answer");
    assert_eq!(status, "NXDOMAIN");
    let log = dir.path().join("sinkhole.log");
    wait_for("the log to say the sets cannot be used", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("the nftables sets cannot be used").then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("load deploy/nftables/sinkhole.nft"), "{text}");
    let page = ns.metrics();
    assert_eq!(metric(&page, "sinkhole_egress_sets_ready", &[]), Some(0.0), "{page}");
    assert!(
        metric(
            &page,
            "sinkhole_egress_nft_failures_total",
            &[("reason", "missing_set")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{page}"
    );
    // DNS goes on.
    let (status, addresses) = ns.dig("www.example.org", "A").expect("an answer");
    assert_eq!(
        (status.as_str(), addresses),
        ("NOERROR", vec!["192.0.2.55".parse().unwrap()])
    );
    let tables = String::from_utf8_lossy(&ns.run(&["nft", "list", "tables"]).stdout).into_owned();
    assert!(!tables.contains("sinkhole"), "sinkhole created a table: {tables}");

    // The firewall's table comes: sinkhole finds it (it looks again every 10 s) and publishes the name that waited.
    let load = ns.run(&["nft", "-f", &shipped_nft()]);
    assert!(
        load.status.success(),
        "load the shipped table: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    wait_for("the name asked while the sets were missing to be published", || {
        ns.elements("blocked_v4")
            .iter()
            .any(|(e, _)| e == "203.0.113.7")
            .then_some(())
    });
    let page = ns.metrics();
    assert_eq!(metric(&page, "sinkhole_egress_sets_ready", &[]), Some(1.0), "{page}");
}

/// Whether `setpriv` can run a command as nobody with an ambient capability; says so on stderr if not.
fn setpriv_works() -> bool {
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(["--inh-caps=-all,+net_admin", "--ambient-caps=+net_admin", "true"])
        .output();
    match out {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "SKIPPED: setpriv cannot run as nobody with CAP_NET_ADMIN: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED: no setpriv (util-linux): {e}");
            false
        }
    }
}

/// A daemon whose policies publish nothing gives CAP_NET_ADMIN up at start, in every set, even as root: it must not be
/// able to rewrite the firewall.
#[test]
fn without_egress_the_daemon_gives_up_cap_net_admin() {
    let daemon = sinkhole_testkit::Daemon::start(
        "[server]\nlisten = [\"{listen}\"]\nmetrics = \"off\"\n[upstream]\nservers = [\"127.0.0.1:9\"]\n\
         [lists.l]\ndomains = [\"tiktok.com\"]\n[[policy]]\nname = \"p\"\nclients = [\"127.0.0.0/8\"]\nblock = [\"l\"]\n",
    );
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert!(!holds_net_admin(daemon.pid(), set), "{set} still holds CAP_NET_ADMIN");
    }
    // Every thread, since the capability went before the first one started.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).expect("the daemon's threads");
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
            .unwrap_or("0");
        let bits = u64::from_str_radix(eff, 16).unwrap_or(0);
        assert_eq!(bits & (1 << 12), 0, "thread {:?} holds CAP_NET_ADMIN", task.file_name());
    }
}

/// A list's address ranges (`ip = [...]`) go into the sets as intervals without timeout while an
/// egress policy enforces it, never those overlapping `never_add` nor an audited list's; a reload
/// that drops a range takes it out of the set.
#[test]
fn list_ranges_go_in_as_intervals_and_leave_on_reload() {
    let Some(mut ns) = Netns::create("ranges") else { return };
    let dir = TestDir::new();
    let load = ns.run(&["nft", "-f", &shipped_nft()]);
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    start_unbound(&mut ns, &dir);
    write_config(&dir, &["203.0.113.128/25", "2001:db8:bad::/48", "198.51.100.0/26"]);
    let pid = spawn_sinkhole(&mut ns, &dir, RunAs::Root);
    // An interval element is listed as its prefix, with no timeout.
    let has = |elements: &[(String, Option<u64>)], addr: &str, len: u8| {
        elements.iter().any(|(e, timeout)| {
            timeout.is_none() && e.contains(&format!("\"addr\":\"{addr}\"")) && e.contains(&format!("\"len\":{len}"))
        })
    };
    wait_for("the list's ranges in the sets", || {
        let (v4, v6) = (ns.elements("blocked_v4"), ns.elements("blocked_v6"));
        (has(&v4, "203.0.113.128", 25) && has(&v6, "2001:db8:bad::", 48)).then_some(())
    });
    let v4 = ns.elements("blocked_v4");
    for (element, _) in &v4 {
        assert!(
            !element.contains("198.51.100.") && !element.contains("192.0.2."),
            "never_add and audited ranges stay out: {v4:?}"
        );
    }
    // The range is dropped from the config: a reload takes it out of the set (at the next housekeeping).
    write_config(&dir, &["2001:db8:bad::/48"]);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
    wait_for("the dropped range to leave the set", || {
        (!has(&ns.elements("blocked_v4"), "203.0.113.128", 25)).then_some(())
    });
    assert!(
        has(&ns.elements("blocked_v6"), "2001:db8:bad::", 48),
        "the kept range stays"
    );
}

/// `sinkhole check` says which policies publish to the firewall, where, and how many list ranges
/// go with them; a policy without egress says nothing of it. No namespace needed: check only reads.
#[test]
fn check_says_which_policies_feed_the_firewall() {
    let dir = TestDir::new();
    write_config(&dir, &["203.0.113.0/24", "2001:db8::/32"]);
    let text = dir.path().join("sinkhole.toml");
    let with_guest = std::fs::read_to_string(&text).expect("config")
        + "\n[[policy]]\nname = \"guest\"\nclients = [\"127.9.0.0/16\"]\nblock = [\"ban\"]\n";
    std::fs::write(&text, with_guest).expect("config");
    let out = run_sinkhole(&["check", "-c", &text.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let egress: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("egress:"))
        .collect();
    assert_eq!(egress.len(), 2, "office and lab publish, guest does not:\n{stdout}");
    assert!(
        egress[0].contains("2 address ranges") && egress[0].contains("inet sinkhole blocked_v4 and blocked_v6"),
        "{stdout}"
    );
}
