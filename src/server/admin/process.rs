//! The standard Prometheus process metrics (`process_cpu_seconds_total`, memory, descriptors,
//! threads, start time), read from `/proc/self` on each scrape and written as exposition text.
//!
//! Written here rather than through the `metrics` crate (or `metrics-process`, which records
//! through it): its counters hold whole numbers, and CPU time in whole seconds makes
//! `rate(process_cpu_seconds_total[1m])` of a mostly idle daemon a staircase. Reading `/proc`
//! costs a few small files per scrape, off the packet path.

use std::fmt::Write;

use crate::metrics::{
    PROCESS_CPU, PROCESS_MAX_FDS, PROCESS_OPEN_FDS, PROCESS_RESIDENT, PROCESS_START_TIME, PROCESS_THREADS,
    PROCESS_VIRTUAL,
};

/// One reading of the process's figures; a field that could not be read is None and its metric
/// is left out of the page rather than shown wrong.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Reading {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    threads: Option<u64>,
    start_time: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

impl Reading {
    /// Reads `/proc/self` now.
    pub(super) fn now() -> Reading {
        let clock_ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK);
        let page_size = sysconf(nix::unistd::SysconfVar::PAGE_SIZE);
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| boot_time(&s));
        let mut reading = stat
            .as_deref()
            .and_then(|s| parse_stat(s, clock_ticks?, page_size?, boot_time))
            .unwrap_or_default();
        reading.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
        reading.max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft);
        reading
    }

    /// Appends the metrics of this reading to a Prometheus text page.
    pub(super) fn write(&self, page: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
            if let Some(value) = value {
                let _ = write!(page, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n");
            }
        };
        let float = |v: Option<u64>| v.map(|v| v as f64);
        metric(
            PROCESS_CPU,
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        metric(
            PROCESS_RESIDENT,
            "gauge",
            "Resident memory size in bytes.",
            float(self.resident_bytes),
        );
        metric(
            PROCESS_VIRTUAL,
            "gauge",
            "Virtual memory size in bytes.",
            float(self.virtual_bytes),
        );
        metric(
            PROCESS_OPEN_FDS,
            "gauge",
            "Number of open file descriptors.",
            float(self.open_fds),
        );
        metric(
            PROCESS_MAX_FDS,
            "gauge",
            "Maximum number of open file descriptors.",
            float(self.max_fds),
        );
        metric(
            PROCESS_START_TIME,
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time,
        );
        metric(
            PROCESS_THREADS,
            "gauge",
            "Number of OS threads in the process.",
            float(self.threads),
        );
    }
}

/// A positive `sysconf` value.
fn sysconf(var: nix::unistd::SysconfVar) -> Option<u64> {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
}

/// The boot time (Unix seconds) from `/proc/stat`'s `btime` line.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The figures of `/proc/self/stat` (proc(5)): fields are counted after the command name, which
/// is in parentheses and may itself hold spaces and parentheses, so from the last `)`.
fn parse_stat(stat: &str, clock_ticks: u64, page_size: u64, boot_time: Option<u64>) -> Option<Reading> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field n is at index n - 3.
    let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = clock_ticks as f64;
    let cpu = field(14)
        .zip(field(15))
        .map(|(user, system)| (user + system) as f64 / ticks);
    Some(Reading {
        cpu_seconds: cpu,
        threads: field(20),
        start_time: boot_time
            .zip(field(22))
            .map(|(boot, start)| boot as f64 + start as f64 / ticks),
        virtual_bytes: field(23),
        resident_bytes: field(24).map(|pages| pages.saturating_mul(page_size)),
        open_fds: None,
        max_fds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_after_the_last_parenthesis() {
        // A command name with a space and parentheses, as a process may name itself.
        let stat = "4242 (sink) (hole) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 12345 \
                    104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let reading = parse_stat(stat, 100, 4096, Some(1_700_000_000)).expect("parsed");
        assert_eq!(reading.cpu_seconds, Some(3.0), "(250 + 50) ticks at 100 a second");
        assert_eq!(reading.threads, Some(7));
        let start = reading.start_time.expect("start time");
        assert!(
            (start - 1_700_000_123.45).abs() < 1e-3,
            "boot time + 12345 ticks: {start}"
        );
        assert_eq!(reading.virtual_bytes, Some(104_857_600));
        assert_eq!(reading.resident_bytes, Some(2560 * 4096));
        assert_eq!(parse_stat("garbage", 100, 4096, None), None);
    }

    #[test]
    fn this_process_reads_itself_and_writes_every_metric() {
        let reading = Reading::now();
        assert!(reading.resident_bytes.is_some_and(|b| b > 0));
        assert!(reading.open_fds.is_some_and(|n| n > 0));
        let mut page = String::new();
        reading.write(&mut page);
        for name in [
            PROCESS_CPU,
            PROCESS_RESIDENT,
            PROCESS_VIRTUAL,
            PROCESS_OPEN_FDS,
            PROCESS_MAX_FDS,
            PROCESS_START_TIME,
            PROCESS_THREADS,
        ] {
            assert!(page.contains(&format!("\n{name} ")), "{name} in:\n{page}");
        }
    }

    #[test]
    fn the_boot_time_comes_from_btime() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(boot_time("cpu 1\n"), None);
    }
}
