//! The one table of what the fake upstreams answer: [`Script`] (chosen by the first label of the
//! query name) and the addresses, TTLs and sizes of those answers.
//!
//! [`FakeUpstream`](crate::FakeUpstream) plays every script; the fast [`responder`](crate::responder)
//! of the benches plays [`Script::Default`], [`Script::Nx`], [`Script::Cname`] and [`Script::Large`] with
//! the same bytes of meaning (it writes them by hand, without hickory, to answer millions a second),
//! and answers every other script as `Default`. A test that needs one behaviour for every name (a
//! server that always fails, always lowercases) starts a fake with [`FakeUpstream::start_as`](crate::FakeUpstream::start_as).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// What a fake upstream does with one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Any other first label: A 192.0.2.`host` / AAAA 2001:db8::`host` (host 1 unless the fake was started
    /// with another), TTL [`DEFAULT_TTL`]; other types NOERROR, no answer, SOA in authority.
    Default,
    /// `cname`: CNAME [`TIKTOK_CNAME_TARGET`], then its A [`CNAME_V4`] / AAAA [`CNAME_V6`]: a name hiding behind
    /// TikTok's CDN.
    Cname,
    /// `cdn`: CNAME `cdn-<rest>.akamaized.net.`, then A [`CDN_V4`] (AAAA 2001:db8::8): a harmless chain.
    Cdn,
    /// `ttl5`: A [`TTL5_V4`] (AAAA 2001:db8::5), TTL 5, so that cache expiry can be tested in seconds.
    Ttl5,
    /// `tc`: over UDP no answer and TC set; over TCP A [`TC_V4`] then [`BIG_RECORDS`] more (198.51.100.1..).
    Tc,
    /// `big`: [`BIG_RECORDS`] A records 203.0.113.1.. (AAAA 2001:db8::1:1..), over 512 bytes, TC never set.
    Big,
    /// `many`: over UDP no answer and TC set; over TCP [`MANY_RECORDS`] A records 10.1.x.y, compressed (16 KB).
    Many,
    /// `huge`: [`HUGE_RECORDS`] A records 10.0.0.1.. (over 3 KB), TC never set.
    Huge,
    /// `large`: [`LARGE_RECORDS`] A records 10.0.x.y (48 KB, near the largest UDP answer), to load the cache's
    /// byte bound in memory soaks; other types as `Default`.
    Large,
    /// `slow`: the default answer, [`SLOW_DELAY`] late.
    Slow,
    /// `nx`: NXDOMAIN, SOA of the parent name in authority (TTL [`SOA_TTL`], MINIMUM [`SOA_MINIMUM`]).
    Nx,
    /// `servfail`: SERVFAIL, no records.
    ServFail,
    /// `wrongid`: first a reply with the id changed carrying A [`SPOOF_V4`], then the default answer.
    WrongId,
    /// `noise`: over UDP, first six datagrams that answer nothing asked (bytes that are not DNS; a wrong id; the
    /// right id for [`NOISE_OTHER_NAME`]; the right id and name but another type; the answer without QR; the
    /// answer cut short), each with A 192.0.2.[`NOISE_HOST`], then the default answer. Over TCP the default
    /// answer alone.
    Noise,
    /// `garbage`: the query's id then bytes that are not DNS, nothing else.
    Garbage,
    /// `drop`: nothing, ever.
    Drop,
    /// `lowercase`: the default answer with the question's name lowercased (a server that drops the 0x20 case).
    Lowercase,
    /// `cutshort`: the default answer cut short by 6 bytes (the right id and question, records missing), nothing
    /// else; the same over TCP.
    CutShort,
}

impl Script {
    /// The script for a query whose name starts with the label `first` (any case).
    pub fn for_label(first: &[u8]) -> Script {
        const TABLE: [(&str, Script); 17] = [
            ("cname", Script::Cname),
            ("cdn", Script::Cdn),
            ("ttl5", Script::Ttl5),
            ("tc", Script::Tc),
            ("big", Script::Big),
            ("many", Script::Many),
            ("huge", Script::Huge),
            ("large", Script::Large),
            ("slow", Script::Slow),
            ("nx", Script::Nx),
            ("servfail", Script::ServFail),
            ("wrongid", Script::WrongId),
            ("noise", Script::Noise),
            ("garbage", Script::Garbage),
            ("drop", Script::Drop),
            ("lowercase", Script::Lowercase),
            ("cutshort", Script::CutShort),
        ];
        TABLE
            .iter()
            .find(|(label, _)| label.as_bytes().eq_ignore_ascii_case(first))
            .map_or(Script::Default, |&(_, script)| script)
    }

    /// The script for `name` (dotted, any case, trailing dot or not), by its first label.
    pub fn for_name(name: &[u8]) -> Script {
        Script::for_label(name.split(|&b| b == b'.').next().unwrap_or_default())
    }
}

/// The last byte of the address plain answers carry by default: A 192.0.2.1, AAAA 2001:db8::1.
pub const DEFAULT_HOST: u8 = 1;
/// The address every plain A answer carries (`anything.else` A).
pub const DEFAULT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, DEFAULT_HOST);
/// The address every plain AAAA answer carries (`anything.else` AAAA).
pub const DEFAULT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, DEFAULT_HOST as u16);
/// TTL of every record the fakes send, but for `ttl5.*` and the SOA.
pub const DEFAULT_TTL: u32 = 300;
/// The CDN name `cname.*` points to: a TikTok CDN host, so the daemon must block through the CNAME chain.
pub const TIKTOK_CNAME_TARGET: &str = "edge.tiktokcdn.com";
/// The last byte of the addresses of [`TIKTOK_CNAME_TARGET`].
pub const CNAME_HOST: u8 = 7;
/// Address of [`TIKTOK_CNAME_TARGET`] in the `cname.*` answer.
pub const CNAME_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, CNAME_HOST);
/// IPv6 address of [`TIKTOK_CNAME_TARGET`] in the `cname.*` answer.
pub const CNAME_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, CNAME_HOST as u16);
/// Address at the end of the harmless `cdn.*` chain (through akamaized.net), which must not be blocked.
pub const CDN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 8);
/// Address of `ttl5.*`, answered with TTL 5 so that cache expiry can be tested in seconds.
pub const TTL5_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
/// First address of `tc.*` over TCP (more follow, to pass 512 bytes).
pub const TC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
/// The address the wrong-id reply of `wrongid.*` carries, so a test can see if a daemon ever accepted it.
pub const SPOOF_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// The last byte of the address every stray datagram of `noise.*` carries (192.0.2.200), so that taking one
/// shows in the answer.
pub const NOISE_HOST: u8 = 200;
/// The name the other-name reply of `noise.*` carries in its question.
pub const NOISE_OTHER_NAME: &str = "other.noise.test";
/// How many A records `big.*` (and the extra records of `tc.*` over TCP) carry: enough for more than 512 bytes.
pub const BIG_RECORDS: usize = 40;
/// How many A records `huge.*` carries: over 3 KB (under 4096), more than any UDP answer sinkhole sends by default (1232).
pub const HUGE_RECORDS: usize = 150;
/// How many A records `many.*` carries over TCP: 16 KB with name compression, about 28 KB without.
pub const MANY_RECORDS: usize = 1000;
/// How many A records `large.*` carries: 48 KB, near the largest answer an upstream can send over UDP.
pub const LARGE_RECORDS: u16 = 3000;
/// TTL of the SOA in negative answers (`nx.*`, and NODATA for other types).
pub const SOA_TTL: u32 = 60;
/// MINIMUM field of that SOA: the negative-caching TTL is min(SOA TTL, MINIMUM) = 30 s (RFC 2308).
pub const SOA_MINIMUM: u32 = 30;
/// MNAME of that SOA.
pub const SOA_MNAME: &str = "ns.fake-upstream.test";
/// RNAME of that SOA.
pub const SOA_RNAME: &str = "hostmaster.fake-upstream.test";
/// How late `slow.*` is answered: later than any sane upstream timeout in a test config.
pub const SLOW_DELAY: Duration = Duration::from_secs(3);
/// The address a late fake ([`FakeUpstream::start_late`](crate::FakeUpstream::start_late)) answers A queries
/// with instead of [`DEFAULT_V4`], so that a test sees whether a client ever got the late answer rather than
/// another upstream's.
pub const LATE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// Payload size the fakes advertise when they echo EDNS (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_chosen_by_the_first_label_in_any_case() {
        assert_eq!(Script::for_name(b"nx.example.com"), Script::Nx);
        assert_eq!(Script::for_name(b"CName.example.com."), Script::Cname);
        assert_eq!(Script::for_name(b"www.nx.example"), Script::Default);
        assert_eq!(Script::for_name(b"cutshort"), Script::CutShort);
        assert_eq!(Script::for_name(b""), Script::Default);
    }
}
