//! What one exchange with one server needs: the query's id and question, whether an answer
//! matches them, and the TCP exchange (one length-framed answer on a new connection; the UDP one
//! is `udp`'s). No health, no metrics beyond what the caller is told: the pool decides what a
//! result means.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::AttemptError;
use crate::wire::{self, HEADER_LEN, MAX_MESSAGE, flag};

/// What the pool needs to know about a client query, read once from its bytes.
#[derive(Debug)]
pub(crate) struct QueryInfo<'a> {
    /// The client's id, put back into the answer.
    pub(crate) id: u16,
    /// The question section (name, type, class) an answer must repeat.
    pub(crate) question: &'a [u8],
}

impl<'a> QueryInfo<'a> {
    /// Reads a client query; the error says why it cannot be forwarded.
    pub(crate) fn parse(query: &'a [u8]) -> Result<Self, &'static str> {
        if query.len() < HEADER_LEN {
            return Err("shorter than a DNS header");
        }
        if query.len() > MAX_MESSAGE {
            return Err("longer than a DNS message can be");
        }
        if wire::flags(query) & flag::QR != 0 {
            return Err("it is a response, not a query");
        }
        if wire::counts(query)[0] != 1 {
            return Err("it does not have exactly one question");
        }
        let end = wire::skip_question(query, HEADER_LEN).map_err(|_| "its question is malformed")?;
        Ok(QueryInfo {
            id: u16::from_be_bytes([query[0], query[1]]),
            question: &query[HEADER_LEN..end],
        })
    }
}

/// Whether `answer` answers the query we sent with `id` and `question`: same id, QR set, one
/// question, the same name (case-insensitively: servers may or may not keep 0x20 case), type,
/// class.
pub(crate) fn answers(question: &[u8], answer: &[u8], id: u16) -> bool {
    let Some(header) = answer.get(..HEADER_LEN) else {
        return false;
    };
    if u16::from_be_bytes([header[0], header[1]]) != id
        || wire::flags(answer) & flag::QR == 0
        || wire::counts(answer)[0] != 1
        || question.len() < 4
    {
        return false;
    }
    let Some(theirs) = answer.get(HEADER_LEN..HEADER_LEN + question.len()) else {
        return false;
    };
    // Name bytes compare without case (label lengths are below 64, so unaffected); type and
    // class exactly, since 0x41 and 0x61 are different types.
    let (name, fixed) = question.split_at(question.len() - 4);
    let (their_name, their_fixed) = theirs.split_at(name.len());
    name.eq_ignore_ascii_case(their_name) && fixed == their_fixed
}

/// Whether the answer has the TC bit.
pub(crate) fn is_truncated(answer: &[u8]) -> bool {
    wire::flags(answer) & flag::TC != 0
}

/// The response code (4 bits) of an answer.
pub(crate) fn rcode(answer: &[u8]) -> u8 {
    (wire::flags(answer) & 0x000F) as u8
}

/// Sets the id of a message in place.
pub(crate) fn set_id(message: &mut [u8], id: u16) {
    if let Some(field) = message.get_mut(..2) {
        field.copy_from_slice(&id.to_be_bytes());
    }
}

/// Sends `query` (its id already set to `id`) over a new TCP connection (RFC 1035 4.2.2: 2-byte
/// length framing) and reads one answer, within `deadline`.
pub(crate) async fn tcp(
    server: SocketAddr,
    query: &[u8],
    info: &QueryInfo<'_>,
    id: u16,
    deadline: Instant,
) -> Result<Vec<u8>, AttemptError> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
        // One write, so the length and message leave in one segment.
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let mut len = [0; 2];
        stream.read_exact(&mut len).await?;
        // At most 65535 by construction: the read is bounded.
        let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    };
    let answer = match timeout_at(deadline, exchange).await {
        Ok(result) => result?,
        Err(_) => return Err(AttemptError::Timeout),
    };
    if !answers(info.question, &answer, id) {
        return Err(AttemptError::Malformed);
    }
    Ok(answer)
}
