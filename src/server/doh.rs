//! DNS over HTTPS (RFC 8484): `/dns-query` over HTTP/2 or HTTP/1.1, on a TLS connection the TCP
//! side accepted, admitted and handshook (src/server/tcp.rs, tls.rs).
//!
//! Each request carries one DNS message (GET `?dns=` in base64url, or a POST body of type
//! `application/dns-message`) and goes through the same [`Handler`](super::handler::Handler) as
//! every other transport; the answer goes back as `application/dns-message` with
//! `cache-control: max-age` of its least TTL, so that HTTP caches keep it no longer than DNS would.
//!
//! This module owns what both HTTP versions share: what a request asks for, its answer or the
//! status that refuses it, and the metrics. The connections are served by `http2.rs` (the `h2`
//! crate, every stream in the connection's own task: DoH's hot path, as clients speak it) and
//! `http1.rs` (hyper's HTTP/1.1 server, one request at a time).
//!
//! What bounds a client, beside the connection limits it shares with TCP: bodies are read up to
//! 65535 bytes (a DNS message's most) within `server.tcp_io_timeout`, as are HTTP/1.1 request
//! headers; HTTP/2 streams in flight per connection are capped at `server.tcp_pipeline`; a
//! connection with no request for `server.tcp_idle_timeout` is closed. Memory per connection is
//! thus at most `tcp_pipeline` requests and answers of 64 KiB each (HTTP/2's send buffer is capped
//! to one answer per stream); DoH answers do not draw on `server.tcp_buffer`.

mod http1;
mod http2;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use super::handler::{Clock, Pending, Protocol, Step, Worker};
use super::tcp::{Admission, Shared};
use crate::upstream::Transport;
use crate::wire;

/// The one path DoH answers on (RFC 8484 section 6's example, and what every client defaults to).
const PATH: &str = "/dns-query";
/// The media type of a DNS message in wire format.
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message there is: a longer body is refused unread.
const MAX_MESSAGE: usize = 65_535;
/// Bytes of a refused body read and thrown away at most, so that the client gets its status;
/// nothing of it is kept.
const DRAIN_LIMIT: usize = 4 * MAX_MESSAGE;

/// Serves one DoH connection until the client closes it, it idles past `tcp_idle_timeout`, or
/// shutdown (requests in flight are answered first, within `tcp_io_timeout`). HTTP/2 is what
/// the client chose in ALPN; without ALPN, or with `http/1.1`, it is HTTP/1.1.
pub(super) async fn serve_connection(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    admission: Admission,
    stop: watch::Receiver<bool>,
) {
    let shared = &admission.shared;
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        http2::serve(stream, peer, shared, stop).await;
    } else {
        http1::serve(stream, peer, shared, stop).await;
    }
    drop(admission);
}

/// Why a request got no DNS answer: its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    NotFound,
    Method,
    BadRequest,
    TooLarge,
    MediaType,
    Timeout,
    NoAnswer,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::NoAnswer => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What a request asks for, as its method, path and headers say (before any body is read).
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    /// A GET: its query is `?dns=` of the URL, whose query string this is.
    Get,
    /// A POST: the query is the body, which must be read, and then refused with the status given
    /// if there is one (a wrong media type: the body is still read, see [`BodyCap`]).
    Post(Option<Refusal>),
    /// Refused on its head alone.
    Refused(Refusal),
}

fn ask(method: &Method, uri: &Uri, headers: &HeaderMap) -> Ask {
    if uri.path() != PATH {
        return Ask::Refused(Refusal::NotFound);
    }
    match *method {
        Method::GET => Ask::Get,
        Method::POST => {
            let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            // Parameters (`; charset=...`) mean nothing for a binary type; the type itself must match.
            let media = content_type.map(|t| t.split(';').next().unwrap_or_default().trim());
            let matches = media.is_some_and(|m| m.eq_ignore_ascii_case(DNS_MESSAGE));
            Ask::Post((!matches).then_some(Refusal::MediaType))
        }
        _ => Ask::Refused(Refusal::Method),
    }
}

/// The query of a GET, decoded into `query`: the `dns` parameter, base64url without padding
/// (RFC 8484 4.1). `query` is the caller's, reused from request to request.
fn query_of_get(url_query: &str, query: &mut Vec<u8>) -> Result<(), Refusal> {
    query.clear();
    let encoded = url_query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .ok_or(Refusal::BadRequest)?;
    if encoded.len() > MAX_MESSAGE.div_ceil(3) * 4 {
        return Err(Refusal::TooLarge);
    }
    URL_SAFE_NO_PAD
        .decode_vec(encoded, query)
        .map_err(|_| Refusal::BadRequest)
}

/// A POST body as it arrives: kept if wanted and no longer than [`MAX_MESSAGE`], else read on
/// and thrown away up to [`DRAIN_LIMIT`] (past that the stream is reset: the client gets no
/// status). A refused body is still read before the refusal goes out: an HTTP/2 client that is
/// still sending when its stream is reset takes the reset for a protocol error, and never sees
/// the status.
struct BodyCap {
    /// The body so far, while it is wanted and short enough.
    kept: Vec<u8>,
    /// Bytes seen, kept or not.
    seen: usize,
    /// Whether the body is the query (false: it is read only to be thrown away).
    keep: bool,
}

impl BodyCap {
    fn new(keep: bool) -> BodyCap {
        BodyCap {
            kept: Vec::new(),
            seen: 0,
            keep,
        }
    }

    /// Takes one chunk; false once past [`DRAIN_LIMIT`], when reading must stop.
    fn take(&mut self, data: &[u8]) -> bool {
        self.seen = self.seen.saturating_add(data.len());
        if self.seen > DRAIN_LIMIT {
            return false;
        }
        if self.keep && self.seen <= MAX_MESSAGE {
            self.kept.extend_from_slice(data);
        }
        true
    }

    /// The query, once the body has been read (or reading stopped).
    fn finish(self) -> Result<Vec<u8>, Refusal> {
        if self.seen > MAX_MESSAGE {
            return Err(Refusal::TooLarge);
        }
        Ok(self.kept)
    }
}

/// What [`answer_fast`] left to do.
enum Fast {
    /// `out` holds the answer.
    Answered,
    /// A cache miss: [`answer_forward`] must fill `out`.
    Forward(Box<Pending>),
}

/// Answers `query` from `client` at once if it can (a block, a cache hit: the DoH hot path), into
/// `out`; a cache miss is left to [`answer_forward`].
fn answer_fast(
    shared: &Shared,
    client: IpAddr,
    query: &[u8],
    out: &mut Vec<u8>,
    worker: &mut Worker,
) -> Result<Fast, Refusal> {
    out.clear();
    let handler = &shared.handler;
    let step = handler.answer_fast(query, client, Protocol::Doh, Clock::now(), out, worker);
    handler.flush(worker);
    match step {
        Step::Reply if out.is_empty() => Err(Refusal::NoAnswer),
        Step::Reply => Ok(Fast::Answered),
        // Not a query we can answer (a response, garbage): the client sent a bad message.
        Step::Drop => Err(Refusal::BadRequest),
        Step::Forward(pending) => Ok(Fast::Forward(pending)),
    }
}

/// Forwards a cache miss upstream and writes its answer into `out`.
async fn answer_forward(shared: &Shared, pending: Box<Pending>, out: &mut Vec<u8>) -> Result<(), Refusal> {
    out.clear();
    // Boxed: the forwarding future is large, and inline it would make every waiting request's
    // future as large (a POST's included).
    Box::pin(
        shared
            .handler
            .answer_forward(pending, Transport::Tcp(&shared.upstream), out),
    )
    .await;
    if out.is_empty() {
        return Err(Refusal::NoAnswer);
    }
    Ok(())
}

/// The answer to a query, whichever way it comes: at once or forwarded.
async fn answer(
    shared: &Shared,
    client: IpAddr,
    query: &[u8],
    out: &mut Vec<u8>,
    worker: &mut Worker,
) -> Result<(), Refusal> {
    match answer_fast(shared, client, query, out, worker)? {
        Fast::Answered => Ok(()),
        Fast::Forward(pending) => answer_forward(shared, pending, out).await,
    }
}

/// `cache-control` of a 200 carrying `message`: fresh for HTTP caches as long as its least TTL.
fn cache_control(message: &[u8]) -> HeaderValue {
    let mut text = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    // "max-age=" and a u32 take 18 bytes at most: the write cannot run out of room.
    let _ = write!(cursor, "max-age={}", least_ttl(message));
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    HeaderValue::from_bytes(text.get(..len).unwrap_or_default())
        .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

/// The least TTL of the records in the answer and authority sections (for a negative answer,
/// its SOA's), 0 for a message without any or one that does not read (RFC 8484 5.1). Walked on
/// the wire: an answer is not decoded (nor allocated) a second time to set one header.
fn least_ttl(message: &[u8]) -> u32 {
    let [questions, answers, authorities, _] = wire::counts(message);
    let mut pos = wire::HEADER_LEN;
    for _ in 0..questions {
        let Ok(next) = wire::skip_question(message, pos) else {
            return 0;
        };
        pos = next;
    }
    let mut least = None::<u32>;
    for _ in 0..u32::from(answers) + u32::from(authorities) {
        let Ok((record, next)) = wire::read_record(message, pos) else {
            return 0;
        };
        let ttl = message
            .get(record.ttl_at..record.ttl_at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes);
        least = Some(least.map_or(ttl, |l| l.min(ttl)));
        pos = next;
    }
    least.unwrap_or(0)
}

/// The statuses DoH answers with, each with its `sinkhole_doh_responses_total` counter.
const STATUSES: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::BAD_GATEWAY,
];

/// `sinkhole_doh_responses_total{status}`, one handle per status in [`STATUSES`], taken once.
pub(super) struct DohMetrics {
    responses: [metrics::Counter; STATUSES.len()],
}

impl DohMetrics {
    pub(super) fn new() -> DohMetrics {
        DohMetrics {
            responses: STATUSES
                .map(|s| metrics::counter!(crate::metrics::DOH_RESPONSES, "status" => s.as_str().to_string())),
        }
    }

    fn count(&self, status: StatusCode) {
        let index = STATUSES.iter().position(|s| *s == status);
        if let Some(counter) = index.and_then(|i| self.responses.get(i)) {
            counter.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_query_is_base64url_without_padding() {
        let get = |url_query: &str| {
            // One buffer for all, as a connection reuses it: nothing of a query stays for the next.
            let mut query = vec![9; 3];
            query_of_get(url_query, &mut query).map(|()| query)
        };
        assert_eq!(get("dns=AAEC_w"), Ok(vec![0, 1, 2, 255]));
        assert_eq!(get("ct=x&dns=AAEC_w"), Ok(vec![0, 1, 2, 255]));
        assert_eq!(get("dns=AAEC/w=="), Err(Refusal::BadRequest));
        assert_eq!(get("other=1"), Err(Refusal::BadRequest));
        let long = format!("dns={}", "A".repeat(MAX_MESSAGE.div_ceil(3) * 4 + 1));
        assert_eq!(get(&long), Err(Refusal::TooLarge));
    }

    #[test]
    fn a_body_is_kept_to_a_message_s_length_and_drained_to_the_limit() {
        let mut body = BodyCap::new(true);
        assert!(body.take(&[1, 2]) && body.take(&[3]));
        assert_eq!(body.finish(), Ok(vec![1, 2, 3]));
        let mut body = BodyCap::new(true);
        assert!(body.take(&vec![0; MAX_MESSAGE + 1]));
        assert!(body.kept.is_empty(), "a body too long for a message is not kept");
        assert_eq!(body.finish(), Err(Refusal::TooLarge));
        let mut body = BodyCap::new(false);
        assert!(body.take(&vec![0; DRAIN_LIMIT]));
        assert!(!body.take(&[0]), "reading stops past the drain limit");
        assert_eq!(body.finish(), Err(Refusal::TooLarge));
    }

    #[test]
    fn the_head_says_what_is_asked() {
        let uri = |s: &str| s.parse::<Uri>().expect("a URI");
        let mut headers = HeaderMap::new();
        assert_eq!(ask(&Method::GET, &uri("/dns-query?dns=AA"), &headers), Ask::Get);
        assert_eq!(
            ask(&Method::GET, &uri("/other"), &headers),
            Ask::Refused(Refusal::NotFound)
        );
        assert_eq!(
            ask(&Method::PUT, &uri("/dns-query"), &headers),
            Ask::Refused(Refusal::Method)
        );
        assert_eq!(
            ask(&Method::POST, &uri("/dns-query"), &headers),
            Ask::Post(Some(Refusal::MediaType))
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("Application/DNS-Message; x=y"));
        assert_eq!(ask(&Method::POST, &uri("/dns-query"), &headers), Ask::Post(None));
    }

    #[test]
    fn max_age_is_the_least_ttl_of_answers_and_authorities() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::rdata::{A, SOA};
        use hickory_proto::rr::{Name, RData, Record};
        let name = Name::from_ascii("a.example.").expect("a name");
        let mut message = Message::response(7, hickory_proto::op::OpCode::Query);
        message.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, 1))));
        message.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 2))));
        let bytes = message.to_vec().expect("encodes");
        assert_eq!(least_ttl(&bytes), 60);
        let soa = SOA::new(name.clone(), name.clone(), 1, 2, 3, 4, 5);
        message.add_authority(Record::from_rdata(name, 30, RData::SOA(soa)));
        let bytes = message.to_vec().expect("encodes");
        assert_eq!(least_ttl(&bytes), 30);
        assert_eq!(cache_control(&bytes), "max-age=30");
        // Cut short, or with no records: no caching.
        assert_eq!(least_ttl(&bytes[..bytes.len() - 3]), 0);
        assert_eq!(least_ttl(&bytes[..wire::HEADER_LEN]), 0);
    }
}
