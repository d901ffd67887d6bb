//! Rooms: what a session does (join, leave, who, rooms, topic, kick), and
//! the HTTP API's room operations (list, create, status, destroy, members).

use std::sync::Arc;

use super::access::{forbidden, no_such_room, not_in_room};
use super::{Caller, Service, Session};
use crate::hub::Parting;
use crate::model::{HistoryQuery, Page, Role, RoomModes, RoomRecord};
use crate::protocol::server::{Conv, MemberView, RoomSummary};
use crate::protocol::{ErrorCode, FrameId, Name, ProtoError, ServerFrame, encode};

/// A room's name, topic and members online (`who`, `GET /api/rooms/{room}`).
pub(crate) struct RoomView {
    pub(crate) name: Arc<str>,
    pub(crate) topic: Arc<str>,
    pub(crate) members: Vec<MemberView>,
}

impl Session {
    /// Joins `room` (creating it live if allowed): the others see the
    /// user come, and this session gets `joined` with the history it asked
    /// for (`since` a seq, or the latest `history` messages) before any
    /// newer message.
    pub(crate) async fn join(
        &mut self,
        id: Option<&FrameId>,
        room: &Name,
        since: Option<u64>,
        history: Option<u64>,
    ) -> Result<(), ProtoError> {
        self.join_keyed(id, room, since, history, None).await
    }

    /// [`Session::join`] with the room's key, if it has one (`+k`).
    pub(crate) async fn join_keyed(
        &mut self,
        id: Option<&FrameId>,
        room: &Name,
        since: Option<u64>,
        history: Option<u64>,
        join_key: Option<&str>,
    ) -> Result<(), ProtoError> {
        let svc = self.svc.clone();
        let (room_key, limits) = (room.key(), &svc.config.limits);
        let key = room_key;
        let already = self.handle.joined_room(key).is_some();
        if !already && self.handle.rooms().len() >= limits.max_rooms_per_session {
            return Err(forbidden(format!(
                "a session may be in at most {} rooms: leave one first",
                limits.max_rooms_per_session
            )));
        }
        // Who may come at all (the token's `rooms` claim, the hook) is
        // asked before anything changes; a session in the room already
        // (a resync) is not asked again, nor checked by the room's settings.
        if !already {
            svc.may_come(&self.identity, room).await?;
        }
        let mut record = svc.store.room(key).await?;
        // Rooms named in `rooms.auto_join` exist by configuration.
        let configured = svc.config.rooms.auto_join.iter().any(|r| r.eq_ignore_ascii_case(key));
        if let Some(r) = &mut record
            && !already
        {
            r.bans = svc.store.room_bans(key).await?.into_iter().map(|b| b.mask).collect();
            // A room made by joining is its members' while it lives (as an
            // IRC channel): made again, it starts without the settings,
            // bans and members it had.
            let set = r.private || r.modes != RoomModes::default() || !r.bans.is_empty();
            if set && !r.managed && !configured && svc.bus.room_name(key).await?.is_none() {
                svc.store.reset_room(key).await?;
                (r.private, r.modes, r.bans) = (false, RoomModes::default(), Vec::new());
            }
        }
        if record.is_none()
            && !svc.config.rooms.create_on_join
            && !configured
            && svc.bus.room_name(key).await?.is_none()
        {
            return Err(no_such_room(room));
        }
        let role = match already {
            true => None,
            false => svc.may_enter(&self.identity, room, record.as_ref(), join_key).await?,
        };
        let moderator = role == Some(Role::Moderator);
        // A room not made through the API (none, or made by joining: its
        // record only keeps its history) and not configured is made by
        // this join if nobody is in it.
        let unowned = !record.as_ref().is_some_and(|r| r.managed) && !configured;
        let mut start = svc.bus.join_begin(&self.handle, room, record, role).await?;
        self.member_list(&mut start.members);
        // Whoever creates a room by joining it moderates it while in it.
        if unowned && !start.already && !moderator {
            let me = self.handle.nick().as_str();
            if start.members.iter().all(|m| m.nick.eq_ignore_ascii_case(me)) {
                svc.hub.made_by(&self.handle, key, start.seq);
            }
        }
        let query = match since {
            Some(since) => HistoryQuery {
                after: Some(since),
                upto: Some(start.seq),
                limit: limits.history_max,
                ..Default::default()
            },
            None => HistoryQuery {
                upto: Some(start.seq),
                limit: history.map_or(limits.history_default, |h| (h as usize).min(limits.history_max)),
                ..Default::default()
            },
        };
        let forwards = query.after.is_some();
        let page = if query.limit == 0 {
            Page::default()
        } else {
            match svc.bus.history(&Conv::Room(key.clone()), query).await {
                Ok(mut page) => {
                    super::page::cap_page(&mut page, forwards, limits.history_max_bytes);
                    page
                }
                Err(e) => {
                    if !start.already {
                        svc.bus.leave(&self.handle, key, Parting::LEAVE).await;
                    }
                    return Err(e.into());
                }
            }
        };
        let joined = encode(&ServerFrame::Joined {
            id,
            room: &start.name,
            topic: &start.topic,
            members: &start.members,
            seq: start.seq,
            history: &page.messages,
            more: page.more,
            secret: start.secret,
            topic_by: Some(&*start.topic_by).filter(|b| !b.is_empty()),
            topic_at: Some(start.topic_at).filter(|at| *at > 0),
        });
        svc.hub.join_finish(&self.handle, key, &joined, start.seq);
        Ok(())
    }

    /// Leaves `room`, with the text the others see with it (at most
    /// `limits.max_topic` characters; longer is cut); returns its name as
    /// shown.
    pub(crate) async fn leave(&mut self, room: &Name, reason: Option<&str>) -> Result<Arc<str>, ProtoError> {
        let reason = self.svc.parting_text(reason);
        let how = Parting { reason: reason.as_deref(), ..Parting::LEAVE };
        let name = self.svc.bus.leave(&self.handle, room.key(), how).await.ok_or_else(|| not_in_room(room))?;
        self.typing.retain(|(c, _)| *c != Conv::Room(room.key().clone()));
        Ok(name)
    }

    /// The public rooms, live or created through the API.
    pub(crate) async fn rooms(&self) -> Result<Vec<RoomSummary>, ProtoError> {
        let svc = &self.svc;
        let mut rooms = svc.bus.room_list().await?;
        let stored = svc.store.list_rooms().await?;
        // Rooms created through the API exist with no members too.
        for r in stored.iter().filter(|r| r.managed) {
            if !rooms.iter().any(|l| l.name.eq_ignore_ascii_case(&r.name)) {
                let (name, topic, private) = (r.name.clone(), r.topic.clone(), r.private);
                rooms.push(RoomSummary { name, topic, members: 0, private });
            }
        }
        // Secret rooms (`+s`; private ones made through the API are) only
        // for those in them.
        rooms.retain(|l| {
            let secret = stored.iter().any(|r| r.modes.secret && r.name.eq_ignore_ascii_case(&l.name));
            !secret || self.handle.joined(&l.name.to_ascii_lowercase()).is_some()
        });
        Ok(rooms)
    }

    /// `who`: a room's name, topic and members (a private room's only for
    /// those who may look into it).
    pub(crate) async fn who(&self, room: &Name) -> Result<RoomView, ProtoError> {
        let svc = &self.svc;
        let in_room = self.handle.joined(room.key()).is_some();
        if !in_room && !self.identity.admin {
            let record = svc.store.room(room.key()).await?;
            svc.may_read_room(&Caller::User(self.identity.clone()), in_room, room, record.as_ref()).await?;
        }
        match svc.bus.who(room.key()).await? {
            Some((name, topic, mut members)) => {
                self.member_list(&mut members);
                Ok(RoomView { name, topic, members })
            }
            // Created through the API, and empty now.
            None => match svc.store.room(room.key()).await? {
                Some(r) if r.managed => Ok(RoomView { name: r.name, topic: r.topic, members: Vec::new() }),
                _ => Err(no_such_room(room)),
            },
        }
    }

    /// Sets a room's topic (moderators only in a managed or private room).
    pub(crate) async fn topic(&mut self, room: &Name, topic: String) -> Result<(), ProtoError> {
        let svc = &self.svc;
        let joined = self.handle.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        let name = joined.name;
        let record = svc.store.room(room.key()).await?;
        if record.is_some_and(|r| r.topic_locked()) && !joined.moderator {
            return Err(forbidden(format!("only moderators set the topic of `{name}`")));
        }
        let max = svc.config.limits.max_topic;
        let chars = topic.chars().count();
        if chars > max {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("`topic` is {chars} characters; the limit is {max}"),
            ));
        }
        let topic: Arc<str> = topic.trim().into();
        svc.store.set_topic(room.key(), &name, &topic).await?;
        svc.bus.set_topic(room.key(), topic, self.handle.nick().as_str()).await
    }

    /// A moderator invites a user to a room it is in: the user's sessions
    /// get `invited`. To a private room, the user is also added to its
    /// members (and its sessions join it, as [`Service::add_member`]).
    pub(crate) async fn invite(&mut self, room: &Name, nick: &Name) -> Result<(), ProtoError> {
        let svc = self.svc.clone();
        let joined = self.handle.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        if !joined.moderator {
            return Err(forbidden(format!("only moderators invite to `{}`", joined.name)));
        }
        if svc.store.room(room.key()).await?.is_some_and(|r| r.private) {
            // A member already (a moderator, say) keeps its role: an invite
            // only ever adds. The invitee is the user holding the nick now
            // (a guest too: its own id), else the nick's owner.
            let online = svc.bus.online(nick.key()).await?;
            let member = match &online {
                Some(o) => o.id.to_string(),
                None => svc.grantee(nick).await?,
            };
            if svc.store.member_role(room.key(), &member).await?.is_none() {
                if crate::model::ids::is_guest(&member) {
                    svc.store.set_member(room.key(), &member, Role::Member).await?;
                } else {
                    svc.add_member(room, &Grantee::Nick(nick.clone()), Role::Member).await?;
                }
            }
        } else if svc.bus.online(nick.key()).await?.is_none() {
            return Err(ProtoError::new(ErrorCode::NoSuchUser, format!("`{nick}` is not here")));
        }
        let frame = encode(&ServerFrame::Invited { room: &joined.name, by: self.handle.nick().as_str() });
        svc.bus.to_user(nick.key(), &frame, None).await?;
        Ok(())
    }

    /// The text the others see when this session quits (IRC's QUIT
    /// message; cut as [`Session::leave`]'s).
    pub(crate) fn quit_reason(&self, reason: &str) {
        if let Some(text) = self.svc.parting_text(Some(reason)) {
            self.handle.set_parting(text.into());
        }
    }

    /// A moderator removes a user's sessions from a room, with an optional
    /// comment (cut as [`Session::leave`]'s reason); from a private room,
    /// also from its member list, so that it cannot come back.
    pub(crate) async fn kick(&mut self, room: &Name, nick: &Name, comment: Option<&str>) -> Result<(), ProtoError> {
        let svc = &self.svc;
        let joined = self.handle.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        if !joined.moderator {
            return Err(forbidden(format!("only moderators kick from `{}`", joined.name)));
        }
        let record = svc.store.room(room.key()).await?;
        let removed = match svc.user_of(nick).await? {
            Some(user) if record.is_some_and(|r| r.private) => svc.store.remove_member(room.key(), &user.id).await?,
            _ => false,
        };
        let comment = svc.parting_text(comment);
        let kicked = svc.bus.kick(room.key(), nick.key(), self.handle.nick().as_str(), comment.as_deref()).await?;
        if kicked == 0 && !removed {
            return Err(ProtoError::new(ErrorCode::NotInRoom, format!("`{nick}` is not in `{}`", joined.name)));
        }
        Ok(())
    }
}

// ---- the HTTP API's operations -------------------------------------------------

/// A room to create (`POST /api/rooms`).
pub(crate) struct NewRoom {
    pub(crate) name: Name,
    pub(crate) topic: String,
    pub(crate) private: bool,
    pub(crate) members: Vec<Name>,
}

/// Who to add to a room's member list: by nick, or by the site's user id.
pub(crate) enum Grantee {
    Nick(Name),
    Sub(String),
}

/// A room's state for `GET /api/rooms/{room}`.
pub(crate) struct RoomStatus {
    pub(crate) view: RoomView,
    pub(crate) private: bool,
    /// The newest message's seq.
    pub(crate) seq: u64,
}

fn room_exists() -> ProtoError {
    ProtoError::new(ErrorCode::RoomExists, "a room of that name exists")
}

impl Service {
    /// A leave, quit or kick text as the others see it: trimmed, control
    /// characters dropped, at most `limits.max_topic` characters; none if
    /// empty.
    fn parting_text(&self, text: Option<&str>) -> Option<String> {
        let max = self.config.limits.max_topic;
        let text: String = text?.trim().chars().filter(|c| !c.is_control()).take(max).collect();
        (!text.is_empty()).then_some(text)
    }

    /// Named and live rooms; private ones only for API keys.
    pub(crate) async fn list_rooms(&self, caller: &Caller) -> Result<Vec<RoomSummary>, ProtoError> {
        let stored = self.store.list_rooms().await?;
        let live = self.bus.room_list().await?;
        let mut rooms = Vec::new();
        for r in &stored {
            if r.modes.secret && !caller.is_api_key() {
                continue;
            }
            let members = live.iter().find(|l| l.name.eq_ignore_ascii_case(&r.name)).map_or(0, |l| l.members);
            rooms.push(RoomSummary { name: r.name.clone(), topic: r.topic.clone(), members, private: r.private });
        }
        for l in live.into_iter().filter(|l| !stored.iter().any(|r| r.name.eq_ignore_ascii_case(&l.name))) {
            rooms.push(RoomSummary { private: false, ..l });
        }
        Ok(rooms)
    }

    /// Creates a named room. A user who creates a room moderates it; the
    /// members named are added (and their connected sessions join).
    pub(crate) async fn create_room(&self, caller: &Caller, room: &NewRoom) -> Result<(), ProtoError> {
        let name = &room.name;
        if room.topic.chars().count() > self.config.limits.max_topic {
            return Err(ProtoError::invalid("`topic` is too long"));
        }
        if let Caller::User(user) = caller
            && user.is_guest()
        {
            // A guest's identity ends with its sessions: a room it created
            // would outlive its moderator. Guests make rooms by joining them.
            return Err(forbidden("guests cannot create rooms here: join one"));
        }
        if self.bus.room_name(name.key()).await?.is_some() {
            return Err(room_exists());
        }
        // A room that has a history, or that everyone is put in, is somebody's
        // already: a user may not take it over (as a private room, say). The
        // API key may name such a room (it gets the topic, privacy, members).
        if let Caller::User(_) = caller {
            let auto_join = self.config.rooms.auto_join.iter().any(|r| r.eq_ignore_ascii_case(name.key()));
            if auto_join || self.store.room(name.key()).await?.is_some() {
                return Err(room_exists());
            }
        }
        if !self.store.create_room(name.key(), name.as_str(), room.topic.trim(), room.private, true).await? {
            return Err(room_exists());
        }
        for m in &room.members {
            let member = self.grantee(m).await?;
            self.store.set_member(name.key(), &member, Role::Member).await?;
            self.bus.admit(name.key(), &member, m.key()).await?;
        }
        if let Caller::User(user) = caller {
            self.store.set_member(name.key(), &user.id, Role::Moderator).await?;
        }
        tracing::info!(room = %name, private = room.private, "room created");
        Ok(())
    }

    /// A room's name, topic, privacy, newest `seq` and members online.
    pub(crate) async fn room_status(&self, caller: &Caller, room: &Name) -> Result<RoomStatus, ProtoError> {
        let record = self.store.room(room.key()).await?;
        let live = self.bus.who(room.key()).await?;
        let Some((name, topic)) = live
            .as_ref()
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .or_else(|| record.as_ref().map(|r| (r.name.clone(), r.topic.clone())))
        else {
            return Err(ProtoError::new(ErrorCode::NoSuchRoom, "no such room"));
        };
        let private = record.as_ref().is_some_and(|r| r.private);
        self.may_read_room(caller, false, room, record.as_ref()).await?;
        let members = live.map(|(_, _, m)| m).unwrap_or_default();
        // The newest message's seq (in a cluster it may still be buffered in
        // Redis, not yet in the database).
        let newest = HistoryQuery { limit: 1, ..Default::default() };
        let page = self.bus.history(&Conv::Room(room.key().clone()), newest).await?;
        let seq = page.messages.last().map_or(0, |m| m.seq).max(record.as_ref().map_or(0, |r| r.last_seq));
        Ok(RoomStatus { view: RoomView { name, topic, members }, private, seq })
    }

    /// Destroys a room: members are told (`left`, reason `destroyed`) and
    /// removed; the messages stay for transcripts. Returns how many
    /// sessions (one node) or users (a cluster) were in it.
    pub(crate) async fn destroy_room(&self, caller: &Caller, room: &Name) -> Result<usize, ProtoError> {
        self.may_destroy(caller, room).await?;
        // In a cluster the newest messages may still be buffered in Redis:
        // archive them first, so that none outlives the room.
        if !self.bus.settle().await {
            return Err(ProtoError::unavailable());
        }
        let stored = self.store.delete_room(room.key()).await?;
        let sessions = self.bus.destroy(room.key()).await?;
        if !stored && sessions == 0 {
            return Err(ProtoError::new(ErrorCode::NoSuchRoom, "no such room"));
        }
        tracing::info!(room = %room, sessions, "room destroyed");
        Ok(sessions)
    }

    /// Adds a user to a room's member list (what a private room checks) as
    /// `role`, and joins its connected sessions to the room on every node.
    /// Returns the nick it holds, if it was ever here.
    pub(crate) async fn add_member(&self, room: &Name, who: &Grantee, role: Role) -> Result<Option<Name>, ProtoError> {
        let (member, nick) = match who {
            Grantee::Nick(nick) => (self.grantee(nick).await?, Some(nick.clone())),
            Grantee::Sub(sub) => {
                let id = crate::model::ids::site(sub);
                let nick = self.store.account_nick_of(&id).await?.and_then(|n| Name::nick(&n).ok());
                (id, nick)
            }
        };
        if self.store.room(room.key()).await?.is_none() && self.bus.room_name(room.key()).await?.is_none() {
            return Err(ProtoError::new(ErrorCode::NoSuchRoom, "no such room"));
        }
        self.store.set_member(room.key(), &member, role).await?;
        if let Some(nick) = &nick {
            self.bus.set_moderator(room.key(), nick.key(), role == Role::Moderator).await?;
            self.bus.admit(room.key(), &member, nick.key()).await?;
        }
        Ok(nick)
    }

    /// Removes a user from a room's member list and kicks its sessions out
    /// of the room everywhere. Returns how many sessions were in it.
    pub(crate) async fn remove_member(&self, room: &Name, nick: &Name) -> Result<usize, ProtoError> {
        let member = self.grantee(nick).await?;
        let listed = self.store.remove_member(room.key(), &member).await?;
        let kicked = self.bus.kick(room.key(), nick.key(), crate::model::ids::SERVER, None).await?;
        if !listed && kicked == 0 {
            return Err(ProtoError::new(ErrorCode::NotInRoom, "that user is neither a member nor in the room"));
        }
        Ok(kicked)
    }

    /// Whether a room exists as IRC sees a channel: live, or made through
    /// the API (a room made by joining ends when its last member leaves).
    pub(crate) async fn room_open(&self, room: &Name) -> Result<bool, ProtoError> {
        if self.bus.room_name(room.key()).await?.is_some() {
            return Ok(true);
        }
        Ok(self.store.room(room.key()).await?.is_some_and(|r| r.managed))
    }

    /// The room a message for `room` goes to: its name as shown (live, else
    /// stored), or `no_such_room`.
    pub(crate) async fn room_name(&self, room: &Name) -> Result<(Arc<str>, Option<RoomRecord>), ProtoError> {
        let live = self.bus.room_name(room.key()).await?;
        let record = if live.is_none() { self.store.room(room.key()).await? } else { None };
        match (live, record) {
            (Some(n), _) => Ok((n, None)),
            (None, Some(r)) => Ok((r.name.clone(), Some(r))),
            (None, None) => Err(ProtoError::new(ErrorCode::NoSuchRoom, "no such room")),
        }
    }
}
