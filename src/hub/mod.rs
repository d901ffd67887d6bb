//! The in-process registry: sessions, users, rooms, watchers, and fan-out.
//! It knows nothing of sockets, SQL or Redis: sessions are queues
//! ([`SessionHandle`]), messages arrive already stored ([`Hub::deliver`],
//! the one delivery sink). It imports only the ground floor (`model`,
//! `protocol`) and the metrics counters.
//!
//! Every registry is sharded (`DashMap`), and each room has its own mutex,
//! so unrelated rooms and users never contend. All methods are synchronous:
//! no lock is ever held across an `.await`. Lock order, where two are
//! held: a `rooms` shard, then a room.

mod deliver;
mod outbound;
mod room;
mod session;
mod watchers;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::model::{Identity, Role, RoomRecord};
use crate::protocol::server::{Frame, MemberView, RoomSummary};
use crate::protocol::{ErrorCode, Name, ProtoError, ServerFrame, encode, now_ms};
pub(crate) use deliver::{Acked, Fanout, Route, acknowledge};
pub(crate) use outbound::Outbound;
use room::{Added, Room};
pub(crate) use room::{Gate, wildcard};
pub(crate) use session::{CloseReason, RoomRef, SessionHandle, SessionId, Shown, UserState};
use watchers::Watcher;

/// How a user leaves a room, as the others see it: a `presence` frame's
/// `event` (`leave` or `quit`), with the text the user gave (or a kick's
/// comment) and, for a kick, who kicked.
#[derive(Clone, Copy, Debug)]
pub struct Parting<'a> {
    pub event: &'a str,
    pub reason: Option<&'a str>,
    pub by: Option<&'a str>,
}

impl Parting<'static> {
    pub const LEAVE: Parting<'static> = Parting { event: "leave", reason: None, by: None };
    pub const QUIT: Parting<'static> = Parting { event: "quit", reason: None, by: None };
}

struct UserEntry {
    state: Arc<UserState>,
    sessions: Vec<Arc<SessionHandle>>,
}

/// What a `join` saw when it entered the room (see [`Hub::join_begin`]).
pub struct JoinStart {
    pub name: Arc<str>,
    pub topic: Arc<str>,
    /// History up to and including this `seq` comes from the store; later
    /// messages arrive live, after `joined`.
    pub seq: u64,
    pub members: Vec<MemberView>,
    pub already: bool,
    /// This join made the room live in this process (from `record`).
    pub created: bool,
    /// The room is secret (`+s`).
    pub secret: bool,
    /// Who set the topic and when (ms; "" and 0: not known).
    pub topic_by: Arc<str>,
    pub topic_at: i64,
}

/// Online state of a user, for `status` frames.
#[derive(Clone, Debug)]
pub struct Online {
    pub nick: Arc<str>,
    /// The user id of the identity holding the nick now.
    pub id: Arc<str>,
    pub away: bool,
}

/// A change of a user's roles in a room (see [`Hub::set_role`]); `None`:
/// unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleChange {
    pub moderator: Option<bool>,
    pub voiced: Option<bool>,
    /// A new moderator moderates the room's whole history (a stored
    /// moderator of a room made through the API), not only what is said
    /// from now on.
    pub whole_history: bool,
}

pub struct Hub {
    sessions: DashMap<SessionId, Arc<SessionHandle>>,
    users: DashMap<Arc<str>, UserEntry>,
    rooms: DashMap<Arc<str>, Arc<Mutex<Room>>>,
    watchers: DashMap<Arc<str>, Vec<Watcher>>,
    next_id: AtomicU64,
    outbound_queue: usize,
    /// Bytes queued per session before it is a slow consumer (`limits.outbound_bytes`).
    outbound_bytes: usize,
    /// Whether the hub itself tells members and watchers who came and went.
    /// In a cluster it does not: the cluster layer decides (a user may have
    /// sessions on other nodes) and its announcements come back through
    /// [`Hub::to_room`] and [`Hub::to_watchers`].
    announce: bool,
    /// Set at shutdown: sessions then leave without telling everyone else
    /// (N sessions quitting would otherwise send N² presence frames).
    quiet: AtomicBool,
    /// The server's metrics (deliveries and errors are counted here).
    metrics: Metrics,
}

/// The empty status line, shared.
fn no_status() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "".into());
    EMPTY.clone()
}

fn lock(room: &Mutex<Room>) -> MutexGuard<'_, Room> {
    room.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    pub fn new(outbound_queue: usize, announce: bool) -> Hub {
        Hub {
            sessions: DashMap::new(),
            users: DashMap::new(),
            rooms: DashMap::new(),
            watchers: DashMap::new(),
            next_id: AtomicU64::new(1),
            outbound_queue,
            outbound_bytes: usize::MAX,
            announce,
            quiet: AtomicBool::new(false),
            metrics: Metrics::default(),
        }
    }

    /// Counts into `metrics` (the server's) instead of a detached set.
    pub fn with_metrics(mut self, metrics: Metrics) -> Hub {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Caps each session's outbound queue in bytes too (`limits.outbound_bytes`).
    pub fn with_outbound_bytes(mut self, bytes: usize) -> Hub {
        self.outbound_bytes = bytes;
        self
    }

    /// From now on, sessions leave silently (see `quiet`).
    pub fn hush(&self) {
        self.quiet.store(true, Ordering::Relaxed);
    }

    /// Wakes every session's connection (see [`SessionHandle::wake`]).
    pub fn wake_all(&self) {
        for s in self.sessions.iter() {
            s.wake();
        }
    }

    /// Nudges the sessions whose id is `slice` modulo `slices` (see
    /// [`SessionHandle::nudge`]): one slice per tick, so that each session
    /// is nudged once every `slices` ticks and the pings are spread.
    pub fn nudge(&self, slice: u64, slices: u64) {
        for s in self.sessions.iter().filter(|s| *s.key() % slices == slice) {
            s.nudge();
        }
    }

    /// Whether sessions now leave silently (shutting down).
    pub fn hushed(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
    }

    /// Whether this hub announces presence itself (see `announce`).
    fn announcing(&self) -> bool {
        self.announce && !self.quiet.load(Ordering::Relaxed)
    }

    /// Whether the session is still connected (registered here).
    pub fn has_session(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// Every connected session.
    pub fn sessions(&self) -> Vec<Arc<SessionHandle>> {
        self.sessions.iter().map(|s| s.value().clone()).collect()
    }

    /// The keys of the rooms live here, with the newest `seq` each has
    /// handed out.
    pub fn live_rooms(&self) -> Vec<(Arc<str>, u64)> {
        let rooms: Vec<_> = self.rooms.iter().map(|r| (r.key().clone(), r.value().clone())).collect();
        rooms.into_iter().map(|(k, r)| (k, lock(&r).last_seq)).collect()
    }

    /// The case-folded nicks of the users with a session here.
    pub fn local_users(&self) -> Vec<Arc<str>> {
        self.users.iter().map(|u| u.key().clone()).collect()
    }

    /// Number of connected sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Registers a session for `identity`. A nick is held by one identity
    /// at a time, which may have several sessions (tabs, devices; a guest's
    /// come back with its `welcome.token`). Returns the handle and the
    /// receiving end of its outbound queue.
    pub fn connect(
        &self,
        identity: &Identity,
        closed: CancellationToken,
    ) -> Result<(Arc<SessionHandle>, Outbound), ProtoError> {
        let nick = &identity.nick;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = nick.key().clone();
        let mut entry = self.users.entry(key).or_insert_with(|| UserEntry {
            state: Arc::new(UserState::new(
                nick.clone(),
                identity.id.clone(),
                Shown {
                    // The nick's own string when there is no other name, and
                    // one empty status for all: no copies per user.
                    display_name: identity.display_name.as_deref().map_or_else(|| nick.shown().clone(), Into::into),
                    avatar: identity.avatar.as_deref().map(Into::into),
                    status: no_status(),
                },
                identity.is_guest(),
                identity.admin,
            )),
            sessions: Vec::new(),
        });
        if !entry.sessions.is_empty() && entry.state.identity != identity.id {
            return Err(ProtoError::new(ErrorCode::NickTaken, format!("the nick `{nick}` is taken")));
        }
        let session = Arc::new(
            SessionHandle::new(id, entry.state.clone(), self.outbound_queue, closed)
                .with_byte_budget(self.outbound_bytes),
        );
        // Exactly: a user has one session, or a few (as a session's rooms,
        // see `join_begin`).
        entry.sessions.reserve_exact(1);
        entry.sessions.push(session.clone());
        let came_online = entry.sessions.len() == 1;
        let state = entry.state.clone();
        drop(entry);
        self.sessions.insert(id, session.clone());
        if came_online && self.announce {
            self.notify_watchers(&state, true, now_ms());
        }
        Ok((session.clone(), Outbound(session)))
    }

    /// A user's display name or avatar changed: member lists on this node
    /// show the new ones from now on. Returns the rooms (key, name) its
    /// sessions here are in.
    pub fn profile_changed(&self, nick_key: &str, shown: Shown) -> Vec<(Arc<str>, Arc<str>)> {
        let Some(entry) = self.users.get(nick_key) else { return Vec::new() };
        entry.state.set_shown(shown);
        let mut rooms: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        for session in &entry.sessions {
            for r in session.rooms().iter() {
                if !rooms.iter().any(|(k, _)| *k == r.key) {
                    rooms.push((r.key.clone(), r.name.clone()));
                }
            }
        }
        rooms
    }

    /// Removes a session from everything: its rooms (others see `quit`),
    /// its watches, its user (watchers see it go offline with its last
    /// session). Idempotent.
    pub fn disconnect(&self, session: &Arc<SessionHandle>) {
        if self.sessions.remove(&session.id).is_none() {
            return;
        }
        let rooms = std::mem::take(&mut *session.rooms());
        let reason = session.parting();
        let quit = Parting { reason: reason.as_deref(), ..Parting::QUIT };
        for r in rooms {
            self.leave_room(session, &r.key, quit);
        }
        let watching = session.take_watching();
        for key in watching {
            self.remove_watcher(&key, session.id);
        }
        let key = session.nick().key().clone();
        let went_offline = self
            .users
            .remove_if_mut(&key, |_, e| {
                e.sessions.retain(|s| s.id != session.id);
                e.sessions.is_empty()
            })
            .is_some();
        if went_offline && self.announcing() {
            self.notify_watchers(&session.user, false, now_ms());
        }
    }

    /// Is the user online (on this node), and how.
    pub fn online(&self, nick_key: &str) -> Option<Online> {
        let e = self.users.get(nick_key)?;
        Some(Online {
            nick: e.state.nick.shown().clone(),
            id: e.state.identity.clone(),
            away: e.state.away.load(Ordering::Relaxed),
        })
    }

    // ---- rooms -------------------------------------------------------------

    /// Whether the room is live in this process.
    pub fn room_is_live(&self, key: &str) -> bool {
        self.rooms.contains_key(key)
    }

    /// First half of a `join`: enters the room (creating it from `record`
    /// or `room` if it is not live), tells the others, and holds back this
    /// session's frames until [`Hub::join_finish`]. The caller reads history
    /// up to the returned `seq` meanwhile.
    pub fn join_begin(
        &self,
        session: &Arc<SessionHandle>,
        room: &Name,
        record: Option<RoomRecord>,
        role: Option<Role>,
    ) -> JoinStart {
        let now = now_ms();
        let mut created = false;
        // Hold the shard while entering, so an emptied room cannot be
        // removed between finding it and entering it.
        let entry = self.rooms.entry(room.key().clone()).or_insert_with(|| {
            created = true;
            let rec = record.unwrap_or_default();
            let name = if rec.name.is_empty() { room.shown().clone() } else { rec.name };
            let mut room = Room::new(name, rec.topic, rec.last_seq);
            room.private = rec.private;
            room.gate = Gate {
                moderated: rec.modes.moderated,
                secret: rec.modes.secret,
                bans: rec.bans.iter().map(|b| b.as_str().into()).collect(),
            };
            Arc::new(Mutex::new(room))
        });
        let mut r = lock(&entry);
        let added = r.add(session, now);
        if let Added::New { first_of_user: true } = added
            && self.announce
        {
            let frame = encode(&ServerFrame::Presence {
                room: &r.name,
                nick: session.nick().as_str(),
                event: "join",
                reason: None,
                by: None,
            });
            let me = session.nick().key();
            r.send(&frame, |s| s.nick().key() != me);
        }
        if let Added::New { .. } = added {
            let (key, name) = (room.key().clone(), r.name.clone());
            let (moderator, voiced) = (role == Some(Role::Moderator), role == Some(Role::Voice));
            // Exactly: most sessions are in one room or a few, for their
            // whole life (a first push would make room for four).
            let mut rooms = session.rooms();
            rooms.reserve_exact(1);
            rooms.push(RoomRef { key, name, moderator, voiced, moderates_after: 0 });
            drop(rooms);
            if moderator || voiced {
                r.recount_roles(room.key(), session.nick().key());
            }
        }
        JoinStart {
            name: r.name.clone(),
            topic: r.topic.clone(),
            seq: r.last_seq,
            members: r.member_views(),
            already: matches!(added, Added::Already),
            created,
            secret: r.gate.secret,
            topic_by: r.topic_by.clone(),
            topic_at: r.topic_at,
        }
    }

    /// Second half of a `join`: queues `joined`, then what was held back
    /// but the messages up to `upto` (`joined` has them).
    pub fn join_finish(&self, session: &SessionHandle, room_key: &str, joined: &Frame, upto: u64) {
        if let Some(room) = self.room(room_key) {
            lock(&room).open(session.id, joined, upto);
        }
    }

    /// Leaves a room. `event` is what the others see: `leave`, `quit`, or
    /// `kicked`. Returns the room's name if the session was in it.
    pub fn leave(&self, session: &Arc<SessionHandle>, room_key: &str, how: Parting<'_>) -> Option<Arc<str>> {
        let left = {
            let mut rooms = session.rooms();
            let i = rooms.iter().position(|r| &*r.key == room_key)?;
            rooms.swap_remove(i)
        };
        self.leave_room(session, room_key, how);
        Some(left.name)
    }

    fn leave_room(&self, session: &SessionHandle, room_key: &str, how: Parting<'_>) {
        let Some(room) = self.room(room_key) else {
            return;
        };
        let mut r = lock(&room);
        let last = r.remove(session.id);
        if last == Some(false) {
            r.recount_roles(room_key, session.nick().key());
        }
        if last == Some(true) && self.announcing() {
            let nick = session.nick().as_str();
            let (event, reason, by) = (how.event, how.reason, how.by);
            let frame = encode(&ServerFrame::Presence { room: &r.name, nick, event, reason, by });
            r.send(&frame, |_| true);
        }
        let empty = r.is_empty();
        drop(r);
        if empty {
            // Re-checked under the shard lock: someone may have joined since.
            self.rooms.remove_if(room_key, |_, room| lock(room).is_empty());
        }
    }

    /// A live room's name as shown.
    pub fn room_name(&self, key: &str) -> Option<Arc<str>> {
        let room = self.room(key)?;
        let name = lock(&room).name.clone();
        Some(name)
    }

    fn room(&self, key: &str) -> Option<Arc<Mutex<Room>>> {
        self.rooms.get(key).map(|r| r.clone())
    }

    /// Removes every session of a user from a room: each gets `left` with
    /// `reason: "kicked"` and `by`; the others see the user leave. Returns
    /// the sessions removed.
    pub fn kick(&self, room_key: &str, nick_key: &str, by: &str, comment: Option<&str>) -> Vec<Arc<SessionHandle>> {
        let sessions: Vec<Arc<SessionHandle>> = match self.users.get(nick_key) {
            Some(e) => e.sessions.clone(),
            None => return Vec::new(),
        };
        let mut kicked = Vec::new();
        for s in sessions {
            if let Some(name) = self.leave(&s, room_key, Parting { reason: comment, by: Some(by), ..Parting::LEAVE }) {
                let (reason, by) = (Some("kicked"), Some(by));
                s.send(&encode(&ServerFrame::Left { id: None, room: &name, reason, by, comment }));
                kicked.push(s);
            }
        }
        kicked
    }

    /// Destroys a live room: every member session gets `left` with
    /// `reason: "destroyed"`. Returns the sessions that were in it.
    pub fn destroy(&self, room_key: &str) -> Vec<Arc<SessionHandle>> {
        let Some((_, room)) = self.rooms.remove(room_key) else { return Vec::new() };
        let (name, sessions) = {
            let mut r = lock(&room);
            (r.name.clone(), r.drain())
        };
        let frame =
            encode(&ServerFrame::Left { id: None, room: &name, reason: Some("destroyed"), by: None, comment: None });
        for s in &sessions {
            s.rooms().retain(|r| &*r.key != room_key);
            s.send(&frame);
        }
        sessions
    }

    /// Sets whether a user moderates a room, for its sessions in it now.
    /// A guest holding the nick gets no role (see `Conn::access`).
    pub fn set_moderator(&self, room_key: &str, nick_key: &str, moderator: bool) {
        if let Some(e) = self.users.get(nick_key)
            && !e.state.guest
        {
            let mut voiced = false;
            for s in &e.sessions {
                for r in s.rooms().iter_mut().filter(|r| &*r.key == room_key) {
                    r.moderator = moderator;
                    r.moderates_after = 0;
                    voiced |= r.voiced;
                }
            }
            drop(e);
            self.show_roles(room_key, nick_key, moderator, voiced);
        }
    }

    /// Lists a user's roles in a live room as they are now.
    fn show_roles(&self, room_key: &str, nick_key: &str, moderator: bool, voiced: bool) {
        if let Some(room) = self.room(room_key) {
            lock(&room).show_roles(nick_key, moderator, voiced);
        }
    }

    /// The session that made a room by joining it moderates it, from `seq`
    /// on (not the history the room had before).
    pub fn made_by(&self, session: &SessionHandle, room_key: &str, seq: u64) {
        let mut voiced = false;
        {
            let mut rooms = session.rooms();
            let Some(r) = rooms.iter_mut().find(|r| &*r.key == room_key) else { return };
            r.moderator = true;
            r.moderates_after = seq;
            voiced |= r.voiced;
        }
        self.show_roles(room_key, session.nick().key(), true, voiced);
    }

    /// Sets a user's roles in a room (`+o`, `+v`), for its sessions here in
    /// it now, if the user holding `nick_key` is `id` (roles belong to ids).
    /// A new moderator moderates the messages said from now on (the room's
    /// history too when `change.whole_history`: a stored moderator); one
    /// already moderating keeps what it moderated.
    pub fn set_role(&self, room_key: &str, nick_key: &str, id: &str, change: RoleChange) {
        let now_seq = match self.room(room_key) {
            Some(room) => lock(&room).last_seq,
            None => return,
        };
        let (mut moderator, mut voiced) = (false, false);
        {
            let Some(e) = self.users.get(nick_key) else { return };
            if *e.state.identity != *id {
                return;
            }
            for s in &e.sessions {
                for r in s.rooms().iter_mut().filter(|r| &*r.key == room_key) {
                    match change.moderator {
                        Some(true) if change.whole_history => {
                            r.moderator = true;
                            r.moderates_after = 0;
                        }
                        Some(true) if !r.moderator => {
                            r.moderator = true;
                            r.moderates_after = now_seq;
                        }
                        Some(m) => r.moderator = m,
                        None => {}
                    }
                    if let Some(v) = change.voiced {
                        r.voiced = v;
                    }
                    moderator |= r.moderator;
                    voiced |= r.voiced;
                }
            }
        }
        self.show_roles(room_key, nick_key, moderator, voiced);
    }

    /// What `say` checks in a live room (moderated, bans).
    pub fn gate(&self, room_key: &str) -> Option<Gate> {
        let room = self.room(room_key)?;
        let gate = lock(&room).gate.clone();
        Some(gate)
    }

    /// Replaces a live room's [`Gate`] (its settings changed).
    pub fn set_gate(&self, room_key: &str, gate: Gate) {
        if let Some(room) = self.room(room_key) {
            let mut r = lock(&room);
            r.gate = gate;
            r.gate_gen += 1;
        }
    }

    /// How many times a live room's [`Gate`] was replaced.
    pub fn gate_gen(&self, room_key: &str) -> Option<u64> {
        let room = self.room(room_key)?;
        let seen = lock(&room).gate_gen;
        Some(seen)
    }

    /// [`Hub::set_gate`] unless the gate was replaced since `seen` (by a
    /// newer change): a gate read from the database after subscribing to
    /// the room's changes. Returns whether it was set.
    pub fn set_gate_if(&self, room_key: &str, gate: Gate, seen: u64) -> bool {
        let Some(room) = self.room(room_key) else { return false };
        let mut r = lock(&room);
        if r.gate_gen != seen {
            return false;
        }
        r.gate = gate;
        r.gate_gen += 1;
        true
    }

    /// Sends a frame to the room's member sessions for which `to` is true.
    /// Returns false if the room is not live.
    pub fn to_room(&self, room_key: &str, frame: &Frame, to: impl FnMut(&SessionHandle) -> bool) -> bool {
        match self.room(room_key) {
            Some(room) => {
                lock(&room).send(frame, to);
                true
            }
            None => false,
        }
    }

    /// `who`: the room's name, topic and members.
    pub fn who(&self, room_key: &str) -> Option<(Arc<str>, Arc<str>, Vec<MemberView>)> {
        let room = self.room(room_key)?;
        let r = lock(&room);
        Some((r.name.clone(), r.topic.clone(), r.member_views()))
    }

    /// Every live room with its number of users, by name (private ones
    /// too: the `rooms` frame leaves them out, API keys see them).
    pub fn room_list(&self) -> Vec<RoomSummary> {
        let rooms: Vec<_> = self.rooms.iter().map(|r| r.value().clone()).collect();
        let mut list: Vec<RoomSummary> = rooms
            .iter()
            .map(|room| {
                let r = lock(room);
                RoomSummary {
                    name: r.name.clone(),
                    topic: r.topic.clone(),
                    members: r.user_count(),
                    private: r.private,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Sets a live room's topic and tells every member session.
    pub fn set_topic(&self, room_key: &str, topic: Arc<str>, by: &str) -> Option<Arc<str>> {
        let room = self.room(room_key)?;
        let mut r = lock(&room);
        r.topic = topic;
        (r.topic_by, r.topic_at) = (by.into(), now_ms());
        let frame = encode(&ServerFrame::Topic { room: &r.name, topic: &r.topic, by });
        r.send(&frame, |_| true);
        Some(r.name.clone())
    }

    // ---- users -------------------------------------------------------------

    /// Sends a frame to every session of a user except `except`. Returns
    /// whether the user is online here.
    pub fn to_user(&self, nick_key: &str, frame: &Frame, except: Option<SessionId>) -> bool {
        let Some(e) = self.users.get(nick_key) else {
            return false;
        };
        for s in e.sessions.iter().filter(|s| Some(s.id) != except) {
            s.send(frame);
        }
        true
    }

    /// Asks every session of the user `id` holding `nick_key` here to join
    /// `room_key` (see [`SessionHandle::admit`]). Returns how many.
    pub fn admit(&self, room_key: &str, id: &str, nick_key: &str) -> usize {
        let Some(e) = self.users.get(nick_key) else { return 0 };
        if &*e.state.identity != id {
            return 0;
        }
        for s in &e.sessions {
            s.admit(room_key);
        }
        e.sessions.len()
    }

    /// Sends a frame to every session but `except`.
    pub fn to_everyone(&self, frame: &Frame, except: Option<SessionId>) {
        for s in self.sessions.iter() {
            if Some(s.id) != except {
                s.send(frame);
            }
        }
    }

    /// Sets the user's away flag; watchers hear of a change. Returns
    /// whether it changed.
    pub fn set_away(&self, session: &SessionHandle, away: bool) -> bool {
        let changed = session.user.away.swap(away, Ordering::Relaxed) != away;
        if changed && self.announce {
            self.notify_watchers(&session.user, true, now_ms());
        }
        changed
    }
}

#[cfg(test)]
mod bench {
    use std::time::Instant;

    use super::*;

    /// What listing a room's members costs, with roles kept on the room
    /// (now) and read from every member session under the room's lock (as
    /// before): `cargo test --lib hub::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn listing_members_locks_no_session() {
        let (users, rooms_each) = (1_000, 20);
        let hub = Hub::new(64, true);
        let big = Name::room("big").unwrap();
        let mut sessions = Vec::new();
        for i in 0..users {
            let id = Identity::guest(Name::nick(&format!("u{i}")).unwrap(), format!("g-{i}"));
            let (s, _out) = hub.connect(&id, CancellationToken::new()).unwrap();
            for r in 0..rooms_each - 1 {
                hub.join_begin(&s, &Name::room(&format!("r{r}")).unwrap(), None, None);
            }
            hub.join_begin(&s, &big, None, if i % 10 == 0 { Some(Role::Voice) } else { None });
            sessions.push(s);
        }
        let runs = 50;
        let t = Instant::now();
        for _ in 0..runs {
            assert_eq!(hub.who("big").unwrap().2.len(), users);
        }
        let now = t.elapsed() / runs;
        // The loop member_views ran before, under the room's lock.
        let room = hub.room("big").unwrap();
        let t = Instant::now();
        for _ in 0..runs {
            let r = lock(&room);
            let mut roles: std::collections::HashMap<&str, (bool, bool)> = std::collections::HashMap::new();
            for m in &sessions {
                if let Some(rr) = m.rooms().iter().find(|rr| &*rr.key == "big") {
                    let e = roles.entry(m.nick().key()).or_default();
                    e.0 |= rr.moderator;
                    e.1 |= rr.voiced;
                }
            }
            assert_eq!(roles.len(), users);
            assert_eq!(r.member_views().len(), users);
        }
        let before = t.elapsed() / runs;
        println!("who of a room of {users} users, each in {rooms_each} rooms: {now:?} now, {before:?} before");
    }
}
