//! Batched datagram I/O: `recvmmsg(2)` and `sendmmsg(2)` behind a safe interface.
//!
//! Under load, packets queue in the kernel, and one system call per batch instead of one per
//! packet is most of what separates a server from the kernel's own floor (DESIGN.md "Speed").
//! This module owns the buffers and the kernel's message headers and is the only `unsafe` code
//! of the server; it knows nothing of DNS.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams received and answers sent per system call.
pub const BATCH: usize = 32;
/// Receive buffer per datagram. A query this long is already absurd (they are tens of bytes,
/// a few hundred with large EDNS options); a longer one arrives cut short, is flagged as such,
/// and fails to parse.
pub const RECV_LEN: usize = 4096;
/// Send buffer per answer: the largest DNS message, so that writing an answer never
/// reallocates.
pub const SEND_LEN: usize = 65_535;

/// Whether [`Batch::receive`] may sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return at once when nothing is queued (for use under an event loop).
    No,
    /// Sleep until a datagram comes: one system call per wake-up, as a bare loop does.
    ForOne,
}

/// Sends one datagram without blocking (an answer to a forwarded query, outside a batch).
pub fn send_one(fd: RawFd, bytes: &[u8], peer: SocketAddr) -> io::Result<()> {
    let addr = socket2::SockAddr::from(peer);
    // SAFETY: the buffer and the address are live for the call and their lengths are theirs.
    let n = unsafe {
        libc::sendto(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT,
            addr.as_ptr().cast(),
            addr.len(),
        )
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// One received datagram and the place for its answer.
pub struct Datagram<'a> {
    /// The bytes received.
    pub packet: &'a [u8],
    /// Who sent it (None for an address family we do not serve).
    pub peer: Option<SocketAddr>,
    /// Whether it was longer than [`RECV_LEN`] and cut.
    pub truncated: bool,
    /// The answer buffer: cleared and written by the caller, sent if queued.
    pub answer: &'a mut Vec<u8>,
}

/// A sender address as the kernel wrote it.
fn peer(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough;
            // sockaddr_storage is aligned for every socket address type.
            let v4 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A batch of received datagrams and the answers to send back, with every buffer and kernel
/// header allocated once, when the worker starts.
pub struct Batch {
    recv: Box<[[u8; RECV_LEN]]>,
    recv_len: [usize; BATCH],
    recv_truncated: [bool; BATCH],
    /// Sender addresses, as the kernel filled them in.
    peers: Box<[libc::sockaddr_storage; BATCH]>,
    peer_len: [libc::socklen_t; BATCH],
    /// Answers, written by the caller through [`Batch::answer_buffer`].
    answers: Box<[Vec<u8>]>,
    /// Which answers to send, in order: index into `answers` and `peers`.
    queued: [usize; BATCH],
    queued_len: usize,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Allocates the buffers (about 2 MiB of address space, most of it untouched).
    pub fn new() -> Batch {
        Batch {
            recv: vec![[0u8; RECV_LEN]; BATCH].into_boxed_slice(),
            recv_len: [0; BATCH],
            recv_truncated: [false; BATCH],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all
            // zero bytes is a valid (empty) value.
            peers: Box::new(unsafe { MaybeUninit::zeroed().assume_init() }),
            peer_len: [0; BATCH],
            answers: (0..BATCH).map(|_| Vec::with_capacity(SEND_LEN)).collect(),
            queued: [0; BATCH],
            queued_len: 0,
            // SAFETY: as above.
            iovecs: Box::new(unsafe { MaybeUninit::zeroed().assume_init() }),
            // SAFETY: as above.
            headers: Box::new(unsafe { MaybeUninit::zeroed().assume_init() }),
        }
    }

    /// Receives up to [`BATCH`] datagrams; returns how many. With [`Wait::No`], an error of
    /// kind `WouldBlock` when none is waiting; with [`Wait::ForOne`], sleeps in the kernel until
    /// one comes (or the socket's receive timeout passes), then takes what is queued.
    pub fn receive(&mut self, fd: RawFd, wait: Wait) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.recv[i].as_mut_ptr().cast(),
                iov_len: RECV_LEN,
            };
            let header = &mut self.headers[i];
            header.msg_hdr.msg_name = (&raw mut self.peers[i]).cast();
            header.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &raw mut self.iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = std::ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // SAFETY: every header points at a buffer, an iovec and an address slot owned by `self`,
        // live and not otherwise borrowed for the duration of the call; the lengths given are
        // those of the buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                match wait {
                    Wait::No => libc::MSG_DONTWAIT,
                    Wait::ForOne => libc::MSG_WAITFORONE,
                },
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for i in 0..n {
            let header = &self.headers[i];
            self.recv_len[i] = (header.msg_len as usize).min(RECV_LEN);
            self.recv_truncated[i] = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.peer_len[i] = header.msg_hdr.msg_namelen;
        }
        self.queued_len = 0;
        Ok(n)
    }

    /// Datagram `i` of the last receive: its bytes, its sender, whether it was cut short, and
    /// the buffer to write its answer into (capacity [`SEND_LEN`]).
    pub fn slot(&mut self, i: usize) -> Datagram<'_> {
        let i = i.min(BATCH - 1);
        Datagram {
            packet: &self.recv[i][..self.recv_len[i]],
            peer: peer(&self.peers[i], self.peer_len[i]),
            truncated: self.recv_truncated[i],
            answer: &mut self.answers[i],
        }
    }

    /// Marks the answer to datagram `i` for sending to its sender.
    pub fn queue_answer(&mut self, i: usize) {
        if i < BATCH && self.queued_len < BATCH {
            self.queued[self.queued_len] = i;
            self.queued_len += 1;
        }
    }

    /// Sends the queued answers. Datagrams the kernel refuses (a full socket buffer, an
    /// unreachable sender) are dropped, as a UDP server must; returns how many were sent.
    pub fn send(&mut self, fd: RawFd) -> usize {
        for (slot, &i) in self.queued[..self.queued_len].iter().enumerate() {
            self.iovecs[slot] = libc::iovec {
                iov_base: self.answers[i].as_mut_ptr().cast(),
                iov_len: self.answers[i].len(),
            };
            let header = &mut self.headers[slot];
            header.msg_hdr.msg_name = (&raw mut self.peers[i]).cast();
            header.msg_hdr.msg_namelen = self.peer_len[i];
            header.msg_hdr.msg_iov = &raw mut self.iovecs[slot];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = std::ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
        }
        let mut sent = 0;
        while sent < self.queued_len {
            // SAFETY: headers[sent..queued_len] point at answer buffers, iovecs and peer
            // addresses owned by `self`, live and unborrowed during the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (self.queued_len - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(n) {
                Ok(0) => break,
                Ok(n) => sent += n,
                // The first unsent datagram failed alone (sendmmsg reports an error only when
                // nothing was sent): skip it and go on with the rest.
                Err(_) => sent += 1,
            }
        }
        self.queued_len = 0;
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_and_answers_each_sender() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_nonblocking(true).expect("nonblocking");
        let clients: Vec<_> = (0..5)
            .map(|i| {
                let c = std::net::UdpSocket::bind(format!("127.0.0.{}:0", i + 1)).expect("bind client");
                c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                    .expect("timeout");
                c.send_to(&[i as u8; 3], server.local_addr().expect("addr"))
                    .expect("send");
                c
            })
            .collect();
        let mut batch = Batch::new();
        let mut got = 0;
        for _ in 0..100 {
            match batch.receive(server.as_raw_fd(), Wait::No) {
                Ok(n) => {
                    got = n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        assert!(got >= 1, "at least one datagram");
        for i in 0..got {
            let d = batch.slot(i);
            let (byte, peer) = (d.packet[0], d.peer.expect("an IPv4 sender"));
            assert!(!d.truncated && d.packet.len() == 3);
            d.answer.clear();
            d.answer.extend_from_slice(&[byte, byte]);
            batch.queue_answer(i);
            assert_eq!(peer.ip().to_string(), format!("127.0.0.{}", byte + 1));
        }
        assert_eq!(batch.send(server.as_raw_fd()), got);
        for (i, client) in clients.iter().enumerate().take(got) {
            let mut buf = [0u8; 8];
            let n = client.recv(&mut buf).expect("answer");
            assert_eq!(&buf[..n], &[i as u8, i as u8]);
        }
    }
}
