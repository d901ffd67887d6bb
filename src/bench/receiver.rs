//! The fanout bench's receivers: the hot path.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::flow::Shared;
use super::net::Ws;
use super::parse::parse_delivery;
use super::stats::Histogram;

/// What one receiver saw.
pub(crate) struct RecvResult {
    pub(crate) deliveries: u64,
    pub(crate) in_window: u64,
    /// Frames that were not bench messages (presence, …).
    pub(crate) other: u64,
    /// Latency of every delivery, or with several nodes of those from a
    /// publisher on this member's node.
    pub(crate) hist: Histogram,
    /// With several nodes: latency of deliveries from a publisher on another node.
    pub(crate) cross: Option<Histogram>,
    /// Close code if the server closed the connection (0 = no code / reset).
    pub(crate) closed: Option<u16>,
}

/// The hot loop: read frames, pick out bench messages by byte scanning,
/// record latency. Everything is task-local except the progress slot and
/// (with a window) one counter per delivery.
pub(crate) async fn receive(
    mut ws: Ws,
    shared: Arc<Shared>,
    idx: usize,
    room: usize,
    node: usize,
    mut stop: oneshot::Receiver<()>,
) -> RecvResult {
    let mut r = RecvResult { deliveries: 0, in_window: 0, other: 0, hist: Histogram::new(), cross: None, closed: None };
    if !shared.pub_node.is_empty() {
        r.cross = Some(Histogram::new());
    }
    let flow = shared.window > 0;
    loop {
        // biased: the stop signal is only polled when no frame is ready.
        let msg = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = &mut stop => break,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                let Some(d) = parse_delivery(t.as_bytes()) else {
                    r.other += 1;
                    continue;
                };
                let now = shared.now_us();
                r.deliveries += 1;
                shared.progress[idx].0.store(r.deliveries, Relaxed);
                if d.sent_us >= shared.measure_start_us.load(Relaxed) {
                    let micros = now.saturating_sub(d.sent_us);
                    match &mut r.cross {
                        Some(c) if shared.pub_node.get(d.publisher as usize) != Some(&node) => c.record(micros),
                        _ => r.hist.record(micros),
                    }
                }
                if shared.in_window(now) {
                    r.in_window += 1;
                }
                if flow {
                    shared.count_delivery(d.publisher as usize, d.counter);
                }
            }
            Some(Ok(Message::Close(f))) => {
                r.closed = Some(f.map_or(0, |f| u16::from(f.code)));
                break;
            }
            Some(Ok(_)) => r.other += 1,
            Some(Err(_)) | None => {
                r.closed = Some(0);
                break;
            }
        }
    }
    if r.closed.is_some() {
        shared.member_gone(room);
    }
    r
}
