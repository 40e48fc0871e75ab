//! Batched UDP I/O on Linux: `sendmmsg`/`recvmmsg` over preallocated message arrays, the
//! per-message source address (`IP_PKTINFO`/`IPV6_PKTINFO`), `ppoll` over a few sockets, and the
//! registration of a socket with tokio's reactor.
//!
//! It is shared by the server's UDP workers, its upstream sockets, `replay` and the bench upstream, and holds all
//! of sinkhole's `unsafe` code (one crate to audit; every other crate forbids `unsafe`): the calls neither std,
//! socket2 nor nix offer for preallocated batches. What socket2 and nix do safely (socket addresses, `sendmsg`,
//! socket options, `ppoll`) is taken from them. Every function takes the socket as a [`BorrowedFd`], so that
//! no call can outlive the descriptor it works on. It owns nothing but buffers: which bytes to send and what an answer means are decided by the
//! callers. A [`Batch`] is allocated once and reused for every call, so that a hot loop built on
//! it allocates nothing per packet. The raw pointers handed to the kernel are rebuilt from the
//! batch's own vectors at the start of every call, so no pointer outlives the borrow it came from.

// This crate exists to hold the unsafe code of batched I/O (see above); each block says why it is sound.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use socket2::{MsgHdr, SockAddr, SockAddrStorage, SockRef};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Bytes of control-message room per message: CMSG_SPACE(sizeof(in6_pktinfo)) is 40 on 64-bit
/// Linux, the largest we write; 64 leaves margin on any layout.
const CONTROL_ROOM: usize = 64;
/// Most sockets one [`wait_readable`] call watches: its `pollfd` array lives on the stack.
pub const MAX_POLL: usize = 64;

/// Room for one control message, aligned as `cmsghdr` requires.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_ROOM]);

/// A reusable set of `count` datagram buffers with their headers, for one `sendmmsg` or
/// `recvmmsg` call at a time. Not `Send` (it holds raw pointers between calls): make it on the
/// thread that uses it.
pub struct Batch {
    /// `count` buffers of `buf_len` bytes, back to back.
    data: Vec<u8>,
    /// Size of each buffer: the largest datagram sent or received whole.
    buf_len: usize,
    /// Bytes to send from each buffer, or bytes received into it.
    lens: Vec<usize>,
    /// Destination of each message to send, or source of each received one.
    peers: Vec<libc::sockaddr_storage>,
    /// Valid length of each `peers` entry; 0 sends to the socket's connected peer (none here).
    peer_lens: Vec<libc::socklen_t>,
    /// The per-message source-address control message.
    controls: Vec<Control>,
    /// Valid length of each `controls` entry; 0 sends with the socket's own source address.
    control_lens: Vec<usize>,
    /// `msg_flags` of each received message (MSG_TRUNC is the one read).
    flags: Vec<libc::c_int>,
    /// Whether receives ask for each datagram's destination address (see
    /// [`Batch::receive_destinations`]).
    want_destinations: bool,
    /// The destination address of each received message, when asked for.
    destinations: Vec<Option<IpAddr>>,
    /// One iovec per message, pointing into `data`; rebuilt before each call.
    iovs: Vec<libc::iovec>,
    /// The message headers passed to the kernel; rebuilt before each call.
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    /// A batch of `count` messages of up to `buf_len` bytes each (both at least 1).
    pub fn new(count: usize, buf_len: usize) -> Batch {
        let count = count.max(1);
        let buf_len = buf_len.max(1);
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs (integers and raw
        // pointers) for which all-zero bytes are a valid value (null pointers, zero lengths).
        let (storage, iov, hdr) = unsafe {
            (
                mem::zeroed::<libc::sockaddr_storage>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::mmsghdr>(),
            )
        };
        Batch {
            data: vec![0; count * buf_len],
            buf_len,
            lens: vec![0; count],
            peers: vec![storage; count],
            peer_lens: vec![0; count],
            controls: vec![Control([0; CONTROL_ROOM]); count],
            control_lens: vec![0; count],
            flags: vec![0; count],
            want_destinations: false,
            destinations: vec![None; count],
            iovs: vec![iov; count],
            hdrs: vec![hdr; count],
        }
    }

    /// How many messages one call can carry.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Message `i`'s whole buffer, to write a datagram into before [`Batch::set_len`].
    /// Panics if `i` is not below [`Batch::capacity`] (a caller bug, not input).
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.buf_len;
        &mut self.data[start..start + self.buf_len]
    }

    /// How many bytes of message `i`'s buffer to send (capped at the buffer size).
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(self.buf_len);
    }

    /// Where to send message `i`.
    pub fn set_peer(&mut self, i: usize, peer: SocketAddr) {
        // socket2 lays the address out; the batch keeps libc's storage, which the kernel writes.
        let peer = SockAddr::from(peer);
        self.peer_lens[i] = peer.len();
        let mut storage = peer.as_storage();
        // SAFETY: sockaddr_storage is the type SockAddrStorage wraps (repr(transparent)).
        self.peers[i] = unsafe { *storage.view_as::<libc::sockaddr_storage>() };
    }

    /// The source address message `i` leaves from (`IP_PKTINFO`'s `ipi_spec_dst`, or
    /// `IPV6_PKTINFO`'s address): any local address, e.g. any of 127.0.0.0/8 on Linux, from a socket
    /// bound to the unspecified address. `None` sends from the socket's own address. The family
    /// must be the socket's.
    pub fn set_source(&mut self, i: usize, source: Option<IpAddr>) {
        self.control_lens[i] = match source {
            None => 0,
            Some(ip) => write_pktinfo(&mut self.controls[i], ip),
        };
    }

    /// Message `i` as received by the last [`Batch::recv`] (its first `buf_len` bytes).
    pub fn received(&self, i: usize) -> &[u8] {
        let start = i * self.buf_len;
        &self.data[start..start + self.lens[i].min(self.buf_len)]
    }

    /// Whether message `i` of the last [`Batch::recv`] was longer than the buffer (cut short).
    pub fn truncated(&self, i: usize) -> bool {
        self.flags[i] & libc::MSG_TRUNC != 0
    }

    /// Has later receives read the address each datagram was sent to, from the control message
    /// a socket with [`enable_destinations`] attaches, for [`Batch::destination`].
    pub fn receive_destinations(&mut self, on: bool) {
        self.want_destinations = on;
    }

    /// The local address message `i` of the last [`Batch::recv`] was sent to, when
    /// [`Batch::receive_destinations`] is on and the socket reported it: the source its answer
    /// must leave from.
    pub fn destination(&self, i: usize) -> Option<IpAddr> {
        self.destinations[i]
    }

    /// Where message `i` of the last [`Batch::recv`] (with `want_peers`) came from.
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        let len = self.peer_lens[i];
        if len == 0 {
            return None;
        }
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: sockaddr_storage is the type SockAddrStorage wraps; peers[i] holds the address
        // the kernel wrote on the last receive and `len` is the length it reported, so the
        // SockAddr is a valid address of that length.
        let peer = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.peers[i];
            SockAddr::new(storage, len)
        };
        peer.as_socket()
    }

    /// Sends messages `0..n` (as set up with `set_len`, `set_peer`, `set_source`) on `fd` with one
    /// `sendmmsg`; returns how many the kernel took, which may be fewer than `n` (the rest were not
    /// sent). `WouldBlock` when the socket buffer is full.
    pub fn send(&mut self, fd: BorrowedFd<'_>, n: usize) -> io::Result<usize> {
        self.send_from(fd, 0, n)
    }

    /// Like [`Batch::send`], for messages `first..first + n`: the rest of a batch the kernel took
    /// only part of.
    pub fn send_from(&mut self, fd: BorrowedFd<'_>, first: usize, n: usize) -> io::Result<usize> {
        let first = first.min(self.capacity());
        let n = n.min(self.capacity() - first);
        if n == 0 {
            return Ok(0);
        }
        for i in first..first + n {
            self.iovs[i] = libc::iovec {
                iov_base: self.data[i * self.buf_len..].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            if self.peer_lens[i] > 0 {
                hdr.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = self.peer_lens[i];
            } else {
                hdr.msg_name = ptr::null_mut();
                hdr.msg_namelen = 0;
            }
            if self.control_lens[i] > 0 {
                hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
                hdr.msg_controllen = self.control_lens[i] as _;
            } else {
                hdr.msg_control = ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: hdrs[first..first + n] (in bounds: both clamped above) were just filled with
        // pointers into self.iovs, self.data, self.peers and self.controls, each valid for the
        // length given beside it; those vectors are not resized or moved while `&mut self` is
        // held, i.e. for the whole call. The kernel only reads them (and writes msg_len).
        let sent = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.hdrs[first..].as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    /// Receives up to `n` datagrams waiting on `fd` with one non-blocking `recvmmsg`; returns how
    /// many (`WouldBlock` if none were waiting). With `want_peers`, each one's source is kept
    /// for [`Batch::peer`].
    pub fn recv(&mut self, fd: BorrowedFd<'_>, n: usize, want_peers: bool) -> io::Result<usize> {
        self.recv_with(fd, n, want_peers, libc::MSG_DONTWAIT)
    }

    /// Like [`Batch::recv`], but sleeps in the kernel until one datagram comes (or the socket's
    /// receive timeout passes: `WouldBlock`), then takes what else is queued: one system call
    /// per wake-up, as a bare loop makes, for a worker with nothing else to do.
    pub fn recv_waiting(&mut self, fd: BorrowedFd<'_>, n: usize, want_peers: bool) -> io::Result<usize> {
        self.recv_with(fd, n, want_peers, libc::MSG_WAITFORONE)
    }

    fn recv_with(&mut self, fd: BorrowedFd<'_>, n: usize, want_peers: bool, flags: libc::c_int) -> io::Result<usize> {
        let n = n.min(self.capacity());
        if n == 0 {
            return Ok(0);
        }
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.data[i * self.buf_len..].as_mut_ptr().cast(),
                iov_len: self.buf_len,
            };
            let hdr = &mut self.hdrs[i].msg_hdr;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            if want_peers {
                hdr.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            } else {
                hdr.msg_name = ptr::null_mut();
                hdr.msg_namelen = 0;
            }
            if self.want_destinations {
                hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
                hdr.msg_controllen = CONTROL_ROOM as _;
            } else {
                hdr.msg_control = ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            hdr.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: as in `send`: every pointer in hdrs[..n] points into a vector of self that lives
        // and stays in place for the call, with the capacity given beside it (buf_len bytes per
        // iovec, a whole sockaddr_storage per name, CONTROL_ROOM bytes of control); the kernel
        // writes at most that much.
        let got = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for i in 0..got {
            self.lens[i] = self.hdrs[i].msg_len as usize;
            self.flags[i] = self.hdrs[i].msg_hdr.msg_flags;
            self.peer_lens[i] = if want_peers {
                self.hdrs[i].msg_hdr.msg_namelen
            } else {
                0
            };
            self.destinations[i] = if self.want_destinations {
                read_pktinfo(&self.hdrs[i].msg_hdr)
            } else {
                None
            };
        }
        Ok(got)
    }
}

/// Sends one datagram to `peer` without blocking, from `source` if given (see
/// [`Batch::set_source`]): an answer that comes outside a batch (to a forwarded query).
pub fn send_one(fd: BorrowedFd<'_>, bytes: &[u8], peer: SocketAddr, source: Option<IpAddr>) -> io::Result<()> {
    let peer = SockAddr::from(peer);
    let mut control = Control([0; CONTROL_ROOM]);
    let control_len = source.map_or(0, |ip| write_pktinfo(&mut control, ip));
    let buffers = [IoSlice::new(bytes)];
    let msg = MsgHdr::new()
        .with_addr(&peer)
        .with_buffers(&buffers)
        .with_control(&control.0[..control_len]);
    SockRef::from(&fd).sendmsg(&msg, libc::MSG_DONTWAIT).map(drop)
}

/// Asks the kernel to attach to each datagram received on `fd` the local address it was sent
/// to (IP_PKTINFO, or IPV6_RECVPKTINFO for an IPv6 socket), for [`Batch::receive_destinations`].
/// A socket bound to the unspecified address needs it to answer from the address a client
/// asked: otherwise the kernel picks the source by route, and on a host with several addresses
/// clients drop the answer as coming from a stranger.
pub fn enable_destinations(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = if ipv6 {
        setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)
    };
    set.map_err(io::Error::from)
}

/// Waits until at least one of `fds` (at most [`MAX_POLL`]) is readable or `timeout` passes;
/// sets `ready[i]` for each readable one and returns how many. A zero timeout only looks.
/// An interrupted wait (EINTR) returns 0.
pub fn wait_readable<'fd>(
    fds: impl IntoIterator<Item = BorrowedFd<'fd>>,
    ready: &mut [bool],
    timeout: Duration,
) -> io::Result<usize> {
    let mut fds = fds.into_iter();
    let Some(first) = fds.next() else {
        return Ok(0);
    };
    // On the stack: the replay loop calls this between every batch. Entries past `n` are unused.
    let mut polls: [PollFd<'_>; MAX_POLL] = std::array::from_fn(|_| PollFd::new(first, PollFlags::POLLIN));
    let mut n = 1;
    for (poll, fd) in polls[1..].iter_mut().zip(fds) {
        *poll = PollFd::new(fd, PollFlags::POLLIN);
        n += 1;
    }
    let n = n.min(ready.len());
    match nix::poll::ppoll(&mut polls[..n], Some(TimeSpec::from(timeout)), None) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(0),
        Err(e) => return Err(e.into()),
    }
    let mut readable = 0;
    for (flag, poll) in ready.iter_mut().zip(&polls[..n]) {
        // POLLERR/POLLHUP also wake us: the following recv reports what happened.
        *flag = poll.revents().is_some_and(|r| !r.is_empty());
        readable += usize::from(*flag);
    }
    Ok(readable)
}

/// Registers `socket` with the current tokio reactor for `interest`. The socket is owned by the
/// returned `AsyncFd`, which is what makes the registration sound; callers use their own system
/// calls on it (this crate's batches) and the `AsyncFd` only for readiness.
pub fn register(socket: std::net::UdpSocket, interest: Interest) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the AsyncFd takes the UdpSocket, which owns its descriptor: the descriptor stays
    // open and the same (as_raw_fd always returns it) for as long as it is registered.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(io::Error::from)
}

/// The destination address from the IP_PKTINFO or IPV6_PKTINFO control message of a received
/// message, if it carries one.
fn read_pktinfo(msg: &libc::msghdr) -> Option<IpAddr> {
    if msg.msg_control.is_null() || msg.msg_controllen == 0 {
        return None;
    }
    // SAFETY: msg is the header the kernel just filled: msg_control points at our control buffer
    // and msg_controllen says how much of it the kernel wrote, so CMSG_FIRSTHDR/CMSG_NXTHDR walk
    // within it; each payload read is checked against its cmsg_len and read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let len = (*cmsg).cmsg_len as usize;
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
                    if len >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as usize =>
                {
                    let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    return Some(IpAddr::V4(Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes())));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if len >= libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as usize =>
                {
                    let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Writes one IP_PKTINFO (or IPV6_PKTINFO) control message naming `source` into `control`;
/// returns the control length to pass as msg_controllen.
fn write_pktinfo(control: &mut Control, source: IpAddr) -> usize {
    control.0 = [0; CONTROL_ROOM];
    let (level, kind, data_len) = match source {
        IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO, mem::size_of::<libc::in_pktinfo>()),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            mem::size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic on a length.
    let (space, cmsg_len) = unsafe { (libc::CMSG_SPACE(data_len as u32), libc::CMSG_LEN(data_len as u32)) };
    let space = space as usize;
    if space > CONTROL_ROOM {
        // Cannot happen on Linux (40 bytes at most); sending without it beats writing past the end.
        return 0;
    }
    // SAFETY: a msghdr whose msg_control points at `control` (8-aligned, CONTROL_ROOM bytes, at
    // least `space` as checked) lets CMSG_FIRSTHDR and CMSG_DATA compute pointers inside it; the
    // header and the payload written through them fit in `space` bytes by definition of
    // CMSG_SPACE. Unaligned writes are used for the payload, whose alignment CMSG_DATA does not
    // promise for every struct.
    unsafe {
        let mut msg: libc::msghdr = mem::zeroed();
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return 0;
        }
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = cmsg_len as _;
        let data = libc::CMSG_DATA(cmsg);
        match source {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                ptr::write_unaligned(data.cast::<libc::in_pktinfo>(), info);
            }
            IpAddr::V6(v6) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr { s6_addr: v6.octets() },
                    ipi6_ifindex: 0,
                };
                ptr::write_unaligned(data.cast::<libc::in6_pktinfo>(), info);
            }
        }
    }
    space
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn send_one_reaches_the_peer_from_the_chosen_source() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind server");
        let client = UdpSocket::bind("0.0.0.0:0").expect("bind client");
        let source = IpAddr::V4(Ipv4Addr::new(127, 10, 0, 5));
        send_one(client.as_fd(), b"abc", server.local_addr().expect("addr"), Some(source)).expect("sendmsg");
        server.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut buf = [0; 8];
        let (len, from) = server.recv_from(&mut buf).expect("datagram");
        assert_eq!((&buf[..len], from.ip()), (&b"abc"[..], source));
    }

    #[test]
    fn sends_from_chosen_loopback_sources_and_receives_in_batches() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind server");
        let server_addr = server.local_addr().expect("addr");
        let client = UdpSocket::bind("0.0.0.0:0").expect("bind client");
        let mut batch = Batch::new(4, 64);
        let sources = [[127, 0, 0, 1], [127, 10, 0, 5], [127, 20, 30, 40]];
        for (i, octets) in sources.iter().enumerate() {
            batch.buf_mut(i)[..3].copy_from_slice(&[i as u8; 3]);
            batch.set_len(i, 3);
            batch.set_peer(i, server_addr);
            batch.set_source(i, Some(IpAddr::V4(Ipv4Addr::from(*octets))));
        }
        assert_eq!(batch.send(client.as_fd(), 3).expect("sendmmsg"), 3);

        server.set_nonblocking(true).expect("nonblocking");
        let mut ready = [false];
        assert_eq!(
            wait_readable([server.as_fd()], &mut ready, Duration::from_secs(2)).expect("ppoll"),
            1
        );
        let mut got = Vec::new();
        for _ in 0..100 {
            match batch.recv(server.as_fd(), 4, true) {
                Ok(n) => (0..n).for_each(|i| got.push((batch.received(i).to_vec(), batch.peer(i)))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got.len() < 3 => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
            if got.len() == 3 {
                break;
            }
        }
        assert_eq!(got.len(), 3);
        let client_port = client.local_addr().expect("addr").port();
        for (i, (bytes, peer)) in got.iter().enumerate() {
            assert_eq!(bytes, &vec![i as u8; 3]);
            let expected = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(sources[i])), client_port);
            assert_eq!(*peer, Some(expected), "message {i} left from its pktinfo source");
        }
        // A reply to one of those sources reaches the client socket bound to 0.0.0.0.
        server.send_to(b"ok", got[1].1.expect("peer")).expect("reply");
        client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut buf = [0; 8];
        assert_eq!(client.recv(&mut buf).expect("reply arrives"), 2);
    }

    #[test]
    fn wait_readable_times_out_quietly() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut ready = [true];
        let n = wait_readable([socket.as_fd()], &mut ready, Duration::from_millis(10)).expect("ppoll");
        assert_eq!((n, ready[0]), (0, false));
    }
}
