//! Writes a batch of queued frames to the socket as WebSocket text frames,
//! straight from the shared frame bytes: one vectored `write` for many
//! frames, no copy into a per-connection buffer (tungstenite would copy
//! each frame into its write buffer, and that buffer keeps the capacity of
//! the largest batch for the connection's whole life).
//!
//! Server frames are not masked, so a data frame is a 2–10 byte header and
//! the payload as it is. Only data frames go this way; pings, pongs and
//! the close frame still go through tungstenite, and the two never
//! interleave: the outbox first flushes whatever tungstenite has pending,
//! and while a batch is being written the socket under tungstenite is a
//! closed [`Gate`] (tungstenite, which answers a peer's ping while it
//! reads, sees "would block" and answers after the batch). The connection
//! keeps reading meanwhile.
//!
//! [`Outbox::write`] is cancel-safe: it keeps its progress, so a write
//! interrupted by a close resumes where it stopped, and the close frame
//! still lands after whole frames.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::Sink;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;

use super::Socket;
use crate::protocol::server::Frame;

/// Frames gathered into one vectored write (two slices each).
const FRAMES_PER_WRITE: usize = 64;

/// The batch being written, and how far it got.
#[derive(Default)]
pub(super) struct Outbox {
    frames: Vec<Frame>,
    /// The first frame not wholly written.
    next: usize,
    /// Bytes of `frames[next]` (header and payload) already written.
    done: usize,
    /// Whether tungstenite's own pending bytes were flushed for this batch.
    flushed: bool,
}

impl Outbox {
    pub(super) fn is_empty(&self) -> bool {
        self.next == self.frames.len()
    }

    /// Takes a batch to write; the outbox must be empty.
    pub(super) fn fill(&mut self, frames: Vec<Frame>) {
        debug_assert!(self.is_empty());
        *self = Outbox { frames, ..Outbox::default() };
    }

    /// Adds frames after those already here (the close path).
    pub(super) fn extend(&mut self, frames: impl IntoIterator<Item = Frame>) {
        if self.is_empty() {
            *self = Outbox::default();
        }
        self.frames.extend(frames);
    }

    /// Forgets every frame not yet started: a frame partly written must be
    /// finished (the stream would be broken otherwise), the rest may go.
    pub(super) fn keep_started(&mut self) {
        let keep = self.next + usize::from(self.done > 0);
        self.frames.truncate(keep.min(self.frames.len()));
    }

    /// Writes everything held; returns the payload bytes written.
    pub(super) async fn write(&mut self, socket: &mut Socket) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write(socket, cx)).await
    }

    pub(super) fn poll_write(&mut self, socket: &mut Socket, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.flushed {
            // Whatever tungstenite wrote last (a pong) goes out first.
            ready!(Pin::new(&mut *socket).poll_flush(cx)).map_err(io::Error::other)?;
            self.flushed = true;
            socket.get_mut().busy = true;
        }
        let gate = socket.get_mut();
        let mut io = Pin::new(&mut gate.io);
        while !self.is_empty() {
            let mut heads = [[0u8; 10]; FRAMES_PER_WRITE];
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let end = self.frames.len().min(self.next + FRAMES_PER_WRITE);
            let mut n = 0;
            for (i, (frame, head)) in self.frames[self.next..end].iter().zip(heads.iter_mut()).enumerate() {
                let head_len = header(head, frame.len());
                let skip = if i == 0 { self.done } else { 0 };
                if skip < head_len {
                    slices[n] = IoSlice::new(&head[skip..head_len]);
                    slices[n + 1] = IoSlice::new(frame.as_bytes());
                } else {
                    slices[n] = IoSlice::new(&frame.as_bytes()[skip - head_len..]);
                }
                n += if skip < head_len { 2 } else { 1 };
            }
            let written = match ready!(io.as_mut().poll_write_vectored(cx, &slices[..n])) {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                r => r,
            };
            match written {
                Ok(written) => self.advance(written),
                Err(e) => {
                    gate.busy = false;
                    return Poll::Ready(Err(e));
                }
            }
        }
        gate.busy = false;
        ready!(io.poll_flush(cx))?;
        let bytes = self.frames.iter().map(|f| f.len()).sum();
        // Drop the batch (and its Vec): an idle connection holds nothing.
        *self = Outbox::default();
        Poll::Ready(Ok(bytes))
    }

    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let frame = &self.frames[self.next];
            let total = header(&mut [0; 10], frame.len()) + frame.len();
            let left = total - self.done;
            if written < left {
                self.done += written;
                return;
            }
            written -= left;
            self.next += 1;
            self.done = 0;
        }
    }
}

/// The socket under tungstenite: closed to tungstenite's writes while the
/// outbox writes a batch, so that nothing lands inside a frame.
pub(super) struct Gate {
    io: TokioIo<hyper::upgrade::Upgraded>,
    busy: bool,
}

impl Gate {
    pub(super) fn new(io: TokioIo<hyper::upgrade::Upgraded>) -> Gate {
        Gate { io, busy: false }
    }
}

impl AsyncRead for Gate {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gate {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.busy {
            // tungstenite takes this as "would block" and tries again on
            // its next read or write; the outbox flushes it after the batch.
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.busy {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Writes the header of an unmasked, final text frame of `len` bytes;
/// returns its length.
fn header(head: &mut [u8; 10], len: usize) -> usize {
    head[0] = 0x81;
    if len < 126 {
        head[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        head[1] = 126;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// A text message for tungstenite (the hello phase's replies, the shutdown
/// notice): a copy, on paths that are not hot.
pub(super) fn text(frame: &Frame) -> Message {
    Message::text(&**frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    /// Our headers parse as tungstenite reads them.
    #[test]
    fn headers_are_what_tungstenite_reads() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let mut head = [0u8; 10];
            let n = header(&mut head, len);
            let mut cursor = std::io::Cursor::new(&head[..n]);
            let (parsed, parsed_len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(parsed.is_final && parsed.mask.is_none(), "len {len}");
            assert_eq!(parsed_len, len as u64, "len {len}");
            assert_eq!(cursor.position() as usize, n, "len {len}");
        }
    }

    /// A batch written in pieces of every size ends as the same bytes.
    #[test]
    fn advance_keeps_frame_boundaries() {
        let frames: Vec<Frame> =
            ["a", &"b".repeat(200), "", &"c".repeat(70_000)].iter().map(|s| Frame::from_json(s.to_string())).collect();
        let total: usize = frames.iter().map(|f| header(&mut [0; 10], f.len()) + f.len()).sum();
        for step in [1, 2, 3, 7, 100, 4096, total] {
            let mut o = Outbox::default();
            o.fill(frames.clone());
            let mut left = total;
            while left > 0 {
                let w = step.min(left);
                o.advance(w);
                left -= w;
            }
            assert!(o.is_empty(), "step {step}");
        }
        let mut o = Outbox::default();
        o.fill(frames.clone());
        o.advance(4);
        o.keep_started();
        assert_eq!((o.frames.len(), o.next, o.done), (2, 1, 1), "the started second frame stays");
    }
}
