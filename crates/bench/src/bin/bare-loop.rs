//! The floor of the comparison (ARCHITECTURE.md "Speed, and what it cost"): a UDP responder that does no DNS work at all.
//! Every query is answered by flipping its header to a response with RCODE NXDOMAIN and sending
//! the same bytes back, so what it costs per query is the kernel's receive and send path and
//! nothing else. A server that does real work (ACL, policy, lists, cache, hit log) can approach
//! this figure but not beat it.
//!
//! `cargo run --release -p sinkhole-bench --bin bare-loop -- MODE ADDR`
//! - `plain`: one `recv_from`/`send_to` per packet, the floor for a per-packet server.
//! - `mmsg`: `recvmmsg`/`sendmmsg` batches of up to 32, the floor for a batching server; batches
//!   only fill when packets queue, i.e. at saturation.
//!
//! It binds loopback addresses only: it answers anything, so it must never face a network.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::ExitCode;

use sinkhole_batchio::Batch;
use socket2::{Domain, Protocol, Socket, Type};

/// Most datagrams one `recvmmsg`/`sendmmsg` call moves, as in the daemon and the replay tool.
const BATCH: usize = 32;
/// Room per datagram: DNS queries are far smaller; a longer datagram is cut and dropped.
const DATAGRAM: usize = 4096;
/// Kernel receive buffer, the same as the daemon asks for, so that bursts queue rather than
/// drop in both and loss figures compare (the kernel caps it at net.core.rmem_max).
const SOCKET_BUFFER: usize = 4 << 20;
/// Size of a DNS header: anything shorter is not a query and gets no answer.
const HEADER: usize = 12;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, addr) = match args.as_slice() {
        [mode, addr] => (mode.as_str(), addr.as_str()),
        _ => return usage("expected MODE ADDR"),
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        return usage("ADDR must be ip:port or [ipv6]:port");
    };
    if !addr.ip().is_loopback() {
        return usage("ADDR must be a loopback address (127.0.0.0/8 or ::1): this loop answers anything");
    }
    let socket = match bind(addr) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("bare-loop: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match mode {
        "plain" => plain(&socket),
        "mmsg" => mmsg(&socket),
        _ => return usage("MODE must be plain or mmsg"),
    };
    // Both loops only return on an error the kernel will repeat (EBADF and the like).
    if let Err(e) = result {
        eprintln!("bare-loop: {e}");
    }
    ExitCode::FAILURE
}

fn usage(why: &str) -> ExitCode {
    eprintln!("bare-loop: {why}\nusage: bare-loop plain|mmsg ADDR   (ADDR on loopback, e.g. 127.0.0.1:26356)");
    ExitCode::from(2)
}

/// A blocking UDP socket with the same receive buffer as the daemon's.
fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort, as in the daemon: a smaller buffer only means more loss at saturation.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Turns a query into its NXDOMAIN answer in place: QR=1, RA=1, RCODE=3, the id, opcode, RD and
/// question kept. Returns false for a datagram too short to be DNS, which gets no answer.
fn flip(packet: &mut [u8]) -> bool {
    if packet.len() < HEADER {
        return false;
    }
    packet[2] |= 0x80; // QR: a response
    packet[3] = 0x80 | 3; // RA set, Z/AD/CD clear, RCODE NXDOMAIN
    true
}

/// One `recv_from` and one `send_to` per packet.
fn plain(socket: &UdpSocket) -> io::Result<()> {
    let mut buf = [0u8; DATAGRAM];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        if len < buf.len() && flip(&mut buf[..len]) {
            // A send that fails (a full socket buffer, a client gone) loses one answer, as in any server.
            let _ = socket.send_to(&buf[..len], peer);
        }
    }
}

/// Batches: block until at least one datagram is queued, take up to `BATCH` of those queued, and
/// answer them all with one `sendmmsg`, through the daemon's own batch type (sinkhole-batchio),
/// so that the floor and the daemon pay the same system calls.
fn mmsg(socket: &UdpSocket) -> io::Result<()> {
    let fd = socket.as_fd();
    let mut incoming = Batch::new(BATCH, DATAGRAM);
    let mut outgoing = Batch::new(BATCH, DATAGRAM);
    loop {
        let got = match incoming.recv_waiting(fd, BATCH, true) {
            Ok(got) => got,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        // The answer is the query's own bytes, flipped, sent back to the address it came from.
        let mut n = 0;
        for i in 0..got {
            let Some(peer) = incoming.peer(i).filter(|_| !incoming.truncated(i)) else {
                continue;
            };
            let query = incoming.received(i);
            let len = query.len();
            let out = outgoing.buf_mut(n);
            out[..len].copy_from_slice(query);
            if flip(&mut out[..len]) {
                outgoing.set_len(n, len);
                outgoing.set_peer(n, peer);
                n += 1;
            }
        }
        let mut sent = 0;
        while sent < n {
            match outgoing.send_from(fd, sent, n - sent) {
                Ok(0) | Err(_) => break,
                // A full send buffer or a vanished client drops the rest of this batch, as a
                // server under overload would.
                Ok(k) => sent += k,
            }
        }
    }
}

/// Errors that say nothing about the socket itself: a signal, or an ICMP error from an earlier
/// send to a client that has gone (ECONNREFUSED surfaces on the next receive).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
    )
}
