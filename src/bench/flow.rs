//! The fanout bench's tasks: receivers (the hot path), publishers, and the
//! little state they share.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{Notify, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::net::Ws;
use super::parse::{format_text, parse_delivery};
use super::stats::Histogram;

/// A publisher blocked on a full window this long without progress gives up
/// on its oldest message (a member vanished or a delivery was lost).
const STALL: Duration = Duration::from_secs(1);

/// A counter on its own cache line, written by one task and read rarely by
/// the controller, so receivers on different threads never share a line.
#[derive(Default)]
#[repr(align(64))]
pub struct Slot(pub AtomicU64);

/// State shared by all tasks of one fanout run. Receivers only touch it
/// with uncontended loads, their own [`Slot`], and (with a window) one
/// `fetch_add` per delivery on their publisher's ring.
pub struct Shared {
    pub epoch: Instant,
    /// Flow-control window per publisher (0 = none, fixed-rate mode).
    pub window: u32,
    /// Latency is recorded for messages sent at or after this (µs since
    /// `epoch`); set once before publishing starts.
    pub measure_start_us: AtomicU64,
    /// Deliveries/acks received in [start, end) count towards the rates.
    pub measure_end_us: AtomicU64,
    /// Members per room that joined and are still connected.
    pub room_live: Vec<AtomicU32>,
    /// Publishers of each room, to wake them when a member goes away.
    pub room_pubs: Vec<Vec<usize>>,
    pub pubs: Vec<PubFlow>,
    /// Deliveries so far, per receiver.
    pub progress: Vec<Slot>,
}

/// Per-publisher counters and flow-control ring.
pub struct PubFlow {
    pub room: usize,
    /// ring[c % len] counts deliveries of message c (len >= 2 × window).
    ring: Box<[AtomicU32]>,
    notify: Notify,
    pub sent: Slot,
    pub acked: Slot,
    pub failed: Slot,
}

impl Shared {
    pub fn new(rooms: usize, receivers: usize, pub_rooms: &[usize], window: u32) -> Self {
        let ring_len = (2 * window.max(1) as usize).next_power_of_two();
        let mut room_pubs = vec![Vec::new(); rooms];
        for (p, &r) in pub_rooms.iter().enumerate() {
            room_pubs[r].push(p);
        }
        Self {
            epoch: Instant::now(),
            window,
            measure_start_us: AtomicU64::new(u64::MAX),
            measure_end_us: AtomicU64::new(u64::MAX),
            room_live: (0..rooms).map(|_| AtomicU32::new(0)).collect(),
            room_pubs,
            pubs: pub_rooms
                .iter()
                .map(|&room| PubFlow {
                    room,
                    ring: (0..ring_len).map(|_| AtomicU32::new(0)).collect(),
                    notify: Notify::new(),
                    sent: Slot::default(),
                    acked: Slot::default(),
                    failed: Slot::default(),
                })
                .collect(),
            progress: (0..receivers).map(|_| Slot::default()).collect(),
        }
    }

    /// Microseconds since the shared monotonic epoch.
    #[inline]
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn at(&self, us: u64) -> tokio::time::Instant {
        (self.epoch + Duration::from_micros(us)).into()
    }

    #[inline]
    fn in_window(&self, now: u64) -> bool {
        now >= self.measure_start_us.load(Relaxed) && now < self.measure_end_us.load(Relaxed)
    }

    /// Counts one delivery of message `counter` of publisher `p` and wakes
    /// the publisher once every live member of the room has it.
    #[inline]
    fn delivered(&self, p: usize, counter: u64) {
        if let Some(pf) = self.pubs.get(p) {
            let slot = &pf.ring[counter as usize & (pf.ring.len() - 1)];
            let n = slot.fetch_add(1, AcqRel) + 1;
            if n == self.room_live[pf.room].load(Relaxed) {
                pf.notify.notify_one();
            }
        }
    }

    /// A member left early: lower its room's target and let the room's
    /// publishers re-check their windows.
    fn member_gone(&self, room: usize) {
        self.room_live[room].fetch_sub(1, AcqRel);
        for &p in &self.room_pubs[room] {
            self.pubs[p].notify.notify_one();
        }
    }
}

/// What one receiver saw.
pub struct RecvResult {
    pub deliveries: u64,
    pub in_window: u64,
    /// Frames that were not bench messages (presence, …).
    pub other: u64,
    pub hist: Histogram,
    /// Close code if the server closed the connection (0 = no code / reset).
    pub closed: Option<u16>,
}

/// The hot loop: read frames, pick out bench messages by byte scanning,
/// record latency. Everything is task-local except the progress slot and
/// (with a window) one counter per delivery.
pub async fn receive(
    mut ws: Ws,
    shared: Arc<Shared>,
    idx: usize,
    room: usize,
    mut stop: oneshot::Receiver<()>,
) -> RecvResult {
    let mut r = RecvResult { deliveries: 0, in_window: 0, other: 0, hist: Histogram::new(), closed: None };
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
                    r.hist.record(now.saturating_sub(d.sent_us));
                }
                if shared.in_window(now) {
                    r.in_window += 1;
                }
                if flow {
                    shared.delivered(d.publisher as usize, d.counter);
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

/// What one publisher saw.
#[derive(Default)]
pub struct PubResult {
    pub acked_in_window: u64,
    /// Times the window stalled for [`STALL`] and the oldest message was given up.
    pub stalls: u64,
    pub errors: HashMap<String, u64>,
    pub closed: Option<u16>,
    pub write_error: Option<String>,
}

pub struct PubParams {
    pub idx: usize,
    pub room: String,
    pub size: usize,
    /// Messages per second for this publisher; 0 = as fast as the window allows.
    pub rate: f64,
    pub start_us: u64,
    pub end_us: u64,
}

/// Runs one publisher: a reader task for acks/errors and the sending loop.
pub async fn publish(ws: Ws, shared: Arc<Shared>, p: PubParams, stop: oneshot::Receiver<()>) -> PubResult {
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
    let mask = flow.ring.len() - 1;
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
        while oldest < next && flow.ring[oldest as usize & mask].load(Acquire) >= target {
            flow.ring[oldest as usize & mask].store(0, Relaxed);
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
            flow.ring[oldest as usize & mask].store(0, Relaxed);
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
                    let target = shared.room_live[flow.room].load(Acquire);
                    flow.ring[c as usize & (flow.ring.len() - 1)].fetch_add(target, AcqRel);
                    flow.notify.notify_one();
                }
            }
            _ => {}
        }
    }
    r
}
