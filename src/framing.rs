//! DNS over TCP framing (RFC 1035 4.2.2, RFC 7766): each message preceded by its length in two
//! bytes. Used by the TCP listener (client queries) and the upstream TCP connections (answers).
//!
//! [`FrameReader::next`] is cancel-safe: it keeps what it has read in its own buffer, so a
//! `select!` that drops it half-way through a message (a timeout, a shutdown) loses nothing, and
//! the next call goes on where that one stopped. Its buffer is one message at most (64 KiB),
//! allocated once per connection and grown only as far as the longest message seen.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The largest message a two-byte length can announce.
const MAX_FRAME: usize = u16::MAX as usize;
/// What the buffer starts with: room for the typical query or answer and its prefix.
const INITIAL: usize = 1024;

/// Reads length-prefixed messages from a stream, one at a time.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// Bytes read and not yet handed out: at most one prefix and message (and a few bytes of the
    /// next one).
    buf: Vec<u8>,
    /// How many bytes of `buf` hold data.
    filled: usize,
    /// Where the next frame starts in `buf`: the previous one is handed out but not yet dropped
    /// (it is dropped at the start of the next call, so `next` can return a borrow).
    consumed: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

impl FrameReader {
    /// A reader with an empty buffer.
    pub(crate) fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; INITIAL],
            filled: 0,
            consumed: 0,
        }
    }

    /// Whether part of a message has been read: a stream that ends or times out now ends in the
    /// middle of one.
    pub(crate) fn is_mid_frame(&self) -> bool {
        self.filled > self.consumed
    }

    /// The next message, without its length prefix; `Ok(None)` when the stream ends cleanly
    /// between two messages, an `UnexpectedEof` error when it ends inside one.
    pub(crate) async fn next<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<Option<&[u8]>> {
        self.next_within(stream, None).await
    }

    /// Like [`FrameReader::next`], with two time limits, as a server sets them for its
    /// clients: `idle` for the first byte of a message to come, then `rest` for the rest of it
    /// to follow (a client that starts a message and stalls is cut off sooner than one that is
    /// quiet between messages). Past either, a `TimedOut` error: [`FrameReader::is_mid_frame`]
    /// tells which.
    pub(crate) async fn next_timed<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        idle: Duration,
        rest: Duration,
    ) -> io::Result<Option<&[u8]>> {
        self.next_within(stream, Some((idle, rest))).await
    }

    async fn next_within<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        limits: Option<(Duration, Duration)>,
    ) -> io::Result<Option<&[u8]>> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        let now = Instant::now();
        let mut deadline = limits.map(|(idle, rest)| now + if self.filled > 0 { rest } else { idle });
        loop {
            if let Some(len) = self.complete() {
                self.consumed = 2 + len;
                return Ok(Some(&self.buf[2..2 + len]));
            }
            let want = match self.announced() {
                Some(len) => 2 + len,
                None => 2,
            };
            if self.buf.len() < want {
                self.buf.resize(want.min(2 + MAX_FRAME), 0);
            }
            // Reads into our own buffer: if this future is dropped here, nothing read is lost.
            let read = stream.read(&mut self.buf[self.filled..]);
            let n = match deadline {
                Some(at) => match tokio::time::timeout_at(at, read).await {
                    Ok(n) => n?,
                    Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no message in time")),
                },
                None => read.await?,
            };
            if n == 0 {
                return if self.filled == 0 {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a message",
                    ))
                };
            }
            if self.filled == 0
                && let Some((_, rest)) = limits
            {
                // The message has started: the rest of it must follow within `rest`.
                deadline = Some(Instant::now() + rest);
            }
            self.filled += n;
        }
    }

    /// The length the prefix announces, once it is in.
    fn announced(&self) -> Option<usize> {
        (self.filled >= 2).then(|| usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]])))
    }

    /// The length of the message at the front, when all of it is in.
    fn complete(&self) -> Option<usize> {
        self.announced().filter(|&len| self.filled >= 2 + len)
    }
}

/// `message` with its two-byte length prefix, as one buffer: written in one call, so that prefix
/// and message leave in one segment. None for a message longer than a prefix can announce.
pub(crate) fn framed(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_messages_split_and_joined_anyhow_and_survives_cancellation() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new();
        // Two messages, the first cut at every awkward place, the second joined to its end.
        let mut bytes = framed(b"first message").unwrap();
        bytes.extend(framed(&[7; 3000]).unwrap());
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(5) {
                client.write_all(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client
        });
        // A timeout that keeps cancelling the read half-way loses nothing.
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Ok(frame) = tokio::time::timeout(Duration::from_millis(2), reader.next(&mut server)).await {
                got.push(frame.unwrap().unwrap().to_vec());
            }
        }
        assert_eq!(got[0], b"first message");
        assert_eq!(got[1], vec![7; 3000]);
        assert!(!reader.is_mid_frame());
        let mut client = writer.await.unwrap();
        client.write_all(&[0, 5, 1]).await.unwrap();
        drop(client);
        let error = reader.next(&mut server).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_message_must_be_finished_sooner_than_the_next_one_must_start() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new();
        let (idle, rest) = (Duration::from_secs(30), Duration::from_secs(2));
        client.write_all(&framed(b"one").unwrap()).await.unwrap();
        assert_eq!(
            reader.next_timed(&mut server, idle, rest).await.unwrap().unwrap(),
            b"one"
        );
        // Quiet for 20 s between messages: fine.
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client.write_all(&[0, 9, 1]).await.unwrap();
            client
        });
        let error = reader.next_timed(&mut server, idle, rest).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(reader.is_mid_frame(), "timed out inside a message");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(22),
            "2 s after the message began"
        );
        drop(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_clean_end_between_messages_is_none() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(FrameReader::new().next(&mut server).await.unwrap().is_none());
        assert!(framed(&vec![0; 70_000]).is_none());
    }
}
