//! The fanout bench's publishers: a sending loop (fixed rate or windowed)
//! and a reader counting acks and errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::*;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::flow::Shared;
use super::net::Ws;
use super::parse::format_text;

/// A publisher blocked on a full window this long without progress gives up
/// on its oldest message (a member vanished or a delivery was lost).
const STALL: Duration = Duration::from_secs(1);

/// What one publisher saw.
#[derive(Default)]
pub(crate) struct PubResult {
    pub(crate) acked_in_window: u64,
    /// Times the window stalled for [`STALL`] and the oldest message was given up.
    pub(crate) stalls: u64,
    pub(crate) errors: HashMap<String, u64>,
    pub(crate) closed: Option<u16>,
    pub(crate) write_error: Option<String>,
}

pub(crate) struct PubParams {
    pub(crate) idx: usize,
    pub(crate) room: String,
    pub(crate) size: usize,
    /// Messages per second for this publisher; 0 = as fast as the window allows.
    pub(crate) rate: f64,
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
}

/// Runs one publisher: a reader task for acks/errors and the sending loop.
pub(crate) async fn publish(ws: Ws, shared: Arc<Shared>, p: PubParams, stop: oneshot::Receiver<()>) -> PubResult {
    let (mut sink, stream) = ws.split();
    let reader = tokio::spawn(read_acks(stream, shared.clone(), p.idx, stop));
    let sent = if p.rate > 0.0 {
        send_at_rate(&mut sink, &shared, &p).await
    } else {
        send_windowed(&mut sink, &shared, &p).await
    };
    let mut res = reader.await.unwrap_or_default();
    match sent {
        Ok(stalls) => res.stalls = stalls,
        Err(e) => res.write_error = Some(e.to_string()),
    }
    res
}

/// Window stalls, or the write error that ended sending.
type SendOutcome = Result<u64, tokio_tungstenite::tungstenite::Error>;

struct Frames {
    text: String,
    frame: String,
    room_json: String,
}

impl Frames {
    fn new(room: &str) -> Self {
        Self { text: String::new(), frame: String::new(), room_json: serde_json::to_string(room).unwrap_or_default() }
    }

    /// The `say` frame for message `counter`, stamped with the current time.
    fn say(&mut self, shared: &Shared, p: &PubParams, counter: u64) -> Message {
        use std::fmt::Write as _;
        format_text(&mut self.text, p.idx, counter, shared.now_us(), p.size);
        self.frame.clear();
        let _ =
            write!(self.frame, r#"{{"type":"say","id":{counter},"room":{},"text":"{}"}}"#, self.room_json, self.text);
        Message::text(self.frame.as_str())
    }
}

/// Fixed rate: message k is due at start + k/rate; late ones go out in a
/// burst so the average rate holds.
async fn send_at_rate(sink: &mut SplitSink<Ws, Message>, shared: &Shared, p: &PubParams) -> SendOutcome {
    let flow = &shared.pubs[p.idx];
    let interval = 1e6 / p.rate;
    let mut frames = Frames::new(&p.room);
    let mut next = 0u64;
    loop {
        let now = shared.now_us();
        if now >= p.end_us {
            return Ok(0);
        }
        let mut fed = false;
        loop {
            let due = p.start_us + (next as f64 * interval) as u64;
            if due > now || due >= p.end_us {
                let wake = due.min(p.end_us);
                if fed {
                    sink.flush().await?;
                }
                tokio::time::sleep_until(shared.at(wake)).await;
                break;
            }
            let msg = frames.say(shared, p, next);
            sink.feed(msg).await?;
            next += 1;
            flow.sent.0.store(next, Relaxed);
            fed = true;
        }
    }
}

/// As fast as possible with at most `window` messages not yet delivered to
/// every live member of the room.
async fn send_windowed(sink: &mut SplitSink<Ws, Message>, shared: &Shared, p: &PubParams) -> SendOutcome {
    let flow = &shared.pubs[p.idx];
    let window = u64::from(shared.window);
    let live = &shared.room_live[flow.room];
    let mut frames = Frames::new(&p.room);
    let (mut next, mut oldest, mut stalls) = (0u64, 0u64, 0u64);
    tokio::time::sleep_until(shared.at(p.start_us)).await;
    loop {
        let now = shared.now_us();
        if now >= p.end_us {
            return Ok(stalls);
        }
        let target = live.load(Acquire);
        while oldest < next && flow.complete(oldest, target) {
            oldest += 1;
        }
        if next - oldest < window {
            while next - oldest < window {
                let msg = frames.say(shared, p, next);
                sink.feed(msg).await?;
                next += 1;
            }
            flow.sent.0.store(next, Relaxed);
            sink.flush().await?;
            continue;
        }
        let wait = Duration::from_micros(p.end_us - now).min(STALL);
        if tokio::time::timeout(wait, flow.notify.notified()).await.is_err() && wait == STALL {
            // No progress for STALL: give up on the oldest message.
            stalls += 1;
            flow.abandon(oldest);
            oldest += 1;
        }
    }
}

/// Counts the publisher's acks and errors. A failed `say` (e.g.
/// `rate_limited`) will never be delivered, so its window slot is filled.
async fn read_acks(
    mut stream: SplitStream<Ws>,
    shared: Arc<Shared>,
    idx: usize,
    mut stop: oneshot::Receiver<()>,
) -> PubResult {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(rename = "type", borrow)]
        t: &'a str,
        id: Option<serde_json::Value>,
        code: Option<String>,
    }
    let flow = &shared.pubs[idx];
    let mut r = PubResult::default();
    let (mut acked, mut failed) = (0, 0);
    loop {
        let msg = tokio::select! {
            biased;
            m = stream.next() => m,
            _ = &mut stop => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                r.closed = Some(f.map_or(0, |f| u16::from(f.code)));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => {
                r.closed = Some(0);
                break;
            }
        };
        let Ok(reply) = serde_json::from_str::<Reply<'_>>(&text) else {
            continue;
        };
        match reply.t {
            "ack" => {
                acked += 1;
                flow.acked.0.store(acked, Relaxed);
                if shared.in_window(shared.now_us()) {
                    r.acked_in_window += 1;
                }
            }
            "error" => {
                failed += 1;
                flow.failed.0.store(failed, Relaxed);
                *r.errors.entry(reply.code.unwrap_or_default()).or_default() += 1;
                if let Some(c) = reply.id.and_then(|v| v.as_u64()) {
                    flow.failed_message(c, shared.room_live[flow.room].load(Acquire));
                }
            }
            _ => {}
        }
    }
    r
}
