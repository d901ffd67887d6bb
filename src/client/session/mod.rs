//! The client's state, without I/O: the rooms it is in and the last `seq`
//! seen in each conversation (for resuming), the current room, requests in
//! flight by id, and the outbox of frames waiting to be sent.
//!
//! The driver ([`super::conn`]) feeds it typed lines and server frames and
//! gets back [`Line`]s to show and frames to send. Commands change the local
//! state at once (a `/join dev` then `hello` sends `hello` to `dev`, as the
//! server reads frames in order); replies confirm or undo.

mod incoming;
mod pacing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use pacing::Bucket;

use super::command::{self, Command};
use super::render::{self, Body, Line};
use super::wire;

/// How long a `typing` indication lasts without a repeat (PROTOCOL.md).
const TYPING_LAPSE: Duration = Duration::from_secs(6);
/// Nicks remembered for tab completion, at most.
const MAX_KNOWN_NICKS: usize = 10_000;

pub(crate) fn now_ms() -> i64 {
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
pub(crate) enum Next {
    /// Send this text frame.
    Send(String),
    /// Close the connection and reconnect as this nick.
    Renick(String),
    /// Nothing may go before then (the rate limit).
    Wait(Instant),
    /// Nothing to send now.
    Idle,
}

struct Room {
    key: String,
    /// As the server spells it (as typed until `joined` confirms).
    name: String,
    /// The last `seq` seen; `None` until `joined` arrives.
    last_seq: Option<u64>,
}

pub(crate) struct Session {
    pub(crate) nick: String,
    guest: bool,
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
    /// Rooms the server joins us to on `welcome` whose `joined` has not come yet.
    auto_joining: Vec<String>,
    /// A `shutdown` notice arrived: the coming close is graceful.
    pub(crate) shutdown_notice: bool,
    /// `/quit` was typed.
    pub(crate) quit: bool,
    /// Requests the server refused, or that were lost with the connection.
    pub(crate) failures: u32,
    /// Lines that were not valid commands.
    pub(crate) usage_errors: u32,
    /// `http://host:port` of the server, for file URLs and uploads.
    pub(crate) http_base: String,
    /// `welcome.token`: the bearer for uploads.
    pub(crate) token: Option<String>,
    /// `/upload`s for the driver to start, and how many are under way.
    uploads: Vec<UploadJob>,
    uploading: usize,
}

/// A file to upload, then to say in `room` with `text`.
#[derive(Clone, Debug)]
pub(crate) struct UploadJob {
    pub(crate) path: String,
    pub(crate) text: String,
    /// Where the message goes once the file is up: a room or a nick.
    to: Target,
}

impl Session {
    /// `guest`: the nick is ours to change (not from a token or account).
    pub(crate) fn new(nick: String, guest: bool, history_on_join: u32) -> Session {
        Session {
            nick,
            guest,
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
            auto_joining: Vec::new(),
            shutdown_notice: false,
            quit: false,
            failures: 0,
            usage_errors: 0,
            http_base: String::new(),
            token: None,
            uploads: Vec::new(),
            uploading: 0,
        }
    }

    /// The uploads to start now (each is under way until [`Session::uploaded`]).
    pub(crate) fn take_uploads(&mut self) -> Vec<UploadJob> {
        let jobs = std::mem::take(&mut self.uploads);
        self.uploading += jobs.len();
        jobs
    }

    /// An upload finished: say it (with its text) in its room, or report why not.
    pub(crate) fn uploaded(&mut self, job: UploadJob, result: Result<String, String>, out: &mut Vec<Line>) {
        self.uploading = self.uploading.saturating_sub(1);
        match result {
            Ok(id) => {
                let frame = match &job.to {
                    Target::Room(room) => json!({"type": "say", "room": room, "text": job.text, "attachments": [id]}),
                    Target::Dm(nick) => json!({"type": "say", "to": nick, "text": job.text, "attachments": [id]}),
                    Target::Everyone => json!({"type": "say", "everyone": true, "text": job.text, "attachments": [id]}),
                };
                self.enqueue(frame, Request::Say(job.to));
            }
            Err(why) => self.fail(format!("{} not sent: {why}", job.path), out),
        }
    }

    /// The current room as shown, if any.
    pub(crate) fn current_room(&self) -> Option<&str> {
        let key = self.current.as_ref()?;
        self.rooms.iter().find(|r| &r.key == key).map(|r| r.name.as_str())
    }

    pub(crate) fn room_names(&self) -> Vec<String> {
        self.rooms.iter().map(|r| r.name.clone()).collect()
    }

    pub(crate) fn known_nicks(&self) -> Vec<String> {
        self.known_nicks.iter().cloned().collect()
    }

    /// Whether rooms joined on `welcome` are still to be confirmed (the
    /// terminal waits for them before the first prompt, which names the room).
    pub(crate) fn auto_joining(&self) -> bool {
        !self.auto_joining.is_empty()
    }

    /// Frames waiting to be sent (the driver stops reading input past a cap).
    pub(crate) fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// Nothing queued and every request that matters answered.
    pub(crate) fn settled(&self) -> bool {
        self.uploads.is_empty()
            && self.uploading == 0
            && self.outbox.is_empty()
            && self.inflight.values().all(|(_, r)| matches!(r, Request::Typing))
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
    pub(crate) fn input(&mut self, line: &str, out: &mut Vec<Line>) {
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

    pub(crate) fn command(&mut self, cmd: Command, out: &mut Vec<Line>) {
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
            Command::Upload { to, path, text } => {
                let to = match to {
                    Some(nick) => Target::Dm(nick),
                    None => match self.need_room(out) {
                        Some(room) => Target::Room(room),
                        None => return,
                    },
                };
                if self.token.is_none() {
                    return self.fail("this server gave no token for uploads", out);
                }
                self.uploads.push(UploadJob { path, text, to });
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
            Command::Nick(_) if !self.guest => {
                self.fail("your nick comes from your token or account: /nick is for guests", out);
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
    pub(crate) fn typing(&mut self, active: bool) {
        if let Some(room) = self.current_room().map(str::to_owned) {
            self.enqueue(json!({"type": "typing", "room": room, "active": active}), Request::Typing);
        }
    }

    /// What to send next (call until it says `Wait` or `Idle`).
    pub(crate) fn next(&mut self, now: Instant) -> Next {
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
    pub(crate) fn welcomed(&mut self, welcome: &wire::Welcome) -> Vec<String> {
        if !welcome.nick.is_empty() {
            self.nick = welcome.nick.clone();
        }
        self.token = welcome.token.clone();
        let limits = &welcome.limits;
        self.bucket = Bucket::new(limits.rate_per_sec.unwrap_or(10.0), limits.burst.unwrap_or(20.0), Instant::now());
        self.typing.clear();
        self.auto_joining = welcome.rooms.iter().map(|r| r.to_ascii_lowercase()).collect();
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
    pub(crate) fn disconnected(&mut self, graceful: bool, out: &mut Vec<Line>) {
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
    pub(crate) fn abandon(&mut self, out: &mut Vec<Line>) {
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
}
