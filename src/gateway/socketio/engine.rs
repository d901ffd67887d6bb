//! Engine.IO v4, the transport under Socket.IO: one connection's shared
//! state ([`Engine`]: its packets waiting to go out, its close signal, its
//! heartbeat) and the packets' text form, the only place it appears.
//!
//! A packet is one character of type and its data: `0` open (server only),
//! `1` close, `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop. Over
//! WebSocket each is one frame (binary frames are binary messages); over
//! long-polling a request or response body holds several, separated by
//! `\x1e`, a binary one as `b` and its base64.
//!
//! The packets waiting to go out are one queue, bounded in messages
//! (`socketio.buffer`) and in bytes (`limits.outbound_bytes`), whichever
//! transport carries them: a `GET` takes them (polling), or the
//! connection's WebSocket task writes them (their bytes count until
//! written); after an upgrade the WebSocket takes what polling left. Full
//! means a slow consumer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Conn;

/// The packet separator in a polling body.
pub(super) const SEPARATOR: char = '\x1e';

/// Which transport carries the connection.
const POLLING: u8 = 0;
/// A WebSocket asked to take over, and has not sent `2probe` yet: polling
/// goes on; no other WebSocket may ask.
const PROBING: u8 = 1;
/// Probed by a WebSocket: polling `GET`s get a noop at once.
const UPGRADING: u8 = 2;
const WEBSOCKET: u8 = 3;

/// One Engine.IO connection.
pub(crate) struct Engine {
    pub(super) sid: Box<str>,
    /// The Socket.IO state over it (namespace connections, caps).
    pub(super) data: Conn,
    out: Mutex<Out>,
    /// Most messages `out` holds; control packets pass over it.
    capacity: usize,
    /// Most bytes `out` holds (and a WebSocket's batch being written); one
    /// message larger than that still goes to an empty queue.
    max_bytes: usize,
    /// Something was queued (or the transport changed).
    pub(super) wake: Notify,
    closed: CancellationToken,
    transport: AtomicU8,
    /// A polling `GET` is waiting.
    pub(super) polling: AtomicBool,
    /// A polling `POST` is being read or handled.
    pub(super) posting: AtomicBool,
    /// A pong (or any ping) came since the last ping.
    pub(super) pong: AtomicBool,
}

/// The packets waiting to go out, and their bytes (with those of a
/// WebSocket batch taken and not yet written).
#[derive(Default)]
struct Out {
    q: VecDeque<String>,
    bytes: usize,
}

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Full {
    /// The buffer is full: a slow consumer.
    Full,
}

impl Engine {
    pub(super) fn new(sid: String, capacity: usize, max_bytes: usize, websocket: bool) -> Engine {
        Engine {
            sid: sid.into_boxed_str(),
            data: Conn::default(),
            out: Mutex::default(),
            capacity,
            max_bytes,
            wake: Notify::new(),
            closed: CancellationToken::new(),
            transport: AtomicU8::new(if websocket { WEBSOCKET } else { POLLING }),
            polling: AtomicBool::new(false),
            posting: AtomicBool::new(false),
            pong: AtomicBool::new(true),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A short tag for logs: the `sid` is a bearer secret (whoever knows
    /// it can poll the connection), so it is never logged itself.
    pub(super) fn tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.sid.hash(&mut h);
        format!("{:08x}", h.finish() as u32)
    }

    /// Queues a Socket.IO packet as an Engine.IO message. A connection that
    /// is closed takes nothing, silently.
    pub(super) fn emit(&self, mut packet: String) -> Result<(), Full> {
        if self.is_closed() {
            return Ok(());
        }
        let mut out = self.queue();
        let len = packet.len() + 1;
        if out.q.len() >= self.capacity || (out.bytes > 0 && out.bytes.saturating_add(len) > self.max_bytes) {
            return Err(Full::Full);
        }
        // The codec leaves room: this seldom reallocates.
        packet.insert(0, '4');
        out.q.push_back(packet);
        out.bytes += len;
        drop(out);
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a control packet (ping, noop), past the buffer's bound: the
    /// heartbeat and the upgrade queue one at a time.
    pub(super) fn control(&self, packet: &'static str) {
        let mut out = self.queue();
        out.q.push_back(packet.to_owned());
        out.bytes += packet.len();
        drop(out);
        self.wake.notify_one();
    }

    /// Everything queued, oldest first, and its bytes; they count until
    /// [`written`](Self::written) says they are gone.
    pub(super) fn take_all(&self) -> (VecDeque<String>, usize) {
        let q = std::mem::take(&mut self.queue().q);
        let bytes = q.iter().map(String::len).sum();
        (q, bytes)
    }

    /// A batch from [`take_all`](Self::take_all) was written (or dropped).
    pub(super) fn written(&self, bytes: usize) {
        let mut out = self.queue();
        out.bytes = out.bytes.saturating_sub(bytes);
    }

    /// Whether nothing is queued.
    pub(super) fn drained(&self) -> bool {
        self.queue().q.is_empty()
    }

    /// A polling response body: the queued packets joined by `\x1e`, as
    /// many as fit `max` bytes (at least one); `None` if none is queued.
    pub(super) fn take_payload(&self, max: usize) -> Option<String> {
        let mut out = self.queue();
        let first = out.q.pop_front()?;
        let mut taken = first.len();
        let mut body = first;
        while let Some(next) = out.q.front() {
            if body.len() + 1 + next.len() > max {
                break;
            }
            taken += next.len();
            body.push(SEPARATOR);
            body.push_str(next);
            out.q.pop_front();
        }
        out.bytes = out.bytes.saturating_sub(taken);
        if out.q.is_empty() {
            // An idle connection holds no buffer.
            out.q = VecDeque::new();
        }
        Some(body)
    }

    /// Ends the connection: its transport stops (a WebSocket writes what is
    /// queued first, briefly), the Socket.IO side sees it end.
    pub(super) fn close(&self) {
        self.closed.cancel();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub(super) fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.closed.cancelled()
    }

    pub(super) fn is_websocket(&self) -> bool {
        self.transport.load(Ordering::Acquire) == WEBSOCKET
    }

    pub(super) fn is_upgrading(&self) -> bool {
        self.transport.load(Ordering::Acquire) == UPGRADING
    }

    /// A WebSocket asks to take this polling connection over: `false` if
    /// one already does (or did).
    pub(super) fn start_probe(&self) -> bool {
        self.transport.compare_exchange(POLLING, PROBING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The probing WebSocket failed before `2probe`: polling it stays, and
    /// another WebSocket may ask.
    pub(super) fn probe_failed(&self) {
        let _ = self.transport.compare_exchange(PROBING, POLLING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The probing WebSocket sent `2probe`: polling pauses (`false` if the
    /// connection is not probing).
    pub(super) fn start_upgrade(&self) -> bool {
        self.transport.compare_exchange(PROBING, UPGRADING, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The client sent `5`: the WebSocket carries everything from now on.
    pub(super) fn upgraded(&self) {
        self.transport.store(WEBSOCKET, Ordering::Release);
        self.wake.notify_one();
    }
}

/// A new connection's id: 80 random bits (and the time), URL-safe.
pub(super) fn new_sid() -> String {
    ulid::Ulid::generate().to_string()
}

/// The open packet: the connection's id and the heartbeat and size rules.
pub(super) fn open_packet(
    sid: &str,
    upgrades: bool,
    ping_interval_ms: u128,
    ping_timeout_ms: u128,
    max: u64,
) -> String {
    let upgrades: &[&str] = if upgrades { &["websocket"] } else { &[] };
    let open = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms as u64,
        "pingTimeout": ping_timeout_ms as u64,
        "maxPayload": max,
    });
    format!("0{open}")
}

/// One packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Packet<'a> {
    Close,
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

/// Why a client's packet is not Engine.IO.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed(pub(super) &'static str);

/// Decodes one text packet (a WebSocket text frame, a polling record).
pub(super) fn decode(text: &str) -> Result<Packet<'_>, Malformed> {
    let Some(&kind) = text.as_bytes().first() else { return Err(Malformed("empty packet")) };
    if !kind.is_ascii() {
        return Err(Malformed("unknown packet type"));
    }
    // The type is one ASCII byte, so the rest starts on a char boundary.
    let data = &text[1..];
    match kind {
        b'1' if data.is_empty() => Ok(Packet::Close),
        b'2' => Ok(Packet::Ping(data)),
        b'3' => Ok(Packet::Pong(data)),
        b'4' => Ok(Packet::Message(data)),
        b'5' if data.is_empty() => Ok(Packet::Upgrade),
        b'6' if data.is_empty() => Ok(Packet::Noop),
        b'b' => base64::engine::general_purpose::STANDARD
            .decode(data)
            .map(Packet::Binary)
            .map_err(|_| Malformed("bad base64 in a binary packet")),
        b'0' => Err(Malformed("open is the server's packet")),
        _ => Err(Malformed("unknown packet type")),
    }
}

/// Decodes a polling request body: its packets, in order; the first
/// malformed one ends the list (the connection is closed then).
pub(super) fn decode_payload(body: &str) -> impl Iterator<Item = Result<Packet<'_>, Malformed>> {
    body.split(SEPARATOR).map(decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_packets() {
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(decode("3"), Ok(Packet::Pong("")));
        assert_eq!(decode("42[\"a\"]"), Ok(Packet::Message("2[\"a\"]")));
        assert_eq!(decode("4"), Ok(Packet::Message("")));
        assert_eq!(decode("5"), Ok(Packet::Upgrade));
        assert_eq!(decode("6"), Ok(Packet::Noop));
        assert_eq!(decode("bAQID"), Ok(Packet::Binary(vec![1, 2, 3])));
        for bad in ["", "0{}", "7", "x", "b!!", "1x", "5x", "é"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decodes_payloads() {
        let p: Vec<_> = decode_payload("42[\"a\"]\x1e3\x1ebAQ==").collect();
        assert_eq!(p, vec![Ok(Packet::Message("2[\"a\"]")), Ok(Packet::Pong("")), Ok(Packet::Binary(vec![1]))]);
        let p: Vec<_> = decode_payload("").collect();
        assert_eq!(p, vec![Err(Malformed("empty packet"))]);
    }

    #[test]
    fn payloads_fit_the_limit_and_keep_order() {
        let e = Engine::new("s".into(), 4, 1 << 20, false);
        assert_eq!(e.take_payload(100), None);
        e.emit("2[\"a\"]".into()).unwrap();
        e.emit("2[\"b\"]".into()).unwrap();
        e.control("2");
        e.emit("x".repeat(50)).unwrap();
        assert_eq!(e.emit("more".into()), Err(Full::Full), "four messages fill the buffer");
        assert_eq!(e.take_payload(20).as_deref(), Some("42[\"a\"]\x1e42[\"b\"]\x1e2"));
        assert_eq!(e.take_payload(20), Some(format!("4{}", "x".repeat(50))), "one packet goes even when over");
        assert_eq!(e.take_payload(20), None);
        e.close();
        assert_eq!(e.emit("late".into()), Ok(()));
        assert_eq!(e.take_payload(20), None, "a closed connection takes nothing");
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_until_written() {
        let e = Engine::new("s".into(), 100, 100, true);
        e.emit("x".repeat(200)).unwrap();
        assert_eq!(e.emit("y".into()), Err(Full::Full), "one large message fills it");
        let (batch, bytes) = e.take_all();
        assert_eq!((batch.len(), bytes), (1, 201));
        assert_eq!(e.emit("y".into()), Err(Full::Full), "a batch taken counts until written");
        e.written(bytes);
        e.emit("a".repeat(59)).unwrap();
        e.emit("b".repeat(39)).unwrap();
        assert_eq!(e.emit("c".into()), Err(Full::Full), "100 bytes queued");
        assert!(e.take_payload(1000).is_some());
        e.emit("c".into()).unwrap();
    }

    #[test]
    fn logs_name_a_connection_without_its_sid() {
        let (a, b) = (new_sid(), new_sid());
        let (ta, tb) = (Engine::new(a.clone(), 1, 1, false).tag(), Engine::new(b, 1, 1, false).tag());
        assert_eq!(ta.len(), 8);
        assert!(!a.contains(&ta) && !ta.contains(&a[..8]), "{ta} {a}");
        assert_ne!(ta, tb);
        assert_eq!(ta, Engine::new(a, 1, 1, false).tag(), "the same connection, the same tag");
    }

    #[test]
    fn open_packet_is_engine_io_v4() {
        let p = open_packet("abc", true, 25_000, 20_000, 65_536);
        let v: serde_json::Value = serde_json::from_str(p.strip_prefix('0').unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"sid": "abc", "upgrades": ["websocket"], "pingInterval": 25000,
                "pingTimeout": 20000, "maxPayload": 65536})
        );
    }

    proptest::proptest! {
        /// Any body decodes to packets or errors, never a panic; what
        /// decodes as a message is the record after its `4`.
        #[test]
        fn payload_decoding_never_panics(body in "\\PC{0,60}", records in proptest::collection::vec("[0-6b]\\PC{0,12}", 0..6)) {
            for p in decode_payload(&body) {
                let _ = p;
            }
            let joined = records.join("\x1e");
            let decoded: Vec<_> = decode_payload(&joined).collect();
            proptest::prop_assert_eq!(decoded.len(), records.len().max(1));
            for (r, p) in records.iter().zip(&decoded) {
                if let Some(msg) = r.strip_prefix('4') {
                    proptest::prop_assert_eq!(p, &Ok(Packet::Message(msg)));
                }
            }
        }
    }
}
