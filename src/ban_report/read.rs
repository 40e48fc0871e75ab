//! Reading hit logs for the report: plain or gzipped (told by the magic bytes, since logrotate's
//! `delaycompress` leaves `hits.log.1` plain and `hits.log.2.gz` compressed, and an admin may
//! have renamed either), one line at a time, so that a year of hits never sits in memory.
//!
//! A line that is not a hit (not JSON, a field missing, a time that does not parse) is skipped
//! and counted, never fatal: a log cut by a full disk or a crash ends with half a line. A file
//! that cannot be read is fatal, with its name and the line reached.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ipnet::IpNet;
use serde::Deserialize;

use super::ReportError;

/// Longest line kept: a hit line is a few hundred bytes; anything longer is not one, and is
/// skipped without being held whole.
const MAX_LINE: usize = 16 * 1024;

/// The gzip magic bytes (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One hit log line, as far as the report reads it: fields it does not need (`qtype`, `answer`,
/// `cname`, `address`) are not even kept.
#[derive(Debug, Deserialize)]
pub(super) struct HitLine<'a> {
    /// RFC 3339, UTC.
    #[serde(borrow)]
    pub(super) time: Cow<'a, str>,
    /// Full address, a /24 or /56 network, a hash, or absent.
    #[serde(borrow, default)]
    pub(super) client: Option<Cow<'a, str>>,
    /// The policy's name.
    #[serde(borrow)]
    pub(super) policy: Cow<'a, str>,
    /// The list's name.
    #[serde(borrow)]
    pub(super) list: Cow<'a, str>,
    /// The rule that matched, as in the list: the report's apex.
    #[serde(borrow, default)]
    pub(super) rule: Option<Cow<'a, str>>,
    /// The name asked: only its last labels are ever used, when `rule` is missing.
    #[serde(borrow, default)]
    pub(super) qname: Option<Cow<'a, str>>,
    /// `enforce` or `audit`.
    #[serde(borrow)]
    pub(super) mode: Cow<'a, str>,
    /// `udp`, `tcp`, `dot`, `doh`.
    #[serde(borrow, default)]
    pub(super) protocol: Option<Cow<'a, str>>,
}

/// Where a hit's client is, as far as the log says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ClientField {
    /// An address (`log.client_ip = "full"`).
    Address(IpAddr),
    /// A network (`truncated`: /24 or /56).
    Network(IpNet),
    /// None, or a hash: the hit cannot be placed in a network.
    Unknown,
}

impl ClientField {
    /// Reads the `client` field; a hash (or anything else) is [`ClientField::Unknown`].
    pub(super) fn parse(text: Option<&str>) -> ClientField {
        let Some(text) = text else {
            return ClientField::Unknown;
        };
        if let Ok(ip) = text.parse::<IpAddr>() {
            return ClientField::Address(ip);
        }
        match text.parse::<IpNet>() {
            Ok(net) => ClientField::Network(net),
            Err(_) => ClientField::Unknown,
        }
    }
}

/// A hit log file opened for reading, plain or gzipped.
pub(super) struct HitFile {
    path: PathBuf,
    reader: Box<dyn BufRead>,
    /// The number of the line last read (1-based), for errors and skipped lines.
    line: u64,
    buf: Vec<u8>,
}

/// What [`HitFile::next_line`] read.
pub(super) enum Line<'a> {
    /// A line's bytes, without its newline.
    Text(&'a [u8]),
    /// A line longer than [`MAX_LINE`], skipped to its end.
    TooLong,
}

impl HitFile {
    /// Opens `path`, gzipped or not.
    pub(super) fn open(path: &Path) -> Result<HitFile, ReportError> {
        let fail = |source| ReportError::Read {
            path: path.to_path_buf(),
            line: 0,
            source,
        };
        let mut file = BufReader::new(File::open(path).map_err(fail)?);
        let gzipped = file.fill_buf().map_err(fail)?.starts_with(&GZIP_MAGIC);
        let reader: Box<dyn BufRead> = if gzipped {
            Box::new(BufReader::new(MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(HitFile::from_reader(path, reader))
    }

    /// A reader already open (tests).
    pub(super) fn from_reader(path: &Path, reader: Box<dyn BufRead>) -> HitFile {
        HitFile {
            path: path.to_path_buf(),
            reader,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The number of the line last read.
    pub(super) fn line_number(&self) -> u64 {
        self.line
    }

    /// The next line, or None at the end. Holds at most [`MAX_LINE`] bytes of it.
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'_>>, ReportError> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ReportError::Read {
                        path: self.path.clone(),
                        line: self.line + 1,
                        source,
                    });
                }
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], Some(i + 1)),
                None => (chunk, None),
            };
            if !too_long && self.buf.len() + part.len() <= MAX_LINE {
                self.buf.extend_from_slice(part);
            } else {
                too_long = true;
                self.buf.clear();
            }
            let used = done.unwrap_or(chunk.len());
            self.reader.consume(used);
            if done.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line += 1;
        if too_long {
            return Ok(Some(Line::TooLong));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Text(&self.buf)))
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a reader to its end (tests of gzip detection).
#[cfg(test)]
pub(super) fn read_all(file: &mut HitFile) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(Some(line)) = file.next_line() {
        match line {
            Line::Text(t) => lines.push(String::from_utf8_lossy(t).into_owned()),
            Line::TooLong => lines.push("<too long>".into()),
        }
    }
    lines
}

/// Reader of a byte slice, for tests.
#[cfg(test)]
pub(super) fn reader_of(bytes: Vec<u8>) -> Box<dyn BufRead> {
    Box::new(BufReader::new(io::Cursor::new(bytes)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(text: &str) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(text.as_bytes()).expect("write to memory");
        enc.finish().expect("finish in memory")
    }

    #[test]
    fn plain_and_gzipped_read_alike_by_their_bytes_not_their_name() {
        let dir = std::env::temp_dir().join(format!("sinkhole-banreport-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain = dir.join("hits.log.gz"); // a misleading name: plain text inside
        let zipped = dir.join("hits.log.2"); // and gzip without the suffix
        std::fs::write(&plain, "a\nb\n").expect("write");
        std::fs::write(&zipped, gzip("a\nb")).expect("write");
        for path in [&plain, &zipped] {
            let mut file = HitFile::open(path).expect("opens");
            assert_eq!(read_all(&mut file), ["a", "b"], "{}", path.display());
            assert_eq!(file.line_number(), 2);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut bytes = gzip("one\n");
        bytes.extend(gzip("two\n"));
        let mut file = HitFile::from_reader(
            Path::new("x"),
            Box::new(BufReader::new(MultiGzDecoder::new(io::Cursor::new(bytes)))),
        );
        assert_eq!(read_all(&mut file), ["one", "two"]);
    }

    #[test]
    fn a_corrupt_gzip_file_fails_naming_file_and_line() {
        let mut bytes = gzip("one\ntwo\n");
        let n = bytes.len();
        bytes.truncate(n - 12);
        bytes.extend_from_slice(&[0xff; 40]);
        let dir = std::env::temp_dir().join(format!("sinkhole-banreport-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("hits.log.3.gz");
        std::fs::write(&path, bytes).expect("write");
        let mut file = HitFile::open(&path).expect("opens");
        let mut error = None;
        for _ in 0..10 {
            match file.next_line() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        let error = error.expect("a corrupt file is an error");
        assert!(error.contains("hits.log.3.gz") && error.contains("line"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_overlong_line_is_skipped_whole_and_reading_goes_on() {
        let text = format!("{}\nnext\r\n", "x".repeat(MAX_LINE + 10));
        let mut file = HitFile::from_reader(Path::new("x"), reader_of(text.into_bytes()));
        assert_eq!(read_all(&mut file), ["<too long>", "next"]);
    }

    #[test]
    fn client_fields_place_addresses_and_networks_never_hashes() {
        assert_eq!(
            ClientField::parse(Some("10.1.2.3")),
            ClientField::Address("10.1.2.3".parse().expect("ip"))
        );
        assert_eq!(
            ClientField::parse(Some("10.1.2.0/24")),
            ClientField::Network("10.1.2.0/24".parse().expect("net"))
        );
        assert_eq!(ClientField::parse(Some("3f9a0c1b2d4e5f60")), ClientField::Unknown);
        assert_eq!(ClientField::parse(None), ClientField::Unknown);
    }
}
