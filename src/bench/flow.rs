//! State shared by the fanout bench's tasks, and the flow-control window:
//! per-publisher rings counting each in-flight message's deliveries.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A counter on its own cache line, written by one task and read rarely by
/// the controller, so receivers on different threads never share a line.
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct Slot(pub AtomicU64);

/// State shared by all tasks of one fanout run. Receivers only touch it
/// with uncontended loads, their own [`Slot`], and (with a window) one
/// `fetch_add` per delivery on their publisher's ring.
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    /// Flow-control window per publisher (0 = none, fixed-rate mode).
    pub(crate) window: u32,
    /// Latency is recorded for messages sent at or after this (µs since
    /// `epoch`); set once before publishing starts.
    pub(crate) measure_start_us: AtomicU64,
    /// Deliveries/acks received in [start, end) count towards the rates.
    pub(crate) measure_end_us: AtomicU64,
    /// Members per room that joined and are still connected.
    pub(crate) room_live: Vec<AtomicU32>,
    /// Publishers of each room, to wake them when a member goes away.
    pub(crate) room_pubs: Vec<Vec<usize>>,
    pub(crate) pubs: Vec<PubFlow>,
    /// Deliveries so far, per receiver.
    pub(crate) progress: Vec<Slot>,
    /// With several nodes: the node (index into `--url`, `usize::MAX` for
    /// none of them) each publisher is connected to. Empty = one node.
    pub(crate) pub_node: Vec<usize>,
}

/// Per-publisher counters and flow-control ring.
pub(crate) struct PubFlow {
    pub(crate) room: usize,
    /// ring[c % len] counts deliveries of message c (len >= 2 × window).
    ring: Box<[AtomicU32]>,
    /// Woken when a message completes or a member of the room goes away.
    pub(crate) notify: Notify,
    pub(crate) sent: Slot,
    pub(crate) acked: Slot,
    pub(crate) failed: Slot,
}

impl Shared {
    pub(crate) fn new(rooms: usize, receivers: usize, pub_rooms: &[usize], window: u32) -> Self {
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
            pub_node: Vec::new(),
        }
    }

    /// Deliveries so far, over all receivers.
    pub(crate) fn delivered(&self) -> u64 {
        self.progress.iter().map(|s| s.0.load(Relaxed)).sum()
    }

    /// Messages (sent, acked, failed) so far, over all publishers.
    pub(crate) fn pub_totals(&self) -> (u64, u64, u64) {
        self.pubs.iter().fold((0, 0, 0), |(s, a, f), p| {
            (s + p.sent.0.load(Relaxed), a + p.acked.0.load(Relaxed), f + p.failed.0.load(Relaxed))
        })
    }

    /// Microseconds since the shared monotonic epoch.
    #[inline]
    pub(crate) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub(crate) fn at(&self, us: u64) -> tokio::time::Instant {
        (self.epoch + Duration::from_micros(us)).into()
    }

    #[inline]
    pub(crate) fn in_window(&self, now: u64) -> bool {
        now >= self.measure_start_us.load(Relaxed) && now < self.measure_end_us.load(Relaxed)
    }

    /// Counts one delivery of message `counter` of publisher `p` and wakes
    /// the publisher once every live member of the room has it.
    #[inline]
    pub(crate) fn count_delivery(&self, p: usize, counter: u64) {
        if let Some(pf) = self.pubs.get(p) {
            let n = pf.slot(counter).fetch_add(1, AcqRel) + 1;
            if n == self.room_live[pf.room].load(Relaxed) {
                pf.notify.notify_one();
            }
        }
    }

    /// A member left early: lower its room's target and let the room's
    /// publishers re-check their windows.
    pub(crate) fn member_gone(&self, room: usize) {
        self.room_live[room].fetch_sub(1, AcqRel);
        for &p in &self.room_pubs[room] {
            self.pubs[p].notify.notify_one();
        }
    }
}

impl PubFlow {
    fn slot(&self, counter: u64) -> &AtomicU32 {
        &self.ring[counter as usize & (self.ring.len() - 1)]
    }

    /// True (and the slot is cleared for reuse) once message `counter` has
    /// reached `target` deliveries.
    pub(crate) fn complete(&self, counter: u64, target: u32) -> bool {
        let slot = self.slot(counter);
        let done = slot.load(Acquire) >= target;
        if done {
            slot.store(0, Relaxed);
        }
        done
    }

    /// Gives up on message `counter` (stalled): clears its slot.
    pub(crate) fn abandon(&self, counter: u64) {
        self.slot(counter).store(0, Relaxed);
    }

    /// Message `counter` failed (error reply) and will never be delivered:
    /// count it as delivered to all `target` members.
    pub(crate) fn failed_message(&self, counter: u64, target: u32) {
        self.slot(counter).fetch_add(target, AcqRel);
        self.notify.notify_one();
    }
}
