//! A session's outbound queue: the hub pushes frames into it without ever
//! waiting; the session's connection takes everything queued at once.
//!
//! It lives inside the [`SessionHandle`](super::SessionHandle) (no
//! allocation of its own), and an idle session's queue holds no buffer:
//! taking the frames takes the `Vec` with them. (A tokio `mpsc` channel cost
//! ~800 bytes per session up front: its shared state with cache-padded
//! fields and a first block of 32 slots.)

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::SessionHandle;
use crate::protocol::server::Frame;

#[derive(Debug, Default)]
pub(super) struct Queue {
    frames: Vec<Frame>,
    waker: Option<Waker>,
    closed: bool,
}

/// Why a frame was not queued.
pub(super) enum Refused {
    /// `limits.outbound_queue` frames are waiting already.
    Full,
    /// The receiver closed the queue (the connection is ending).
    Closed,
}

impl Queue {
    pub(super) fn push(queue: &Mutex<Queue>, frame: Frame, cap: usize) -> Result<(), Refused> {
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.closed {
            return Err(Refused::Closed);
        }
        if q.frames.len() >= cap {
            return Err(Refused::Full);
        }
        q.frames.push(frame);
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

/// The receiving end, held by the session's connection.
pub struct Outbound(pub(super) Arc<SessionHandle>);

impl Outbound {
    /// Everything queued, in order, once there is something (a batch).
    pub async fn recv(&mut self) -> Vec<Frame> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Vec<Frame>> {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !q.frames.is_empty() {
            return Poll::Ready(std::mem::take(&mut q.frames));
        }
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            q.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Closes the queue (later frames are refused) and takes what is in it.
    pub fn close(&mut self) -> Vec<Frame> {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.closed = true;
        q.waker = None;
        std::mem::take(&mut q.frames)
    }
}
