//! The monitoring files of deploy/ work with the real tools: the alert rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`); a real Prometheus (the Debian package, on
//! loopback) scraping a real sinkhole under a little load loads the rules with health "ok" and
//! returns data for every query of every panel of the Grafana dashboard; the compose example
//! parses and mounts only files that exist; every metric the rules and the dashboard name is one
//! the daemon documents, and every alert has its runbook entry.
//!
//! Skipped, with a message, where promtool or prometheus (`apt-get install prometheus`) or
//! python3-yaml is not installed.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use sinkhole_testkit::*;

/// What `$__rate_interval` stands for: Grafana makes it at least four scrape intervals (1 s here),
/// and the load below lasts longer.
const RATE_INTERVAL: &str = "15s";

/// How long the test's policy audits before it enforces: the phase change happens while
/// Prometheus watches.
const AUDIT_SECONDS: u64 = 6;

/// The whole Prometheus test stays within this (start, load, scrapes, queries).
const DEADLINE: Duration = Duration::from_secs(60);

/// The repository root: deploy/ is found from here.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn the_shipped_rules_pass_promtool_check_and_their_unit_tests() {
    if !installed("promtool", "apt-get install prometheus") {
        return;
    }
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "sinkhole.rules.yml"],
        ["test", "rules", "sinkhole.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("run promtool {args:?}: {e}"));
        assert!(
            out.status.success(),
            "promtool {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every alert of the rules file, by name.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn every_alert_has_a_severity_a_runbook_entry_and_annotations() {
    let rules = read(&root().join("deploy/prometheus/sinkhole.rules.yml"));
    let runbook = read(&root().join("deploy/prometheus/README.md"));
    let alerts = alert_names(&rules);
    assert!(
        alerts.len() >= 12,
        "the rules hold every alert of the issue: {alerts:?}"
    );
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    for (name, block) in alerts.iter().zip(&blocks) {
        assert!(
            runbook.contains(&format!("### {name}\n")),
            "deploy/prometheus/README.md has no \"### {name}\" runbook entry"
        );
        for needed in [
            "severity: ",
            "summary: ",
            "description: ",
            &format!("#{}\"", name.to_lowercase()),
        ] {
            assert!(block.contains(needed), "alert {name} has no {needed:?}:\n{block}");
        }
    }
}

/// The metric names (`sinkhole_*`, `process_*`, `up`) an expression or file mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if (word.starts_with("sinkhole_") || word.starts_with("process_")) && !word.contains(':') {
            names.insert(word.clone());
        }
        word.clear();
    }
    names
}

/// A histogram's series, by the name of the histogram.
fn base_name(metric: &str) -> &str {
    ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| metric.strip_suffix(suffix))
        .unwrap_or(metric)
}

#[test]
fn rules_and_dashboard_name_only_metrics_the_daemon_documents() {
    let readme = read(&root().join("README.md"));
    let rules = read(&root().join("deploy/prometheus/sinkhole.rules.yml"));
    let dashboard = read(&root().join("deploy/grafana/sinkhole.json"));
    let mut used = metric_names(&rules);
    used.extend(metric_names(&dashboard));
    assert!(used.len() > 20, "the scan finds the metrics: {used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|m| !readme.contains(&format!("`{}`", base_name(m))))
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics used by deploy/prometheus or deploy/grafana that README.md \"Metrics\" does not list: {unknown:?}"
    );
}

/// One query of one panel.
struct PanelQuery {
    panel: String,
    expr: String,
}

/// Every target expression of every panel (rows' collapsed panels too), with the dashboard's
/// variables replaced as Grafana would for `instance`.
fn panel_queries(dashboard: &Value, instance: &str) -> Vec<PanelQuery> {
    fn walk(panels: &Value, instance: &str, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.is_empty(), "panel {title:?} has a target without expr");
                out.push(PanelQuery {
                    panel: title.to_string(),
                    expr: expr
                        .replace("$__rate_interval", RATE_INTERVAL)
                        .replace("$instance", instance)
                        .replace("$job", "sinkhole"),
                });
            }
            walk(&panel["panels"], instance, out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], instance, &mut out);
    out
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_datasource_and_instance_variables() {
    let dashboard: Value =
        serde_json::from_str(&read(&root().join("deploy/grafana/sinkhole.json"))).expect("the dashboard is JSON");
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 39,
        "schemaVersion 39 or later"
    );
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let datasource = variable("datasource").expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(variable("instance").expect("an instance variable")["type"], "query");
    let queries = panel_queries(&dashboard, "x");
    assert!(queries.len() >= 20, "the dashboard has its panels: {}", queries.len());
    let mut ids = BTreeSet::new();
    let mut check = |panels: &Value| {
        for panel in panels.as_array().into_iter().flatten() {
            assert!(ids.insert(panel["id"].as_u64()), "panel id repeated: {panel}");
            if panel["type"] != "row" {
                assert_eq!(
                    panel["datasource"]["uid"], "${datasource}",
                    "panel {} uses $datasource",
                    panel["title"]
                );
            }
        }
    };
    check(&dashboard["panels"]);
    for query in &queries {
        assert!(
            query.expr.contains("instance=~\"x\""),
            "panel {:?} filters by $instance: {}",
            query.panel,
            query.expr
        );
    }
}

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `s` percent-encoded for a URL query string (all but the unreserved characters).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` to `addr`: the status code and the body; Err if nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, Duration::from_secs(10)).map(|a| (a.status, a.body))
}

/// The `data` of a Prometheus API answer, or why there is none.
fn api(prometheus: SocketAddr, path: &str) -> Result<Value, String> {
    let (status, body) = http_get(prometheus, path)?;
    let json: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if json["status"] != "success" {
        return Err(format!("HTTP {status}: {} {}", json["errorType"], json["error"]));
    }
    Ok(json["data"].clone())
}

/// The series an instant query returns.
fn query(prometheus: SocketAddr, expr: &str) -> Result<Vec<Value>, String> {
    let data = api(prometheus, &format!("/api/v1/query?query={}", url_encode(expr)))?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// Polls `done` every 200 ms until it returns Some, up to `deadline`; panics with `what` if not.
fn wait_for<T>(deadline: Instant, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Seconds since 1970.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// RFC 3339 (UTC) for a Unix time, as a policy's `until` wants it.
fn rfc3339(unix: u64) -> String {
    let (days, secs) = (unix / 86400, unix % 86400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (no date crate in the tests).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[test]
fn rfc3339_names_the_right_day() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
    assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56+00:00");
}

/// The daemon under watch: a live and a dead upstream (the dead one first, so that it is tried and
/// its errors counted), DoT with a test certificate (so that the certificate's expiry is
/// exported), a file list and a list by URL, and one policy on 127.0.0.0/8 that audits for its
/// first seconds and then enforces (so that a phase change happens while Prometheus watches).
fn daemon_config(live: &FakeUpstream, dead: &FakeUpstream, list_url: &str, audit_until: &str, dot: u16) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 1
tls = ["127.0.0.1:{dot}"]
certificate = "server.crt"
key = "server.key"
state_dir = "{{dir}}/state"
list_wait = "3s"
[upstream]
servers = ["{dead}", "{live}"]
timeout_ms = 1000
[lists.ban]
domains = ["blocked.example"]
[lists.remote]
urls = ["{list_url}"]
refresh = "1s"
[[policy]]
name = "ban"
clients = ["127.0.0.0/8"]
block = ["ban", "remote"]
phases = [{{ until = "{audit_until}", mode = "audit" }}, {{ until = "2099-01-01T00:00:00+00:00", mode = "enforce" }}]
[log]
hits = "{{dir}}/hits.jsonl"
"#,
        dead = dead.addr(),
        live = live.addr(),
    )
}

/// Starts Prometheus on loopback scraping `target` every second as job "sinkhole", with `rules`
/// evaluated every second; returns it once it says it is ready.
fn start_prometheus(dir: &Path, target: SocketAddr, rules: &Path, deadline: Instant) -> (Killed, SocketAddr) {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules:?}\nscrape_configs:\n  \
         - job_name: sinkhole\n    static_configs:\n      - targets: [\"{target}\"]\n",
        rules = rules.display().to_string()
    );
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).expect("write prometheus.yml");
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("create prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let mut child = Killed(child);
    wait_for(deadline, "Prometheus to be ready", || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("prometheus exited ({status}):\n{}", read(&dir.join("prometheus.log")));
        }
        matches!(http_get(addr, "/-/ready"), Ok((200, _))).then_some(())
    });
    (child, addr)
}

/// A little of everything for `duration`: allowed names asked again and again (cache hits), new
/// ones (misses), blocked names from both lists, a name the upstream answers SERVFAIL, over UDP
/// and TCP, and a reload (SIGHUP) halfway.
fn send_load(daemon: &Daemon, duration: Duration) {
    let client = ip("127.0.0.1");
    let start = Instant::now();
    let mut reloaded = false;
    let mut round = 0u32;
    while start.elapsed() < duration {
        let fresh = format!("name{round}.allowed.example");
        for name in [
            "www.allowed.example",
            fresh.as_str(),
            "blocked.example",
            "ads.remote.example",
        ] {
            let _ = query_udp(daemon.addr(), client, name, RecordType::A, true);
        }
        if round.is_multiple_of(3) {
            let _ = query_udp(daemon.addr(), client, "servfail.allowed.example", RecordType::A, true);
            let _ = query_tcp(daemon.addr(), client, "www.allowed.example", RecordType::A, false);
            let _ = query_tcp(daemon.addr(), client, "sub.blocked.example", RecordType::A, false);
        }
        if !reloaded && start.elapsed() > duration / 2 {
            daemon.reload();
            reloaded = true;
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_real_prometheus_loads_the_rules_and_every_dashboard_panel_has_data() {
    if !installed("prometheus", "apt-get install prometheus") {
        return;
    }
    let deadline = Instant::now() + DEADLINE;
    let live = FakeUpstream::start();
    let dead = FakeUpstream::start_dead();
    let mut lists = HttpServer::start();
    lists.set("/remote.txt", "ads.remote.example\n");
    let now = unix_now();
    let dir = TestDir::new();
    let ca = TestCa::new();
    ca.dns_test_cert().write(dir.path(), "server");
    let audit_until = now + AUDIT_SECONDS;
    let config = daemon_config(
        &live,
        &dead,
        &lists.url("/remote.txt"),
        &rfc3339(audit_until),
        free_port(),
    );
    let daemon = Daemon::start_in(dir, &config);
    // The policy audits first: a blocked name gets its real answer (unless a slow start ate the phase).
    if unix_now() + 1 < audit_until {
        let audited = query_udp(daemon.addr(), ip("127.0.0.1"), "blocked.example", RecordType::A, true)
            .expect("an answer in the audit phase");
        assert_eq!(audited.metadata.response_code, ResponseCode::NoError);
        assert!(!addresses(&audited).is_empty(), "audit mode answers: {audited:?}");
    }

    let prom_dir = TestDir::new();
    let shipped_rules = root().join("deploy/prometheus/sinkhole.rules.yml");
    let (_prometheus, prometheus) = start_prometheus(prom_dir.path(), daemon.metrics_addr(), &shipped_rules, deadline);
    // At least 7 s, and past the switch to enforce with Prometheus watching.
    let load_for = Duration::from_secs(7).max(Duration::from_secs((audit_until + 2).saturating_sub(unix_now())));
    send_load(&daemon, load_for);
    let target = daemon.metrics_addr().to_string();
    // Enough scrapes since the load for a rate over RATE_INTERVAL, and the target healthy.
    wait_for(deadline, "8 scrapes of sinkhole with up == 1", || {
        let expr = format!("count_over_time(up{{job=\"sinkhole\", instance=\"{target}\"}}[{RATE_INTERVAL}]) >= 8");
        let up = query(prometheus, &format!("up{{instance=\"{target}\"}} == 1")).ok()?;
        (!up.is_empty() && !query(prometheus, &expr).ok()?.is_empty()).then_some(())
    });
    // The enforce phase began during the load: a blocked name is blocked now.
    let blocked = query_udp(daemon.addr(), ip("127.0.0.1"), "blocked.example", RecordType::A, true)
        .expect("an answer in the enforce phase");
    assert_eq!(
        blocked.metadata.response_code,
        ResponseCode::NXDomain,
        "enforce mode blocks: {blocked:?}"
    );

    // The stale-list alert measures against each list's refresh (1 s here).
    let refresh = query(prometheus, r#"sinkhole_list_refresh_seconds{list="remote"} == 1"#).expect("query");
    assert_eq!(refresh.len(), 1, "the list by URL's refresh is exported: {refresh:?}");

    let dashboard: Value =
        serde_json::from_str(&read(&root().join("deploy/grafana/sinkhole.json"))).expect("the dashboard is JSON");
    let queries = panel_queries(&dashboard, &target);
    let mut failures = Vec::new();
    for q in &queries {
        match query(prometheus, &q.expr) {
            Err(why) => failures.push(format!("panel {:?}: {} -> error {why}", q.panel, q.expr)),
            Ok(series) if series.is_empty() => failures.push(format!("panel {:?}: {} -> no series", q.panel, q.expr)),
            Ok(_) => {}
        }
    }
    // The dashboard's annotation queries must at least be valid PromQL.
    for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = annotation["expr"].as_str() {
            let expr = expr.replace("$instance", &target).replace("$job", "sinkhole");
            if let Err(why) = query(prometheus, &expr) {
                failures.push(format!("annotation {}: {expr} -> error {why}", annotation["name"]));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}\n--- sinkhole's metrics ---\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n"),
        daemon.scrape_metrics()
    );

    // Every rule, recording and alerting, evaluates without error.
    let rules = wait_for(deadline, "every rule evaluated", || {
        let data = api(prometheus, "/api/v1/rules").ok()?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.iter().all(|r| r["health"] != "unknown").then_some(rules)
    });
    let shipped = read(&root().join("deploy/prometheus/sinkhole.rules.yml"));
    assert_eq!(
        rules.len(),
        shipped.matches("- record: ").count() + alert_names(&shipped).len(),
        "Prometheus loaded every rule of the file"
    );
    let unhealthy: Vec<String> = rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
        .collect();
    assert!(unhealthy.is_empty(), "rules not healthy in Prometheus: {unhealthy:?}");
    lists.stop();
}

/// The alerts Prometheus holds now, as (name, state, upstream label).
fn alerts(prometheus: SocketAddr) -> Vec<(String, String, String)> {
    let Ok(data) = api(prometheus, "/api/v1/alerts") else {
        return Vec::new();
    };
    data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&a["labels"]["alertname"]),
                text(&a["state"]),
                text(&a["labels"]["upstream"]),
            )
        })
        .collect()
}

#[test]
fn killing_the_upstream_fires_the_upstream_alerts_in_a_real_prometheus() {
    if !installed("prometheus", "apt-get install prometheus") {
        return;
    }
    let deadline = Instant::now() + DEADLINE;
    let mut upstream = FakeUpstream::start();
    let daemon = Daemon::start(&format!(
        "[server]\nlisten = [\"{{listen}}\"]\nmetrics = \"{{metrics}}\"\nthreads = 1\n\
         [upstream]\nservers = [\"{}\"]\ntimeout_ms = 300\n",
        upstream.addr()
    ));
    // The shipped rules with every `for:` made 0s, so that an alert fires at its first true evaluation
    // rather than minutes later: what is tested is that the expressions see a killed upstream in the
    // metrics the daemon really exports (the promtool unit tests hold the durations).
    let shipped = read(&root().join("deploy/prometheus/sinkhole.rules.yml"));
    let prom_dir = TestDir::new();
    let rules = prom_dir.path().join("rules.yml");
    let immediate: Vec<String> = shipped
        .lines()
        .map(|line| match line.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 0s"),
            _ => line.to_string(),
        })
        .collect();
    std::fs::write(&rules, immediate.join("\n")).expect("write the rules");
    let (_prometheus, prometheus) = start_prometheus(prom_dir.path(), daemon.metrics_addr(), &rules, deadline);
    let client = ip("127.0.0.1");
    let answered = query_udp(daemon.addr(), client, "www.example.org", RecordType::A, true).expect("an answer");
    assert_eq!(answered.metadata.response_code, ResponseCode::NoError);
    let upstream_alerts = |prometheus| {
        alerts(prometheus)
            .into_iter()
            .filter(|(name, _, _)| name == "SinkholeUpstreamDown" || name == "SinkholeAllUpstreamsDown")
            .collect::<Vec<_>>()
    };
    // Healthy, scraped and evaluated: no upstream alert.
    wait_for(deadline, "a scrape showing the upstream up", || {
        let up = query(prometheus, "sinkhole_upstream_up == 1").ok()?;
        (!up.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        upstream_alerts(prometheus),
        Vec::new(),
        "no upstream alert while it answers"
    );

    let dead = upstream.addr().to_string();
    upstream.stop();
    // Clients keep asking (new names, so the cache cannot answer): the pool keeps it in backoff.
    let mut round = 0u32;
    let fired = wait_for(
        deadline,
        "SinkholeUpstreamDown and SinkholeAllUpstreamsDown firing",
        || {
            round += 1;
            let _ = query_udp(
                daemon.addr(),
                client,
                &format!("n{round}.example.org"),
                RecordType::A,
                true,
            );
            let firing: Vec<_> = alerts(prometheus)
                .into_iter()
                .filter(|(_, state, _)| state == "firing")
                .collect();
            let named = |alert: &str| firing.iter().any(|(name, _, _)| name == alert);
            (named("SinkholeUpstreamDown") && named("SinkholeAllUpstreamsDown")).then_some(firing)
        },
    );
    assert!(
        fired
            .iter()
            .any(|(name, _, upstream)| name == "SinkholeUpstreamDown" && *upstream == dead),
        "the alert names the upstream that was killed ({dead}): {fired:?}"
    );
}

#[test]
fn the_compose_example_parses_and_mounts_files_that_exist() {
    let compose_dir = root().join("deploy/compose");
    let compose = compose_dir.join("compose.yaml");
    // The YAML is read by PyYAML (the Debian package python3-yaml), which is what parses it here;
    // it prints every volume's host path.
    let script = "import sys, yaml\nc = yaml.safe_load(open(sys.argv[1]))\nassert set(c['services']) >= \
                  {'sinkhole', 'prometheus', 'grafana'}, c['services'].keys()\nfor s in c['services'].values():\n    \
                  for v in s.get('volumes', []):\n        src = v['source'] if isinstance(v, dict) else \
                  v.split(':')[0]\n        if src.startswith('.') or src.startswith('/'): print(src)\n    b = \
                  s.get('build')\n    if b: print(b['context']); print(b['context'] + '/' + b['dockerfile'])\n";
    // /usr/bin/python3 first: Debian's python3-yaml is for it, and a python3 earlier in PATH (a
    // virtualenv, pyenv) may lack PyYAML.
    let with_yaml = ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import yaml"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = with_yaml else {
        println!("SKIPPED: no python3 with PyYAML to parse compose.yaml (apt-get install python3-yaml)");
        return;
    };
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&compose)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/compose/compose.yaml does not parse:\n{stderr}"
    );
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|p| compose_dir.join(p))
        .collect();
    assert!(paths.len() >= 5, "the compose file mounts its files: {paths:?}");
    for path in &paths {
        assert!(
            path.exists(),
            "compose.yaml mounts {}, which does not exist",
            path.display()
        );
    }
    // The Prometheus config it mounts is valid (its rule file path is the container's).
    if installed("promtool", "apt-get install prometheus") {
        let out = Command::new("promtool")
            .args(["check", "config", "--syntax-only", "prometheus.yml"])
            .current_dir(&compose_dir)
            .output()
            .expect("run promtool check config");
        assert!(
            out.status.success(),
            "deploy/compose/prometheus.yml:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
