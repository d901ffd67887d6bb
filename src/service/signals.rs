//! What is not stored: read receipts, typing, events, watching nicks,
//! away. They skip the durable step and go straight to the bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Session;
use super::access::not_in_room;
use crate::cluster::Except;
use crate::protocol::server::{Conv, Origin, Place, status_code};
use crate::protocol::{ErrorCode, Name, ProtoError, ServerFrame, Target, encode, now_ms};

/// Receivers treat `typing: true` as lapsed after this long without a repeat.
const TYPING_LAPSE: Duration = Duration::from_secs(6);

impl Session {
    /// A read receipt: the room's other members, or the DM's other party
    /// (and this user's other sessions), learn how far this user has read.
    pub(crate) async fn read(&mut self, conv: Target, seq: u64) -> Result<(), ProtoError> {
        let (svc, me) = (&self.svc, self.handle.nick().clone());
        match conv {
            Target::Room(r) => {
                let name = self.handle.joined_room(r.key()).ok_or_else(|| not_in_room(&r))?;
                let frame = encode(&ServerFrame::Read { place: Place::room(&name), nick: me.as_str(), seq });
                svc.bus.to_room(r.key(), &frame, Except::Session(self.handle.id)).await?;
            }
            Target::User(u) => {
                if u.key() == me.key() {
                    return Err(ProtoError::invalid("`with`: name the other party of the conversation"));
                }
                let theirs = encode(&ServerFrame::Read { place: Place::with(me.as_str()), nick: me.as_str(), seq });
                svc.bus.to_user(u.key(), &theirs, None).await?;
                let mine = encode(&ServerFrame::Read { place: Place::with(u.as_str()), nick: me.as_str(), seq });
                svc.bus.to_user(me.key(), &mine, Some(self.handle.id)).await?;
            }
            Target::Everyone => {
                return Err(ProtoError::invalid("`everyone`: read receipts are for rooms and direct messages"));
            }
        }
        Ok(())
    }

    /// Shows (or stops showing) that this user is typing in a room or to a
    /// user; a message sent there soon after clears it too.
    pub(crate) async fn typing(&mut self, target: Target, active: bool) -> Result<(), ProtoError> {
        let (svc, me) = (&self.svc, self.handle.nick().clone());
        let conv = match &target {
            Target::Room(r) => {
                self.handle.joined_room(r.key()).ok_or_else(|| not_in_room(r))?;
                let name = svc.may_speak_here(&self.handle, r.key())?;
                let origin = Origin { room: Some(&name), from: None };
                let frame = encode(&ServerFrame::Typing { origin, nick: me.as_str(), active });
                svc.bus.to_room(r.key(), &frame, Except::User(me.key())).await?;
                Conv::Room(r.key().clone())
            }
            Target::User(u) => {
                if u.key() == me.key() {
                    return Err(ProtoError::invalid("`to`: you cannot type to yourself"));
                }
                let origin = Origin { room: None, from: Some(me.as_str()) };
                let frame = encode(&ServerFrame::Typing { origin, nick: me.as_str(), active });
                svc.bus.to_user(u.key(), &frame, None).await?;
                Conv::dm(me.key(), u.key())
            }
            Target::Everyone => {
                return Err(ProtoError::invalid("`typing` goes to a room or a user"));
            }
        };
        self.typing.retain(|(c, _)| *c != conv);
        if active {
            self.typing.push((conv, Instant::now()));
        }
        Ok(())
    }

    /// Forgets the typing state for `conv`; true if it was still active,
    /// so that the message's arrival also clears the indicator.
    pub(super) fn stop_typing(&mut self, conv: &Conv) -> bool {
        match self.typing.iter().position(|(c, _)| c == conv) {
            Some(i) => self.typing.swap_remove(i).1.elapsed() < TYPING_LAPSE,
            None => false,
        }
    }

    /// An application event (not stored) to a room's other members or to
    /// a user who is online.
    pub(crate) async fn event(&mut self, target: Target, name: &str, data: &Value) -> Result<(), ProtoError> {
        let (svc, me) = (&self.svc, self.handle.nick().clone());
        let max = svc.config.limits.max_event_bytes;
        let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
        if size > max {
            return Err(ProtoError::new(ErrorCode::TooLarge, format!("`data` is {size} bytes; the limit is {max}")));
        }
        match &target {
            Target::Room(r) => {
                self.handle.joined_room(r.key()).ok_or_else(|| not_in_room(r))?;
                let room = svc.may_speak_here(&self.handle, r.key())?;
                let origin = Origin { room: Some(&room), from: None };
                let frame = encode(&ServerFrame::Event { origin, nick: me.as_str(), name, data });
                svc.bus.to_room(r.key(), &frame, Except::Session(self.handle.id)).await?;
            }
            Target::User(u) => {
                if u.key() == me.key() {
                    return Err(ProtoError::invalid("`to`: you cannot send an event to yourself"));
                }
                if svc.bus.online(u.key()).await?.is_none() {
                    return Err(ProtoError::new(ErrorCode::NoSuchUser, format!("`{u}` is not online")));
                }
                let origin = Origin { room: None, from: Some(me.as_str()) };
                let frame = encode(&ServerFrame::Event { origin, nick: me.as_str(), name, data });
                svc.bus.to_user(u.key(), &frame, None).await?;
            }
            Target::Everyone => {
                return Err(ProtoError::invalid("`event` goes to a room or a user"));
            }
        }
        Ok(())
    }

    /// Watches nicks: a `status` for each now, and whenever it changes.
    pub(crate) async fn watch(&mut self, nicks: &[Name]) -> Result<(), ProtoError> {
        let svc = &self.svc;
        // Asked again about a nick it watches, a session is answered even if
        // nothing changed.
        let before: Vec<Arc<str>> = self.handle.watching();
        svc.hub.watch(&self.handle, nicks, svc.config.limits.max_watch)?;
        let mut seen: Vec<&Arc<str>> = Vec::with_capacity(nicks.len());
        for nick in nicks {
            if seen.contains(&nick.key()) {
                continue;
            }
            seen.push(nick.key());
            let (frame, code) = match svc.bus.online(nick.key()).await? {
                Some(o) => (
                    encode(&ServerFrame::Status {
                        nick: &o.nick,
                        online: true,
                        away: o.away,
                        last_seen: Some(now_ms()),
                    }),
                    status_code(true, o.away),
                ),
                None => {
                    let last_seen = svc.store.last_seen(nick.key()).await?;
                    let frame =
                        encode(&ServerFrame::Status { nick: nick.as_str(), online: false, away: false, last_seen });
                    (frame, status_code(false, false))
                }
            };
            svc.hub.status_to(&self.handle, nick.key(), &frame, code, before.contains(nick.key()));
        }
        Ok(())
    }

    pub(crate) fn unwatch(&mut self, nicks: &[Name]) {
        self.svc.hub.unwatch(&self.handle, nicks);
    }

    /// Sets this user away or back; watchers hear of a change.
    pub(crate) async fn away(&mut self, away: bool) -> Result<(), ProtoError> {
        self.svc.bus.set_away(&self.handle, away).await
    }
}
