//! Reading what to replay: a dnsperf query file ("NAME [TYPE]" per line, `#` comments) or a
//! pcap/pcapng capture of client DNS traffic, told apart by their first bytes, into a
//! [`QueryTable`].
//!
//! From a capture, every UDP datagram to the DNS port (53 unless told otherwise) that reads as a
//! query (one question, QR clear, opcode QUERY) is kept verbatim (flags, EDNS, case), sent from its
//! client's address as [`ClientMap`] maps it; responses, TCP, IP fragments and anything else are
//! counted as skipped. Capture timing is not kept: the run's pace is `--rate`'s.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

use super::clients::ClientMap;
use super::table::QueryTable;
use sinkhole_dns::packet::{EncodeError, encode_query};

/// Longest line of a dnsperf file we read (a name is at most 253 bytes; comments may be longer).
const MAX_LINE: usize = 4096;

/// What kind of file it is, from its first four bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Text: a dnsperf query file.
    Dnsperf,
    /// libpcap (either byte order, micro- or nanosecond timestamps).
    Pcap,
    /// pcapng.
    PcapNg,
}

impl Format {
    /// Detects the format from the file's first bytes (fewer than four: text).
    pub fn detect(head: &[u8]) -> Format {
        match head.get(..4) {
            Some(
                [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1],
            ) => Format::Pcap,
            Some([0x0a, 0x0d, 0x0d, 0x0a]) => Format::PcapNg,
            _ => Format::Dnsperf,
        }
    }

    /// The name the summary shows.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dnsperf => "dnsperf",
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// Why the input cannot be replayed. Each message names the file (and line) to fix.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error: in the message, not a `source`, so that it is said once.
        error: io::Error,
    },
    /// A line of a dnsperf file is not `NAME [TYPE]`.
    #[error("{}:{line}: {why}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, for the operator.
        why: String,
    },
    /// The capture cannot be read.
    #[error("{}: not a capture this tool can read ({why})", path.display())]
    Capture {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        why: String,
    },
    /// Nothing to replay.
    #[error("{}: no queries to replay ({why})", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was seen instead.
        why: String,
    },
}

/// How to turn the file's entries into queries.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Source address of every query of a dnsperf file.
    pub source: IpAddr,
    /// Whether queries from a dnsperf file carry an OPT record (captured queries are kept as sent).
    pub edns: bool,
    /// Capture client address → source address.
    pub map: ClientMap,
    /// Destination UDP port of the queries to take from a capture.
    pub capture_port: u16,
}

/// What reading the file found, for the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InputStats {
    /// The detected format.
    pub format: &'static str,
    /// Queries in the table.
    pub queries: u64,
    /// Packets (capture) or non-comment lines (dnsperf) not taken.
    pub skipped: u64,
    /// Distinct source addresses.
    pub clients: u64,
}

/// Reads `path` into a query table.
pub fn load(path: &Path, options: &LoadOptions) -> Result<(QueryTable, InputStats), InputError> {
    let io_error = |error| InputError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = BufReader::new(File::open(path).map_err(io_error)?);
    let format = Format::detect(file.fill_buf().map_err(io_error)?);
    let mut table = QueryTable::new();
    let skipped = match format {
        Format::Dnsperf => read_dnsperf(path, file, options, &mut table)?,
        Format::Pcap | Format::PcapNg => read_capture(path, file, format, options, &mut table)?,
    };
    if table.is_empty() {
        let why = match format {
            Format::Dnsperf => "no query lines".to_string(),
            _ => format!(
                "{skipped} packets, none a UDP DNS query to port {}; see --capture-port",
                options.capture_port
            ),
        };
        return Err(InputError::Empty {
            path: path.to_path_buf(),
            why,
        });
    }
    let stats = InputStats {
        format: format.name(),
        queries: table.len() as u64,
        skipped,
        clients: table.sources().len() as u64,
    };
    Ok((table, stats))
}

/// One line of a dnsperf file: None for blanks and comments, else the name and type.
pub fn parse_line(line: &str) -> Result<Option<(&str, u16)>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let mut fields = line.split_whitespace();
    let Some(name) = fields.next() else {
        return Ok(None);
    };
    let qtype = match fields.next() {
        None => sinkhole_dns::wire::rtype::A,
        Some(text) => {
            parse_type(text).ok_or_else(|| format!("unknown query type {text:?} (A, AAAA, MX, ... or TYPEnnn)"))?
        }
    };
    if fields.next().is_some() {
        return Err("expected `NAME [TYPE]`".to_string());
    }
    Ok(Some((name, qtype)))
}

/// A query type by mnemonic or as TYPEnnn (RFC 3597).
pub fn parse_type(text: &str) -> Option<u16> {
    let upper = text.to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE") {
        return number.parse().ok();
    }
    hickory_proto::rr::RecordType::from_str(&upper).ok().map(u16::from)
}

fn read_dnsperf(
    path: &Path,
    mut file: impl BufRead,
    options: &LoadOptions,
    table: &mut QueryTable,
) -> Result<u64, InputError> {
    let mut line = String::new();
    let mut wire = Vec::with_capacity(300);
    let mut number = 0;
    loop {
        line.clear();
        number += 1;
        let read = (&mut file)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => line_error(path, number, "not UTF-8 text".into()),
                _ => InputError::Io {
                    path: path.to_path_buf(),
                    error: e,
                },
            })?;
        if read == 0 {
            return Ok(0);
        }
        if line.len() > MAX_LINE && !line.ends_with('\n') {
            return Err(line_error(path, number, format!("line longer than {MAX_LINE} bytes")));
        }
        let Some((name, qtype)) = parse_line(&line).map_err(|why| line_error(path, number, why))? else {
            continue;
        };
        encode_query(name, qtype, options.edns, &mut wire)
            .map_err(|e: EncodeError| line_error(path, number, format!("{name}: {e}")))?;
        if !table.push(&wire, options.source) {
            // Only a full table refuses a query we encoded: the file is cut there.
            return Ok(0);
        }
    }
}

fn line_error(path: &Path, line: usize, why: String) -> InputError {
    InputError::Line {
        path: path.to_path_buf(),
        line,
        why,
    }
}

fn read_capture(
    path: &Path,
    file: impl Read,
    format: Format,
    options: &LoadOptions,
    table: &mut QueryTable,
) -> Result<u64, InputError> {
    let capture_error = |e: pcap_file::PcapError| InputError::Capture {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let mut skipped = 0u64;
    let mut take = |link: DataLink, data: &[u8]| match udp_query(link, data, options.capture_port) {
        Some((client, payload)) if table.push(payload, options.map.map(client)) => {}
        _ => skipped += 1,
    };
    if format == Format::Pcap {
        let mut reader = PcapReader::new(file).map_err(capture_error)?;
        let link = reader.header().datalink;
        check_link(path, link)?;
        while let Some(packet) = reader.next_packet() {
            take(link, &packet.map_err(capture_error)?.data);
        }
    } else {
        let mut reader = PcapNgReader::new(file).map_err(capture_error)?;
        // Link types of the current section's interfaces, by interface id.
        let mut links: Vec<DataLink> = Vec::new();
        let link_of = |links: &[DataLink], id: usize| links.get(id).copied().unwrap_or(DataLink::ETHERNET);
        while let Some(block) = reader.next_block() {
            match block.map_err(capture_error)? {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(interface) => {
                    check_link(path, interface.linktype)?;
                    links.push(interface.linktype);
                }
                Block::EnhancedPacket(packet) => take(link_of(&links, packet.interface_id as usize), &packet.data),
                Block::SimplePacket(packet) => take(link_of(&links, 0), &packet.data),
                Block::Packet(packet) => take(link_of(&links, usize::from(packet.interface_id)), &packet.data),
                _ => {}
            }
        }
    }
    Ok(skipped)
}

/// Refuses link types [`udp_query`] cannot read, at once rather than as "every packet skipped".
fn check_link(path: &Path, link: DataLink) -> Result<(), InputError> {
    if link_offset(link).is_some() || matches!(link, DataLink::ETHERNET | DataLink::LINUX_SLL) {
        return Ok(());
    }
    Err(InputError::Capture {
        path: path.to_path_buf(),
        why: format!("link type {link:?} is not supported (Ethernet, Linux cooked, raw IP and loopback are)"),
    })
}

/// For link types that are a fixed header before the IP packet: its length.
fn link_offset(link: DataLink) -> Option<usize> {
    match link {
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(0),
        DataLink::NULL | DataLink::LOOP => Some(4),
        DataLink::LINUX_SLL2 => Some(20),
        _ => None,
    }
}

/// The client address and DNS payload of a UDP datagram to `port`, from a captured frame; None
/// for anything else (other protocols, fragments, truncated frames).
pub fn udp_query(link: DataLink, frame: &[u8], port: u16) -> Option<(IpAddr, &[u8])> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(frame).ok()?,
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(frame).ok()?,
        other => SlicedPacket::from_ip(frame.get(link_offset(other)?..)?).ok()?,
    };
    let client = match sliced.net.as_ref()? {
        NetSlice::Ipv4(v4) if !v4.is_payload_fragmented() => IpAddr::V4(v4.header().source_addr()),
        NetSlice::Ipv6(v6) if !v6.is_payload_fragmented() => IpAddr::V6(v6.header().source_addr()),
        _ => return None,
    };
    let Some(TransportSlice::Udp(udp)) = sliced.transport else {
        return None;
    };
    if udp.destination_port() != port {
        return None;
    }
    let payload = udp.payload();
    sinkhole_dns::packet::parse(payload).ok()?;
    Some((client, payload))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use etherparse::PacketBuilder;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

    use crate::clients::ClientMap;
    use sinkhole_dns::wire::rtype;

    fn options() -> LoadOptions {
        LoadOptions {
            source: "127.0.0.1".parse().expect("literal"),
            edns: true,
            map: ClientMap::new(Vec::new(), false, false).expect("default map"),
            capture_port: 53,
        }
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sinkhole-replay-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }

    /// An Ethernet frame carrying a UDP datagram from `src` to `dst` (port 53 unless given).
    pub(crate) fn frame(src: IpAddr, dst: IpAddr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let builder = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => builder.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => builder.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let builder = builder.udp(40000, dst_port);
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut out, payload).expect("write frame");
        out
    }

    fn query(name: &str) -> Vec<u8> {
        let mut wire = Vec::new();
        encode_query(name, rtype::A, false, &mut wire).expect("valid");
        wire
    }

    #[test]
    fn detects_formats_by_magic() {
        assert_eq!(Format::detect(&[0xd4, 0xc3, 0xb2, 0xa1, 2]), Format::Pcap);
        assert_eq!(Format::detect(&[0xa1, 0xb2, 0x3c, 0x4d]), Format::Pcap);
        assert_eq!(Format::detect(&[0x0a, 0x0d, 0x0d, 0x0a]), Format::PcapNg);
        assert_eq!(Format::detect(b"www.example.com A\n"), Format::Dnsperf);
        assert_eq!(Format::detect(b""), Format::Dnsperf);
    }

    #[test]
    fn parses_dnsperf_lines() {
        assert_eq!(parse_line("www.example.com A"), Ok(Some(("www.example.com", rtype::A))));
        assert_eq!(
            parse_line("  x.example\tAAAA  # v6"),
            Ok(Some(("x.example", rtype::AAAA)))
        );
        assert_eq!(parse_line("bare.example"), Ok(Some(("bare.example", rtype::A))));
        assert_eq!(parse_line("svc.example type65"), Ok(Some(("svc.example", 65))));
        assert_eq!(parse_line("mx.example mx"), Ok(Some(("mx.example", 15))));
        assert_eq!(parse_line("# comment"), Ok(None));
        assert_eq!(parse_line("   "), Ok(None));
        assert!(parse_line("x.example BOGUS").is_err());
        assert!(parse_line("x.example A extra").is_err());
    }

    #[test]
    fn loads_a_dnsperf_file() {
        let path = temp_file(
            "q.txt",
            b"# header\nwww.example.com A\n\nwww.tiktok.com AAAA\nroot.example\n",
        );
        let (table, stats) = load(&path, &options()).expect("loads");
        assert_eq!(
            stats,
            InputStats {
                format: "dnsperf",
                queries: 3,
                skipped: 0,
                clients: 1
            }
        );
        assert_eq!(table.source(2), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(&table.question(1)[..4], b"\x03www");
    }

    #[test]
    fn dnsperf_errors_name_the_line() {
        let path = temp_file("bad.txt", b"ok.example A\nbad..example A\n");
        let err = load(&path, &options()).expect_err("bad name");
        assert_eq!(
            err.to_string(),
            format!("{}:2: bad..example: the name has an empty label", path.display())
        );
        let path = temp_file("empty.txt", b"# nothing\n");
        assert!(matches!(load(&path, &options()), Err(InputError::Empty { .. })));
        let err = load(Path::new("/nonexistent/q.txt"), &options()).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read /nonexistent/q.txt"), "{err}");
    }

    #[test]
    fn reads_client_queries_from_pcap_and_maps_clients() {
        let client: IpAddr = "10.10.0.5".parse().expect("literal");
        let other: IpAddr = "192.168.20.7".parse().expect("literal");
        let server: IpAddr = "10.0.0.53".parse().expect("literal");
        let mut response = query("www.example.com");
        response[2] |= 0x80;
        let frames = [
            frame(client, server, 53, &query("www.tiktok.com")),
            frame(other, server, 53, &query("www.example.com")),
            frame(server, client, 53, &response),              // a response: skipped
            frame(client, server, 5353, &query("mdns.local")), // another port: skipped
            frame(client, server, 53, b"junk"),                // not DNS: skipped
        ];
        let mut bytes = Vec::new();
        {
            let header = PcapHeader {
                datalink: DataLink::ETHERNET,
                ..PcapHeader::default()
            };
            let mut writer = PcapWriter::with_header(&mut bytes, header).expect("pcap header");
            for (i, f) in frames.iter().enumerate() {
                let packet = PcapPacket::new(Duration::from_millis(i as u64), f.len() as u32, f);
                writer.write_packet(&packet).expect("write packet");
            }
        }
        let path = temp_file("c.pcap", &bytes);
        let (table, stats) = load(&path, &options()).expect("loads");
        assert_eq!(
            (stats.format, stats.queries, stats.skipped, stats.clients),
            ("pcap", 2, 3, 2)
        );
        assert_eq!(table.source(0), "127.10.0.5".parse::<IpAddr>().expect("literal"));
        assert_eq!(table.source(1), "127.168.20.7".parse::<IpAddr>().expect("literal"));
        assert_eq!(&table.question(0)[..4], b"\x03www");
    }

    #[test]
    fn reads_pcapng_with_ipv6_clients() {
        let client = IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().expect("literal"));
        let server = IpAddr::V6("2001:db8::53".parse::<Ipv6Addr>().expect("literal"));
        let f = frame(client, server, 53, &query("v6.example"));
        let mut bytes = Vec::new();
        {
            let mut writer = PcapNgWriter::new(&mut bytes).expect("pcapng header");
            let interface = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
            writer.write_pcapng_block(interface).expect("idb");
            let packet = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_secs(1),
                original_len: f.len() as u32,
                data: Cow::Borrowed(&f),
                options: Vec::new(),
            };
            writer.write_pcapng_block(packet).expect("epb");
        }
        let path = temp_file("c.pcapng", &bytes);
        let (table, stats) = load(&path, &options()).expect("loads");
        assert_eq!((stats.format, stats.queries, stats.clients), ("pcapng", 1, 1));
        let IpAddr::V4(source) = table.source(0) else {
            panic!("mapped into IPv4")
        };
        assert_eq!(source.octets()[..2], [127, 255]);
    }

    #[test]
    fn capture_without_queries_is_an_error_that_names_the_port() {
        let mut bytes = Vec::new();
        {
            let header = PcapHeader {
                datalink: DataLink::ETHERNET,
                ..PcapHeader::default()
            };
            let mut writer = PcapWriter::with_header(&mut bytes, header).expect("pcap header");
            let f = frame(
                "10.0.0.1".parse().expect("ip"),
                "10.0.0.2".parse().expect("ip"),
                5300,
                &query("x.example"),
            );
            writer
                .write_packet(&PcapPacket::new(Duration::ZERO, f.len() as u32, &f))
                .expect("packet");
        }
        let path = temp_file("none.pcap", &bytes);
        let err = load(&path, &options()).expect_err("no queries");
        assert!(err.to_string().contains("--capture-port"), "{err}");
        let mut five300 = options();
        five300.capture_port = 5300;
        assert_eq!(load(&path, &five300).expect("port 5300").1.queries, 1);
    }
}
