//! The real tools tests drive beside the daemon (promtool, prometheus, chromium, unbound, ...):
//! whether one is installed, and the checks several tests share. A test whose tool is missing
//! says `SKIPPED` and returns early; CI (.ci/run) installs them all, so that none is skipped there.

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether `program` runs here (`program --version`); if not, prints `SKIPPED: ...` with `why`
/// (what it is for, or how to install it), and the test returns early.
pub fn installed(program: &str, why: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        println!("SKIPPED: {program} is not installed ({why})");
    }
    found
}

/// Lints a Prometheus text page with `promtool check metrics` (the exposition format, metric and
/// label names, help texts, counters' `_total`) and fails the test on any finding; skipped,
/// saying so, where promtool is not installed.
pub fn promtool_lint(page: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        println!("SKIPPED: promtool is not installed (the Prometheus lint)");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(page.as_bytes()).expect("write the page to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}
