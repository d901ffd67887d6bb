//! The client's state, without I/O: the rooms it is in and the last `seq`
//! seen in each conversation (for resuming), the current room, requests in
//! flight by id, and the outbox of frames waiting to be sent.
//!
//! The driver ([`super::conn`]) feeds it typed lines and server frames and
//! gets back [`Line`]s to show and frames to send. Commands change the local
//! state at once (a `/join dev` then `hello` sends `hello` to `dev`, as the
//! server reads frames in order); replies confirm or undo.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::command::{self, Command};
use super::render::{self, Body, Line, Msg, Place};
use super::wire::{self, Incoming, Message};

/// How long a `typing` indication lasts without a repeat (PROTOCOL.md).
const TYPING_LAPSE: Duration = Duration::from_secs(6);
/// Nicks remembered for tab completion, at most.
const MAX_KNOWN_NICKS: usize = 10_000;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A conversation, by case-folded key: what a `seq` counts in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Conv {
    Room(String),
    Dm(String),
    Everyone,
}

/// Where a `say` goes, as the user named it.
#[derive(Clone, Debug)]
enum Target {
    Room(String),
    Dm(String),
    Everyone,
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Room(r) => format!("not sent to [{r}]"),
            Target::Dm(n) => format!("not sent to {n}"),
            Target::Everyone => "not sent to everyone".into(),
        }
    }
}

/// What a request id stands for, to make sense of its reply.
#[derive(Clone, Debug)]
enum Request {
    Say(Target),
    Join(String),
    /// `join … since` after a reconnect.
    Rejoin(String),
    Leave(String),
    Who(String),
    Rooms,
    History(String),
    /// `history … after` for a DM conversation or the everyone stream
    /// after a reconnect (`display` names it in errors).
    Catchup {
        conv: Conv,
        display: String,
    },
    Away(bool),
    Typing,
}

impl Request {
    /// Whether the request spends the `say`/`event`/`typing` rate bucket.
    fn costs(&self) -> bool {
        matches!(self, Request::Say(_) | Request::Typing)
    }
}

enum Item {
    Frame {
        frame: Value,
        req: Request,
    },
    /// `/nick`: once every earlier request is answered, reconnect as this.
    Renick(String),
}

/// What the driver should do with the outbox now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this text frame.
    Send(String),
    /// Close the connection and reconnect as this nick.
    Renick(String),
    /// Nothing may go before then (the rate limit).
    Wait(Instant),
    /// Nothing to send now.
    Idle,
}

/// A token bucket mirroring the server's for `say` and `typing`, so a
/// script that pipes many lines is paced instead of refused; a
/// `rate_limited` reply still pauses everything for its `retry_after_ms`.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        // A little under the server's figures: clocks and rounding differ.
        let rate = (rate * 0.9).max(0.1);
        let burst = (burst - 1.0).max(1.0);
        Bucket { rate, burst, tokens: burst, at: now, paused_until: None }
    }

    /// `None` if a request may go now; else when it may.
    fn ready_at(&mut self, now: Instant, costs: bool) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if until > now {
                return Some(until);
            }
            self.paused_until = None;
        }
        if !costs {
            return None;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 { None } else { Some(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)) }
    }
}

struct Room {
    key: String,
    /// As the server spells it (as typed until `joined` confirms).
    name: String,
    /// The last `seq` seen; `None` until `joined` arrives.
    last_seq: Option<u64>,
}

pub struct Session {
    pub nick: String,
    /// `history` asked for on `join`.
    history_on_join: u32,
    /// Joined (or joining) rooms, oldest first.
    rooms: Vec<Room>,
    current: Option<String>,
    /// DM conversations seen: peer key → (peer as shown, last seq).
    dms: HashMap<String, (String, u64)>,
    everyone_seq: Option<u64>,
    next_id: u64,
    outbox: BTreeMap<u64, Item>,
    inflight: HashMap<u64, (Value, Request)>,
    bucket: Bucket,
    away: bool,
    /// (conversation, typist) → when the indication was last refreshed.
    typing: HashMap<(Conv, String), Instant>,
    known_nicks: BTreeSet<String>,
    /// A `shutdown` notice arrived: the coming close is graceful.
    pub shutdown_notice: bool,
    /// `/quit` was typed.
    pub quit: bool,
    /// Requests the server refused, or that were lost with the connection.
    pub failures: u32,
    /// Lines that were not valid commands.
    pub usage_errors: u32,
}

impl Session {
    pub fn new(nick: String, history_on_join: u32) -> Session {
        Session {
            nick,
            history_on_join,
            rooms: Vec::new(),
            current: None,
            dms: HashMap::new(),
            everyone_seq: None,
            next_id: 1,
            outbox: BTreeMap::new(),
            inflight: HashMap::new(),
            bucket: Bucket::new(10.0, 20.0, Instant::now()),
            away: false,
            typing: HashMap::new(),
            known_nicks: BTreeSet::new(),
            shutdown_notice: false,
            quit: false,
            failures: 0,
            usage_errors: 0,
        }
    }

    /// The current room as shown, if any.
    pub fn current_room(&self) -> Option<&str> {
        let key = self.current.as_ref()?;
        self.rooms.iter().find(|r| &r.key == key).map(|r| r.name.as_str())
    }

    pub fn room_names(&self) -> Vec<String> {
        self.rooms.iter().map(|r| r.name.clone()).collect()
    }

    pub fn known_nicks(&self) -> Vec<String> {
        self.known_nicks.iter().cloned().collect()
    }

    /// Frames waiting to be sent (the driver stops reading input past a cap).
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// Nothing queued and every request that matters answered.
    pub fn settled(&self) -> bool {
        self.outbox.is_empty() && self.inflight.values().all(|(_, r)| matches!(r, Request::Typing))
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn enqueue(&mut self, frame: Value, req: Request) {
        let id = self.id();
        self.outbox.insert(id, Item::Frame { frame, req });
    }

    fn room_index(&self, name: &str) -> Option<usize> {
        let key = name.to_ascii_lowercase();
        self.rooms.iter().position(|r| r.key == key)
    }

    /// After leaving the current room: the most recently joined one left.
    fn fix_current(&mut self) {
        if self.current.as_ref().is_some_and(|c| !self.rooms.iter().any(|r| &r.key == c)) {
            self.current = self.rooms.last().map(|r| r.key.clone());
        }
    }

    fn remember(&mut self, nick: &str) {
        if self.known_nicks.len() < MAX_KNOWN_NICKS && !nick.eq_ignore_ascii_case(&self.nick) {
            self.known_nicks.insert(nick.to_owned());
        }
    }

    /// One typed line.
    pub fn input(&mut self, line: &str, out: &mut Vec<Line>) {
        match command::parse(line) {
            Ok(None) => {}
            Ok(Some(cmd)) => self.command(cmd, out),
            Err(e) => {
                self.usage_errors += 1;
                out.push(Line { at: now_ms(), body: Body::Usage { problem: e.problem, usage: e.usage.into() } });
            }
        }
    }

    fn fail(&mut self, message: impl Into<String>, out: &mut Vec<Line>) {
        self.failures += 1;
        out.push(Line { at: now_ms(), body: Body::Error { context: None, message: message.into() } });
    }

    fn need_room(&mut self, out: &mut Vec<Line>) -> Option<String> {
        let room = self.current_room().map(str::to_owned);
        if room.is_none() {
            self.fail("you are in no room: /join ROOM first (or /msg NICK TEXT)", out);
        }
        room
    }

    pub fn command(&mut self, cmd: Command, out: &mut Vec<Line>) {
        match cmd {
            Command::Say(text) => {
                if let Some(room) = self.need_room(out) {
                    self.enqueue(json!({"type": "say", "room": room, "text": text}), Request::Say(Target::Room(room)));
                }
            }
            Command::Me(action) => {
                if let Some(room) = self.need_room(out) {
                    let text = format!("/me {action}");
                    self.enqueue(json!({"type": "say", "room": room, "text": text}), Request::Say(Target::Room(room)));
                }
            }
            Command::Msg { to, text } => {
                self.enqueue(json!({"type": "say", "to": to, "text": text}), Request::Say(Target::Dm(to)));
            }
            Command::All(text) => {
                self.enqueue(json!({"type": "say", "everyone": true, "text": text}), Request::Say(Target::Everyone));
            }
            Command::Join(room) => {
                let key = room.to_ascii_lowercase();
                if self.room_index(&room).is_none() {
                    self.rooms.push(Room { key: key.clone(), name: room.clone(), last_seq: None });
                }
                self.current = Some(key);
                let frame = json!({"type": "join", "room": room, "history": self.history_on_join});
                self.enqueue(frame, Request::Join(room));
            }
            Command::Leave(room) => {
                let Some(room) = room.or_else(|| self.current_room().map(str::to_owned)) else {
                    return self.fail("you are in no room", out);
                };
                if let Some(i) = self.room_index(&room) {
                    self.rooms.remove(i);
                    self.fix_current();
                }
                self.enqueue(json!({"type": "leave", "room": room}), Request::Leave(room));
            }
            Command::Switch(room) => match self.room_index(&room) {
                Some(i) => {
                    self.current = Some(self.rooms[i].key.clone());
                    out.push(Line { at: now_ms(), body: Body::Switched(self.rooms[i].name.clone()) });
                }
                None => self.fail(format!("you are not in {room}: /join {room} first"), out),
            },
            Command::Rooms => self.enqueue(json!({"type": "rooms"}), Request::Rooms),
            Command::Who(room) => {
                let Some(room) = room.or_else(|| self.need_room(out)) else { return };
                self.enqueue(json!({"type": "who", "room": room}), Request::Who(room));
            }
            Command::History(n) => {
                if let Some(room) = self.need_room(out) {
                    let frame = json!({"type": "history", "room": room, "limit": n.unwrap_or(20)});
                    self.enqueue(frame, Request::History(room));
                }
            }
            Command::Away => {
                self.away = !self.away;
                self.enqueue(json!({"type": "away", "away": self.away}), Request::Away(self.away));
            }
            Command::Nick(nick) if nick.eq_ignore_ascii_case(&self.nick) => {
                out.push(Line { at: now_ms(), body: Body::Info(format!("you are {} already", self.nick)) });
            }
            Command::Nick(nick) => {
                let id = self.id();
                self.outbox.insert(id, Item::Renick(nick));
            }
            Command::Quit => self.quit = true,
            Command::Help => out.extend(render::help(now_ms())),
        }
    }

    /// The user is typing in the current room (or stopped). Dropped when
    /// the rate limit has no room for it: it is only a hint.
    pub fn typing(&mut self, active: bool) {
        if let Some(room) = self.current_room().map(str::to_owned) {
            self.enqueue(json!({"type": "typing", "room": room, "active": active}), Request::Typing);
        }
    }

    /// What to send next (call until it says `Wait` or `Idle`).
    pub fn next(&mut self, now: Instant) -> Next {
        // Earlier requests first: their replies come on this connection.
        let answered = self.inflight.values().all(|(_, r)| matches!(r, Request::Typing));
        loop {
            let Some(mut entry) = self.outbox.first_entry() else { return Next::Idle };
            let id = *entry.key();
            match entry.get_mut() {
                Item::Renick(_) => {
                    if !answered {
                        return Next::Idle;
                    }
                    let Item::Renick(nick) = entry.remove() else { unreachable!() };
                    return Next::Renick(nick);
                }
                Item::Frame { req, .. } => {
                    let costs = req.costs();
                    let typing = matches!(req, Request::Typing);
                    if let Some(at) = self.bucket.ready_at(now, costs) {
                        if typing {
                            entry.remove();
                            continue;
                        }
                        return Next::Wait(at);
                    }
                    let Item::Frame { mut frame, req } = entry.remove() else { unreachable!() };
                    if costs {
                        self.bucket.tokens -= 1.0;
                    }
                    frame["id"] = json!(id);
                    let text = frame.to_string();
                    self.inflight.insert(id, (frame, req));
                    return Next::Send(text);
                }
            }
        }
    }

    /// A new connection was welcomed: adopt the server's spelling of the
    /// nick and its rate limits, and resume every conversation where it
    /// stopped. Returns the frames to send before anything queued.
    pub fn welcomed(&mut self, welcome: &wire::Welcome) -> Vec<String> {
        if !welcome.nick.is_empty() {
            self.nick = welcome.nick.clone();
        }
        let limits = &welcome.limits;
        self.bucket = Bucket::new(limits.rate_per_sec.unwrap_or(10.0), limits.burst.unwrap_or(20.0), Instant::now());
        self.typing.clear();
        let mut frames = Vec::new();
        let resume: Vec<(String, u64)> =
            self.rooms.iter().filter_map(|r| r.last_seq.map(|s| (r.name.clone(), s))).collect();
        for (room, since) in resume {
            let id = self.id();
            let frame = json!({"type": "join", "room": room, "since": since, "id": id});
            frames.push(frame.to_string());
            self.inflight.insert(id, (frame, Request::Rejoin(room)));
        }
        let mut catchups: Vec<(Conv, String, Value)> = self
            .dms
            .iter()
            .map(|(key, (shown, seq))| {
                (Conv::Dm(key.clone()), shown.clone(), json!({"type": "history", "with": shown, "after": seq}))
            })
            .collect();
        if let Some(seq) = self.everyone_seq {
            catchups.push((
                Conv::Everyone,
                "everyone".into(),
                json!({"type": "history", "everyone": true, "after": seq}),
            ));
        }
        for (conv, display, mut frame) in catchups {
            let id = self.id();
            frame["id"] = json!(id);
            frames.push(frame.to_string());
            self.inflight.insert(id, (frame, Request::Catchup { conv, display }));
        }
        frames
    }

    /// The connection ended. After a graceful close (a `shutdown` notice,
    /// close 1001, or our own `/nick`) the server answered everything it
    /// read, so what is unanswered was not read and goes again. After a
    /// drop, a `say` may or may not have been stored: it is reported, not
    /// repeated (a repeat could post it twice).
    pub fn disconnected(&mut self, graceful: bool, out: &mut Vec<Line>) {
        let mut lost: Vec<(u64, Value, Request)> =
            self.inflight.drain().map(|(id, (frame, req))| (id, frame, req)).collect();
        lost.sort_by_key(|(id, ..)| *id);
        for (id, mut frame, req) in lost {
            match req {
                Request::Typing | Request::Rejoin(_) | Request::Catchup { .. } => {}
                Request::Say(target) if !graceful => {
                    self.failures += 1;
                    out.push(Line {
                        at: now_ms(),
                        body: Body::Error {
                            context: Some(target.describe().replace("not sent", "maybe not sent")),
                            message: "the connection dropped before the server confirmed it".into(),
                        },
                    });
                }
                req => {
                    if let Some(m) = frame.as_object_mut() {
                        m.remove("id");
                    }
                    self.outbox.insert(id, Item::Frame { frame, req });
                }
            }
        }
        self.shutdown_notice = false;
    }

    /// Gives up on everything still queued or unanswered (the connection is
    /// gone for good); each counts as a failure.
    pub fn abandon(&mut self, out: &mut Vec<Line>) {
        let n = self.outbox.len() + self.inflight.values().filter(|(_, r)| !matches!(r, Request::Typing)).count();
        self.outbox.clear();
        self.inflight.clear();
        if n > 0 {
            self.failures += n as u32;
            let s = if n == 1 { "" } else { "s" };
            out.push(Line {
                at: now_ms(),
                body: Body::Error { context: None, message: format!("{n} request{s} not sent: no connection") },
            });
        }
    }

    fn take(&mut self, id: &Option<Value>) -> Option<(u64, Value, Request)> {
        let id = wire::request_id(id)?;
        self.inflight.remove(&id).map(|(frame, req)| (id, frame, req))
    }

    fn conv_of(&self, m: &Message) -> Option<(Conv, Place)> {
        if let Some(room) = &m.room {
            return Some((Conv::Room(room.to_ascii_lowercase()), Place::Room(room.clone())));
        }
        if let Some(to) = &m.to {
            return Some(if m.from.eq_ignore_ascii_case(&self.nick) {
                (Conv::Dm(to.to_ascii_lowercase()), Place::DmTo(to.clone()))
            } else {
                (Conv::Dm(m.from.to_ascii_lowercase()), Place::DmFrom(m.from.clone()))
            });
        }
        m.everyone.then_some((Conv::Everyone, Place::All))
    }

    fn last_seq(&mut self, conv: &Conv) -> Option<&mut u64> {
        match conv {
            Conv::Room(key) => self.rooms.iter_mut().find(|r| &r.key == key).and_then(|r| r.last_seq.as_mut()),
            Conv::Dm(key) => self.dms.get_mut(key).map(|(_, s)| s),
            Conv::Everyone => self.everyone_seq.as_mut(),
        }
    }

    /// Records `seq` as seen in `conv`; false if it was seen already.
    fn fresh(&mut self, conv: &Conv, place: &Place, seq: u64) -> bool {
        if let Some(last) = self.last_seq(conv) {
            if seq <= *last {
                return false;
            }
            *last = seq;
            return true;
        }
        match (conv, place) {
            (Conv::Dm(key), Place::DmTo(peer) | Place::DmFrom(peer)) => {
                self.dms.insert(key.clone(), (peer.clone(), seq));
            }
            (Conv::Everyone, _) => self.everyone_seq = Some(seq),
            // A room we are not in (any more): nothing to resume.
            _ => {}
        }
        true
    }

    fn msg_line(&self, m: &Message, place: Place) -> Line {
        let mine = m.from.eq_ignore_ascii_case(&self.nick);
        let body = Body::Msg(Msg {
            place,
            from: m.from.clone(),
            text: m.text.clone(),
            mine,
            edited: m.edited_at.is_some(),
            deleted: m.deleted,
        });
        Line { at: m.sent_at, body }
    }

    /// A message as it arrives live (or on resume): shown once.
    fn live_message(&mut self, m: &Message, out: &mut Vec<Line>) {
        let Some((conv, place)) = self.conv_of(m) else { return };
        if !self.fresh(&conv, &place, m.seq) {
            return;
        }
        self.typing.remove(&(conv, m.from.to_ascii_lowercase()));
        self.remember(&m.from);
        out.push(self.msg_line(m, place));
    }

    /// One server frame (text). Frames this client cannot read are ignored.
    pub fn frame(&mut self, text: &str, out: &mut Vec<Line>) {
        let Some(frame) = Incoming::parse(text) else { return };
        let at = now_ms();
        match frame {
            Incoming::Welcome(_) | Incoming::Other => {}
            Incoming::Joined(j) => self.joined(j, out),
            Incoming::Left(l) => {
                let req = self.take(&l.id);
                if let Some(i) = self.room_index(&l.room) {
                    // A `left` answering an old /leave must not drop a room joined again since.
                    if req.is_none() || self.rooms[i].last_seq.is_some() {
                        self.rooms.remove(i);
                        self.fix_current();
                    }
                }
                out.push(Line { at, body: Body::Left { room: l.room, reason: l.reason, by: l.by } });
            }
            Incoming::Rooms(r) => {
                self.take(&r.id);
                let rooms = r.rooms.into_iter().map(|r| (r.name, r.members)).collect();
                out.push(Line { at, body: Body::Rooms(rooms) });
            }
            Incoming::RoomStatus(s) => {
                self.take(&s.id);
                s.members.iter().for_each(|m| self.remember(&m.nick));
                let members = s.members.into_iter().map(|m| (m.nick, m.away)).collect();
                out.push(Line { at, body: Body::Who { room: s.room, topic: s.topic, members } });
            }
            Incoming::Topic(t) => out.push(Line { at, body: Body::Topic { room: t.room, topic: t.topic, by: t.by } }),
            Incoming::Message(m) => self.live_message(&m, out),
            Incoming::Ack(a) => match self.take(&a.id) {
                Some((_, _, Request::Say(_))) => {
                    if let Some(m) = a.message
                        && let Some((conv, place)) = self.conv_of(&m)
                    {
                        // Our own message: shown even if a later seq was seen first.
                        self.fresh(&conv, &place, m.seq);
                        out.push(self.msg_line(&m, place));
                    }
                }
                Some((_, _, Request::Away(away))) => out.push(Line { at, body: Body::Away(away) }),
                _ => {}
            },
            Incoming::History(h) => match self.take(&h.id) {
                Some((_, _, Request::History(room))) => {
                    out.push(Line {
                        at,
                        body: Body::HistoryHead { room: room.clone(), count: h.messages.len(), more: h.more },
                    });
                    for m in &h.messages {
                        out.push(self.msg_line(m, Place::Room(room.clone())));
                    }
                }
                Some((_, mut frame, Request::Catchup { conv, display })) => {
                    for m in &h.messages {
                        self.live_message(m, out);
                    }
                    if h.more
                        && let Some(last) = self.last_seq(&conv).copied()
                    {
                        frame["after"] = json!(last);
                        if let Some(m) = frame.as_object_mut() {
                            m.remove("id");
                        }
                        self.enqueue(frame, Request::Catchup { conv, display });
                    }
                }
                _ => {}
            },
            Incoming::Edited(e) => {
                if let Some(place) = self.place_of(e.room, e.with, e.everyone) {
                    out.push(Line { at, body: Body::Edited { place, text: e.text } });
                }
            }
            Incoming::Deleted(d) => {
                if let Some(place) = self.place_of(d.room, d.with, d.everyone) {
                    out.push(Line { at, body: Body::Deleted { place } });
                }
            }
            Incoming::Typing(t) => {
                let (conv, place) = match (t.room, t.from) {
                    (Some(room), _) => (Conv::Room(room.to_ascii_lowercase()), Place::Room(room)),
                    (None, Some(from)) => (Conv::Dm(from.to_ascii_lowercase()), Place::DmFrom(from)),
                    (None, None) => return,
                };
                let key = (conv, t.nick.to_ascii_lowercase());
                let now = Instant::now();
                if !t.active {
                    self.typing.remove(&key);
                } else if self.typing.insert(key, now).is_none_or(|seen| now.duration_since(seen) >= TYPING_LAPSE) {
                    out.push(Line { at, body: Body::Typing { place, nick: t.nick } });
                }
            }
            Incoming::Presence(p) => {
                self.typing.remove(&(Conv::Room(p.room.to_ascii_lowercase()), p.nick.to_ascii_lowercase()));
                if p.event == "join" {
                    self.remember(&p.nick);
                }
                out.push(Line { at, body: Body::Presence { room: p.room, nick: p.nick, event: p.event } });
            }
            Incoming::Status(s) => {
                out.push(Line { at, body: Body::Status { nick: s.nick, online: s.online, away: s.away } })
            }
            Incoming::Notice(n) => {
                if n.code == "shutdown" {
                    self.shutdown_notice = true;
                }
                let message = if n.message.is_empty() { n.code } else { n.message };
                out.push(Line { at, body: Body::Notice(message) });
            }
            Incoming::Error(e) => self.error(e, out),
        }
    }

    fn place_of(&self, room: Option<String>, with: Option<String>, everyone: bool) -> Option<Place> {
        match (room, with) {
            (Some(room), _) => Some(Place::Room(room)),
            (None, Some(with)) => Some(Place::DmFrom(with)),
            (None, None) => everyone.then_some(Place::All),
        }
    }

    fn joined(&mut self, j: wire::Joined, out: &mut Vec<Line>) {
        let req = self.take(&j.id).map(|(_, _, r)| r);
        let at = now_ms();
        j.members.iter().for_each(|m| self.remember(&m.nick));
        let i = match self.room_index(&j.room) {
            Some(i) => i,
            None => {
                // Joined by the server (auto-join) or a join we since left again.
                self.rooms.push(Room { key: j.room.to_ascii_lowercase(), name: j.room.clone(), last_seq: None });
                self.rooms.len() - 1
            }
        };
        let was_in = self.rooms[i].last_seq.is_some();
        self.rooms[i].name = j.room.clone();
        if !was_in || matches!(req, Some(Request::Join(_))) {
            let members = j.members.iter().map(|m| (m.nick.clone(), m.away)).collect();
            out.push(Line { at, body: Body::Joined { room: j.room.clone(), topic: j.topic.clone(), members } });
        }
        let conv = Conv::Room(self.rooms[i].key.clone());
        if was_in {
            // Back after a reconnect: only what was missed, once.
            for m in &j.history {
                self.live_message(m, out);
            }
            if j.more
                && let Some(last) = self.rooms[i].last_seq
            {
                let frame = json!({"type": "history", "room": j.room, "after": last});
                self.enqueue(frame, Request::Catchup { conv, display: j.room.clone() });
            }
        } else {
            for m in &j.history {
                self.remember(&m.from);
                out.push(self.msg_line(m, Place::Room(j.room.clone())));
            }
            if j.more {
                out.push(Line { at, body: Body::OlderMessages { room: j.room.clone() } });
            }
        }
        let newest = j.history.iter().map(|m| m.seq).max().unwrap_or(0).max(j.seq);
        let last = self.rooms[i].last_seq.get_or_insert(0);
        *last = (*last).max(newest);
        if self.current.is_none() {
            self.current = Some(self.rooms[i].key.clone());
        }
    }

    fn error(&mut self, e: wire::ErrorFrame, out: &mut Vec<Line>) {
        let at = now_ms();
        let taken = self.take(&e.id);
        if e.code == "rate_limited"
            && let Some((id, mut frame, req)) = taken
        {
            // Refused before it did anything: wait as told, then send it again.
            if !matches!(req, Request::Typing) {
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(1000).clamp(10, 60_000));
                self.bucket.paused_until = Some(Instant::now() + wait);
                if let Some(m) = frame.as_object_mut() {
                    m.remove("id");
                }
                self.outbox.insert(id, Item::Frame { frame, req });
            }
            return;
        }
        let message = if e.message.is_empty() { e.code.clone() } else { e.message.clone() };
        let context = match taken.map(|(_, _, r)| r) {
            Some(Request::Typing) => return,
            Some(Request::Say(target)) => Some(target.describe()),
            Some(Request::Join(room)) => {
                // Not in it after all (a failed /join of a room we are in changes nothing).
                if let Some(i) = self.room_index(&room)
                    && self.rooms[i].last_seq.is_none()
                {
                    self.rooms.remove(i);
                    self.fix_current();
                }
                Some(format!("cannot join {room}"))
            }
            Some(Request::Rejoin(room)) => {
                if let Some(i) = self.room_index(&room) {
                    self.rooms.remove(i);
                    self.fix_current();
                }
                Some(format!("cannot join {room} again"))
            }
            Some(Request::Leave(room)) => Some(format!("cannot leave {room}")),
            Some(Request::Who(room)) => Some(format!("cannot list who is in {room}")),
            Some(Request::Rooms) => Some("cannot list the rooms".into()),
            Some(Request::History(room)) => Some(format!("no history of {room}")),
            Some(Request::Catchup { display, .. }) => Some(format!("cannot catch up with {display}")),
            Some(Request::Away(away)) => {
                self.away = !away;
                Some("cannot change your away status".into())
            }
            None => None,
        };
        self.failures += 1;
        out.push(Line { at, body: Body::Error { context, message } });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(s: &mut Session) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Next::Send(text) = s.next(Instant::now()) {
            frames.push(serde_json::from_str(&text).unwrap());
        }
        frames
    }

    fn bodies(lines: &[Line]) -> Vec<&Body> {
        lines.iter().map(|l| &l.body).collect()
    }

    #[test]
    fn join_then_say_goes_to_the_new_room_at_once() {
        let mut s = Session::new("alice".into(), 20);
        let mut out = Vec::new();
        s.input("/join dev", &mut out);
        s.input("hello", &mut out);
        assert!(out.is_empty());
        assert_eq!(
            sent(&mut s),
            vec![
                json!({"type": "join", "room": "dev", "history": 20, "id": 1}),
                json!({"type": "say", "room": "dev", "text": "hello", "id": 2}),
            ]
        );
        assert!(!s.settled());
        s.frame(r#"{"type":"joined","id":1,"room":"dev","topic":"","members":[],"seq":3,"history":[]}"#, &mut out);
        s.frame(r#"{"type":"ack","id":2,"message":{"room":"dev","seq":4,"from":"alice","text":"hello"}}"#, &mut out);
        assert!(s.settled());
        assert_eq!(out.len(), 2);
        // A duplicate of a message seen already is not shown again.
        s.frame(r#"{"type":"message","room":"dev","seq":4,"from":"alice","text":"hello"}"#, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(s.failures, 0);
    }

    #[test]
    fn bad_lines_and_refusals_count() {
        let mut s = Session::new("alice".into(), 20);
        let mut out = Vec::new();
        s.input("/jion dev", &mut out);
        s.input("no room yet", &mut out);
        assert_eq!((s.usage_errors, s.failures), (1, 1));
        assert!(sent(&mut s).is_empty());
        s.input("/msg bob hi", &mut out);
        assert_eq!(sent(&mut s).len(), 1);
        s.frame(r#"{"type":"error","id":1,"code":"no_such_user","message":"nobody called bob"}"#, &mut out);
        assert_eq!(s.failures, 2);
        assert_eq!(
            out.last().unwrap().body,
            Body::Error { context: Some("not sent to bob".into()), message: "nobody called bob".into() }
        );
    }

    #[test]
    fn rate_limited_is_retried_after_the_pause() {
        let mut s = Session::new("alice".into(), 20);
        let mut out = Vec::new();
        s.input("/msg bob one", &mut out);
        assert_eq!(sent(&mut s).len(), 1);
        s.frame(
            r#"{"type":"error","id":1,"code":"rate_limited","message":"slow down","retry_after_ms":500}"#,
            &mut out,
        );
        assert!(out.is_empty());
        assert!(matches!(s.next(Instant::now()), Next::Wait(_)));
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(s.next(later), Next::Send(json!({"type":"say","to":"bob","text":"one","id":1}).to_string()));
    }

    #[test]
    fn resume_after_reconnect() {
        let mut s = Session::new("alice".into(), 20);
        let mut out = Vec::new();
        s.input("/join dev", &mut out);
        sent(&mut s);
        s.frame(r#"{"type":"joined","id":1,"room":"dev","members":[],"seq":7,"history":[]}"#, &mut out);
        s.frame(r#"{"type":"message","to":"alice","seq":2,"from":"bob","text":"psst"}"#, &mut out);
        s.input("lost?", &mut out);
        sent(&mut s);
        out.clear();
        s.disconnected(false, &mut out);
        assert_eq!(s.failures, 1, "{out:?}");
        let welcome = wire::Welcome { nick: "alice".into(), ..Default::default() };
        let frames: Vec<Value> = s.welcomed(&welcome).iter().map(|f| serde_json::from_str(f).unwrap()).collect();
        assert_eq!(
            frames,
            vec![
                json!({"type": "join", "room": "dev", "since": 7, "id": 3}),
                json!({"type": "history", "with": "bob", "after": 2, "id": 4}),
            ]
        );
        out.clear();
        s.frame(
            r#"{"type":"joined","id":3,"room":"dev","members":[],"seq":9,
                "history":[{"room":"dev","seq":8,"from":"bob","text":"missed"},{"room":"dev","seq":9,"from":"bob","text":"too"}]}"#,
            &mut out,
        );
        assert_eq!(out.len(), 2, "{:?}", bodies(&out));
        assert!(s.settled() || !s.inflight.is_empty());
    }
}
