//! A real Unbound (the Debian package) that a test runs on loopback as a peer of sinkhole: the
//! resolver an export is loaded into, or the DoT and DoH upstream sinkhole forwards to. One place
//! for what every such Unbound needs (foreground, no chroot, no privilege drop, its files in the
//! test's folder, loopback only, checked by `unbound-checkconf` first) and for waiting until it
//! answers; the test writes only what it is about.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::client::query_udp;
use crate::ports::free_port;

/// A program of the unbound package, looked for on PATH and in /usr/sbin (where Debian puts it,
/// and which a user's PATH may lack); None where it is not installed.
pub fn unbound_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether `unbound` (a path from [`unbound_program`]) serves DNS over HTTPS (built with nghttp2).
pub fn unbound_has_doh(unbound: &Path) -> bool {
    Command::new(unbound)
        .arg("-V")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("nghttp2"))
        .unwrap_or(false)
}

/// An Unbound process the test started, answering plain DNS on [`Unbound::addr`]; killed on
/// drop.
pub struct Unbound {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unbound {
    /// Starts `program` in the foreground with its config, log and pid file in `dir`: plain DNS
    /// on 127.0.0.1 at a free port, one thread, queries from 127.0.0.0/8 only, then `server`
    /// (more lines of the `server:` clause, each indented) and `clauses` (whole clauses after
    /// it: `forward-zone:`, `rpz:`). Panics if `unbound-checkconf` refuses the config or Unbound
    /// does not answer within 30 s, with what it logged.
    pub fn start(program: &Path, dir: &Path, server: &str, clauses: &str) -> Unbound {
        let port = free_port();
        let conf = format!(
            r#"server:
    interface: 127.0.0.1@{port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    num-threads: 1
{server}
{clauses}"#,
            dir = dir.display(),
        );
        let conf_path = dir.join("unbound.conf");
        std::fs::write(&conf_path, conf).expect("write unbound.conf");
        let checked = Command::new(program.with_file_name("unbound-checkconf"))
            .arg(&conf_path)
            .output()
            .expect("run unbound-checkconf");
        assert!(
            checked.status.success(),
            "unbound-checkconf on the test's config: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = Command::new(program)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("unbound.log")).expect("unbound log file"),
            ))
            .spawn()
            .expect("start unbound");
        let unbound = Unbound {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
        };
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Any answer will do (NXDOMAIN, REFUSED, SERVFAIL): it is up.
        while query_udp(unbound.addr, client, "ready.example", RecordType::A, false).is_err() {
            assert!(
                Instant::now() < deadline,
                "unbound did not answer within 30 s:\n{}",
                unbound.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        unbound
    }

    /// Where it answers plain DNS.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("unbound.log")).unwrap_or_default()
    }
}
