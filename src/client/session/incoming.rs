//! Server frames: replies matched to their requests by id, and events.
//! Each message is shown once: a `seq` at or below the last one seen in its
//! conversation is a duplicate (a resume overlapping what arrived live).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Conv, Item, Request, Room, Session, TYPING_LAPSE, now_ms};
use crate::client::render::{Body, Line, Msg, Place};
use crate::client::wire::{self, Incoming, Message};

impl Session {
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
            files: m
                .attachments
                .iter()
                .map(|a| {
                    let url =
                        if a.url.starts_with('/') { format!("{}{}", self.http_base, a.url) } else { a.url.clone() };
                    (a.name.clone(), a.size, url)
                })
                .collect(),
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
    pub(crate) fn frame(&mut self, text: &str, out: &mut Vec<Line>) {
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
        let key = j.room.to_ascii_lowercase();
        self.auto_joining.retain(|r| *r != key);
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
