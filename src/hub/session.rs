//! A connected session as the hub sees it: a bounded outbound queue and the
//! one signal that closes the connection. The gateway owns the socket; the
//! hub only ever `try_send`s into the queue, so no recipient can slow down
//! a sender or another recipient.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outbound::{Queue, Refused};
use crate::protocol::Name;
use crate::protocol::server::Frame;

pub type SessionId = u64;

/// Why a session ends. The first reason given wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// The peer closed or the connection broke (1000).
    Normal = 1,
    /// The server is shutting down (1001, after a `notice`).
    Shutdown,
    /// The peer was silent for `limits.idle_timeout` (1001).
    Idle,
    /// No `hello` in time (1008).
    Policy,
    /// A frame over `limits.max_frame_bytes` (1009).
    TooBig,
    /// Outbound queue full: a slow consumer (1013).
    SlowConsumer,
    /// The peer broke the WebSocket protocol: an unmasked frame, reserved
    /// bits or opcodes, a bad fragment (1002).
    Protocol,
    /// A text frame that is not UTF-8 (1007).
    InvalidPayload,
}

impl CloseReason {
    const ALL: [CloseReason; 8] = [
        Self::Normal,
        Self::Shutdown,
        Self::Idle,
        Self::Policy,
        Self::TooBig,
        Self::SlowConsumer,
        Self::Protocol,
        Self::InvalidPayload,
    ];

    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Normal => 1000,
            CloseReason::Shutdown | CloseReason::Idle => 1001,
            CloseReason::Policy => 1008,
            CloseReason::TooBig => 1009,
            CloseReason::SlowConsumer => 1013,
            CloseReason::Protocol => 1002,
            CloseReason::InvalidPayload => 1007,
        }
    }

    /// The close frame's reason text (also what the logs say).
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Normal => "closed",
            CloseReason::Shutdown => "server shutting down",
            CloseReason::Idle => "idle timeout",
            CloseReason::Policy => "no hello in time",
            CloseReason::TooBig => "frame too large",
            CloseReason::SlowConsumer => "too slow: outbound queue full",
            CloseReason::Protocol => "protocol error",
            CloseReason::InvalidPayload => "text frame is not UTF-8",
        }
    }
}

/// A room a session is in: its case-folded key and its name as shown.
#[derive(Clone, Debug)]
pub struct RoomRef {
    pub key: Arc<str>,
    pub name: Arc<str>,
    /// May kick, delete anyone's message and set the topic here.
    pub moderator: bool,
    /// May speak when the room is moderated (`+v`).
    pub voiced: bool,
    /// Moderates only messages after this seq (0: all). A room's creator
    /// (by joining it) moderates what is said from then on, not the
    /// history the room had before.
    pub moderates_after: u64,
}

/// A user as all its sessions share it (a user may have several sessions).
#[derive(Debug)]
pub struct UserState {
    pub nick: Name,
    /// The user id (see [`crate::model::ids`]): sessions with the same id are one
    /// user; a nick is held by one id at a time.
    pub identity: Arc<str>,
    /// The name and picture others see; a profile change replaces them
    /// (see [`Hub::profile_changed`](super::Hub::profile_changed)).
    shown: Mutex<Shown>,
    pub guest: bool,
    /// Moderator in every room (site token `admin`).
    pub admin: bool,
    pub away: AtomicBool,
}

/// What others see of a user besides its nick.
#[derive(Clone, Debug)]
pub struct Shown {
    pub display_name: Arc<str>,
    pub avatar: Option<Arc<str>>,
    /// The profile's status line ("at lunch"); empty when none.
    pub status: Arc<str>,
}

impl UserState {
    pub fn new(nick: Name, identity: Arc<str>, shown: Shown, guest: bool, admin: bool) -> UserState {
        UserState { nick, identity, shown: Mutex::new(shown), guest, admin, away: false.into() }
    }

    /// The display name and avatar as they are now.
    pub fn shown(&self) -> Shown {
        self.shown.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_shown(&self, shown: Shown) {
        *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = shown;
    }
}

/// Rooms a session may have waiting to be joined at the server's word.
pub const MAX_ADMITTED: usize = 64;

/// The hub's handle on one session.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: Arc<UserState>,
    /// Frames waiting for this session's connection. Bounded: overflow
    /// closes the session with 1013 (see [`SessionHandle::send`]).
    pub(super) queue: Mutex<Queue>,
    /// Most frames the queue holds (`limits.outbound_queue`).
    queue_cap: u32,
    /// Bytes of the frames queued and not yet written to the socket.
    queued_bytes: AtomicUsize,
    /// Most bytes `queued_bytes` may reach (`limits.outbound_bytes`);
    /// past it, as for a full queue, the session is closed with 1013.
    byte_budget: usize,
    close_reason: AtomicU8,
    closed: CancellationToken,
    /// When the peer last sent anything (ms), for the idle timeout.
    last_heard: AtomicI64,
    /// The rooms this session is in.
    rooms: Mutex<Vec<RoomRef>>,
    /// What few sessions ever have (see [`Rare`]): boxed at first use, so
    /// that the many that never watch nor quit with a message do not carry
    /// it (this handle lives as long as the connection).
    rare: Mutex<Option<Box<Rare>>>,
    /// Wakes the connection's task: rooms were admitted, the session was
    /// closed, a ping is due, or the server stops reading. One wait for all
    /// of them (each is state the task reads when woken), so that an idle
    /// connection's future holds one waiter, not one per signal.
    wake: Notify,
    /// Set by [`nudge`](Self::nudge): time for the connection's ping and
    /// idle check (see [`take_ping_due`](Self::take_ping_due)).
    ping_due: AtomicBool,
}

/// A session's seldom-used state.
#[derive(Debug, Default)]
pub struct Rare {
    /// Case-folded nicks this session watches.
    pub watching: Vec<Arc<str>>,
    /// Rooms the session is to join at the server's word (the API made its
    /// user a member): its reader task joins them, as if asked.
    admitted: Vec<Arc<str>>,
    /// The text the user gave on quitting (IRC's QUIT message), for the
    /// `quit` presence its rooms see.
    parting: Option<Arc<str>>,
}

impl SessionHandle {
    pub fn new(id: SessionId, user: Arc<UserState>, queue_cap: usize, closed: CancellationToken) -> Self {
        let queue_cap = u32::try_from(queue_cap).unwrap_or(u32::MAX);
        SessionHandle {
            id,
            user,
            queue: Mutex::default(),
            queue_cap,
            queued_bytes: AtomicUsize::new(0),
            byte_budget: usize::MAX,
            close_reason: AtomicU8::new(0),
            closed,
            last_heard: AtomicI64::new(crate::protocol::now_ms()),
            rooms: Mutex::default(),
            rare: Mutex::default(),
            wake: Notify::new(),
            ping_due: AtomicBool::new(false),
        }
    }

    /// Sets the text the others see with this session's `quit`.
    pub fn set_parting(&self, text: Arc<str>) {
        self.rare(|r| r.parting = Some(text));
    }

    /// The text set by [`SessionHandle::set_parting`], if any.
    pub fn parting(&self) -> Option<Arc<str>> {
        self.rare_lock().as_ref().and_then(|r| r.parting.clone())
    }

    pub(super) fn rare_lock(&self) -> MutexGuard<'_, Option<Box<Rare>>> {
        self.rare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the seldom-used state (boxing it at first use).
    pub fn rare<R>(&self, f: impl FnOnce(&mut Rare) -> R) -> R {
        f(self.rare_lock().get_or_insert_default())
    }

    /// Asks the session's reader to join `room_key` (at most
    /// [`MAX_ADMITTED`] waiting; more are dropped).
    pub fn admit(&self, room_key: &str) {
        self.rare(|r| {
            if r.admitted.len() < MAX_ADMITTED && !r.admitted.iter().any(|r| &**r == room_key) {
                r.admitted.push(room_key.into());
            }
        });
        self.wake.notify_one();
    }

    /// Waits until rooms were admitted, and takes them.
    pub async fn admitted(&self) -> Vec<Arc<str>> {
        loop {
            let rooms = self.take_admitted();
            if !rooms.is_empty() {
                return rooms;
            }
            self.wake.notified().await;
        }
    }

    /// The rooms admitted since the last call (see [`admit`](Self::admit)).
    pub fn take_admitted(&self) -> Vec<Arc<str>> {
        self.rare_lock().as_mut().map(|r| std::mem::take(&mut r.admitted)).unwrap_or_default()
    }

    /// Waits for the next wake-up (see `wake`); a wake-up given while
    /// nobody waited is kept for the next wait.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Wakes the connection's task without a reason of its own (the server
    /// stops reading: the task checks the server's state).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Time for the connection's ping and idle check.
    pub fn nudge(&self) {
        self.ping_due.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether a ping is due (see [`nudge`](Self::nudge)); clears it.
    pub fn take_ping_due(&self) -> bool {
        self.ping_due.swap(false, Ordering::AcqRel)
    }

    /// Caps the bytes queued for this session (see [`send`](Self::send)).
    pub fn with_byte_budget(mut self, bytes: usize) -> Self {
        self.byte_budget = bytes;
        self
    }

    pub fn nick(&self) -> &Name {
        &self.user.nick
    }

    /// Queues a frame without waiting. A full queue means the reader is
    /// slower than its traffic: the session is closed with 1013 and will
    /// resume with `join … since` when it reconnects. Returns whether the
    /// frame was queued.
    ///
    /// The queue is bounded twice: in frames (`limits.outbound_queue`) and
    /// in bytes (`limits.outbound_bytes`, see [`unqueued`](Self::unqueued)),
    /// so that a few large frames (history pages) cannot pile up either. A
    /// single frame larger than the budget still goes to an empty queue.
    pub fn send(&self, frame: &Frame) -> bool {
        let len = frame.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > self.byte_budget {
            self.unqueued(len);
            self.close(CloseReason::SlowConsumer);
            return false;
        }
        match Queue::push(&self.queue, frame.clone(), self.queue_cap as usize) {
            Ok(()) => true,
            Err(Refused::Full) => {
                self.unqueued(len);
                self.close(CloseReason::SlowConsumer);
                false
            }
            Err(Refused::Closed) => {
                self.unqueued(len);
                false
            }
        }
    }

    /// The writer wrote `bytes` of queued frames to the socket (or dropped
    /// them): they no longer count against the byte budget.
    pub fn unqueued(&self, bytes: usize) {
        let _ = self.queued_bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| Some(q.saturating_sub(bytes)));
    }

    /// Asks for the connection to be closed with `reason`. The first reason
    /// given wins; the writer task sends the close frame.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.close_reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.closed.cancel();
        self.wake.notify_one();
    }

    /// The reason given to [`close`](Self::close), if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        let r = self.close_reason.load(Ordering::Acquire);
        CloseReason::ALL.into_iter().find(|c| *c as u8 == r)
    }

    /// Notes that the peer sent something.
    pub fn heard(&self, now_ms: i64) {
        self.last_heard.store(now_ms, Ordering::Relaxed);
    }

    /// Milliseconds since the peer last sent anything.
    pub fn silent_for(&self, now_ms: i64) -> i64 {
        now_ms - self.last_heard.load(Ordering::Relaxed)
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub fn rooms(&self) -> MutexGuard<'_, Vec<RoomRef>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room as this session is in it, if it is.
    pub fn joined(&self, key: &str) -> Option<RoomRef> {
        self.rooms().iter().find(|r| &*r.key == key).cloned()
    }

    /// The room's name as shown, if this session is in it.
    pub fn joined_room(&self, key: &str) -> Option<Arc<str>> {
        self.rooms().iter().find(|r| &*r.key == key).map(|r| r.name.clone())
    }

    /// The nicks this session watches (a copy).
    pub fn watching(&self) -> Vec<Arc<str>> {
        self.rare_lock().as_ref().map(|r| r.watching.clone()).unwrap_or_default()
    }

    /// Takes the watch list (the session is leaving).
    pub fn take_watching(&self) -> Vec<Arc<str>> {
        self.rare_lock().as_mut().map(|r| std::mem::take(&mut r.watching)).unwrap_or_default()
    }
}
