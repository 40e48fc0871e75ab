//! Loopback ports: the one place the harness gets them from, so that no port is handed out twice in one test
//! binary. Tests run in parallel threads; without this, a port released by one test (a stopped fake upstream, a
//! probe in `free_port`) could be bound by another at once, and a test expecting silence would get an answer.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Every port handed out so far by this process; a few per test, so it stays small.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
/// Bound on tries to find a port free for both transports and not handed out before.
const ATTEMPTS: usize = 100;

/// Binds UDP and TCP on 127.0.0.1 to one port that is free for both and was never handed out before in this
/// process. The kernel picks the UDP port; TCP may find it taken, hence the bounded retries.
pub fn bind_udp_tcp() -> (UdpSocket, TcpListener) {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..ATTEMPTS {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind UDP on 127.0.0.1:0");
        let port = udp.local_addr().expect("local_addr of a bound socket").port();
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            handed_out.insert(port);
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after {ATTEMPTS} attempts");
}

/// A free loopback port for UDP and TCP both (for the `{listen}`/`{metrics}` of a config): bound, then released.
/// Another process may still take it before the daemon binds it; `Daemon::start` retries that case.
pub fn free_port() -> u16 {
    let (udp, _tcp) = bind_udp_tcp();
    udp.local_addr().expect("local_addr of a bound socket").port()
}

/// A privileged loopback port (below 1024) free for UDP and TCP both, for a daemon that binds it as root and then
/// drops to another user. Needs root (or CAP_NET_BIND_SERVICE); panics without.
pub fn free_privileged_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // High in the range, away from the well-known services a test machine may run.
    for port in (900..1024).rev() {
        if handed_out.contains(&port) {
            continue;
        }
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        if udp.is_ok() && tcp.is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no privileged port between 900 and 1023 free for both UDP and TCP on 127.0.0.1 (are the tests root?)");
}
