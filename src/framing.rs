//! DNS over TCP framing (RFC 1035 4.2.2, RFC 7766): each message preceded by its length in two
//! bytes. Used by the TCP listener (client queries) and the upstream TCP connections (answers).
//!
//! [`FrameReader::next`] is cancel-safe: it keeps what it has read in its own buffer, so a
//! `select!` that drops it half-way through a message (a timeout, a shutdown) loses nothing, and
//! the next call goes on where that one stopped. Its buffer is one message at most (64 KiB),
//! allocated once per connection and grown only as far as the longest message seen.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest message a two-byte length can announce.
const MAX_FRAME: usize = u16::MAX as usize;
/// What the buffer starts with: room for the typical query or answer and its prefix.
const INITIAL: usize = 1024;

/// Reads length-prefixed messages from a stream, one at a time.
#[derive(Debug)]
pub struct FrameReader {
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
    pub fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; INITIAL],
            filled: 0,
            consumed: 0,
        }
    }

    /// Whether part of a message has been read: a stream that ends or times out now ends in the
    /// middle of one.
    pub fn is_mid_frame(&self) -> bool {
        self.filled > self.consumed
    }

    /// The next message, without its length prefix; `Ok(None)` when the stream ends cleanly
    /// between two messages, an `UnexpectedEof` error when it ends inside one.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<Option<&[u8]>> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
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
            let n = stream.read(&mut self.buf[self.filled..]).await?;
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
pub fn framed(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
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

    #[tokio::test]
    async fn a_clean_end_between_messages_is_none() {
        let (client, mut server) = tokio::io::duplex(64);
        drop(client);
        assert!(FrameReader::new().next(&mut server).await.unwrap().is_none());
        assert!(framed(&vec![0; 70_000]).is_none());
    }
}
