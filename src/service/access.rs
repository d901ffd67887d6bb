//! Who may do what. Each rule is one function here, and every door reaches
//! it through the service: entering a room, looking into one, reading its
//! history, saying something, changing a message, naming a grantee.

use std::sync::Arc;

use ulid::Ulid;

use super::{Caller, Service};
use crate::hub::SessionHandle;
use crate::model::{Identity, Role, RoomRecord};
use crate::protocol::server::{Conv, StoredMessage};
use crate::protocol::{ErrorCode, Name, ProtoError};

pub(crate) fn forbidden(why: impl Into<String>) -> ProtoError {
    ProtoError::new(ErrorCode::Forbidden, why)
}

pub(crate) fn not_in_room(room: &Name) -> ProtoError {
    ProtoError::new(ErrorCode::NotInRoom, format!("you are not in `{room}`: join it first"))
}

pub(crate) fn no_such_room(room: &Name) -> ProtoError {
    ProtoError::new(ErrorCode::NoSuchRoom, format!("there is no room `{room}`"))
}

pub(crate) fn no_such_message(msg_id: Ulid) -> ProtoError {
    ProtoError::new(ErrorCode::NoSuchMessage, format!("no message `{msg_id}`"))
}

/// Who reads a room (see [`may_read`]).
pub(crate) struct Reader<'a> {
    pub(crate) id: &'a str,
    /// The nick it holds now (bans match it).
    pub(crate) nick: &'a str,
    /// A site admin (reads every room).
    pub(crate) admin: bool,
}

/// What [`may_read`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Readable {
    Yes,
    /// The room is closed (private, secret or keyed) and the reader is not
    /// a member.
    Closed,
    /// A ban matches the reader.
    Banned,
}

/// The one rule for reading a room (its history over WebSocket and HTTP,
/// `GET /api/rooms/{room}`, `who`, search, mention notifications): a
/// room is closed when it is private (invite-only), secret or keyed. An
/// API key (`None`), a site admin, a session in the room, or a moderator
/// of it read it; otherwise a banned user reads nothing there, and a
/// closed room only its members (a stored role). `record`: the room's
/// stored record (`None`: not stored, open). The search SQL applies the
/// same rule for closed rooms (see `store::sql::social`).
pub(crate) async fn may_read(
    store: &crate::store::Store,
    host: &str,
    reader: Option<Reader<'_>>,
    room: &str,
    record: Option<&RoomRecord>,
    in_room: bool,
) -> Result<Readable, crate::store::StoreError> {
    let (Some(reader), Some(record)) = (reader, record) else { return Ok(Readable::Yes) };
    if in_room || reader.admin {
        return Ok(Readable::Yes);
    }
    let role = store.member_role(room, reader.id).await?;
    if role == Some(Role::Moderator) {
        return Ok(Readable::Yes);
    }
    let bans = store.room_bans(room).await?;
    if !bans.is_empty() {
        let mask = format!("{0}!{0}@{host}", reader.nick).to_ascii_lowercase();
        if bans.iter().any(|b| crate::hub::wildcard(b.mask.as_bytes(), mask.as_bytes())) {
            return Ok(Readable::Banned);
        }
    }
    let closed = record.private || record.modes.secret || !record.modes.key.is_empty();
    Ok(if closed && role.is_none() { Readable::Closed } else { Readable::Yes })
}

impl Service {
    /// Whether `who` (its session holding `nick`) may enter `room` by the
    /// room's settings (bans, invite-only (private: members only), key,
    /// member limit; [`Service::may_come`] was asked before); if so,
    /// its role there (a site admin moderates every room). A moderator
    /// passes every setting; a member (invited) passes invite-only.
    /// `record.bans` holds the room's bans.
    pub(crate) async fn may_enter(
        &self,
        who: &Identity,
        room: &Name,
        record: Option<&RoomRecord>,
        key: Option<&str>,
    ) -> Result<Option<Role>, ProtoError> {
        // Memberships and roles belong to user ids. A guest's id is its own
        // (`g-<ulid>`): only what was granted to that id (an invite, `+o`,
        // `+v`), never a grant to its nick (pending grants are for the site
        // user of that nick).
        let role = self.store.member_role(room.key(), &who.id).await?;
        let role = if who.admin { Some(Role::Moderator) } else { role };
        let Some(record) = record else { return Ok(role) };
        if role != Some(Role::Moderator) {
            let mask = self.user_mask(who.nick.as_str()).to_ascii_lowercase();
            if record.bans.iter().any(|b| crate::hub::wildcard(b.as_bytes(), mask.as_bytes())) {
                return Err(forbidden(format!("you are banned from `{room}`")).because("banned"));
            }
            if record.private && role.is_none() {
                return Err(forbidden(format!("`{room}` is private: members only")).because("invite_only"));
            }
            let want = record.modes.key.as_bytes();
            if !want.is_empty() {
                use subtle::ConstantTimeEq;
                let given = key.unwrap_or("").as_bytes();
                if !bool::from(want.ct_eq(given)) {
                    return Err(forbidden(format!("`{room}` needs a key")).because("key"));
                }
            }
            let limit = record.modes.limit as usize;
            if limit > 0 {
                let members = self.bus.who(room.key()).await?.map(|(_, _, m)| m).unwrap_or_default();
                let here = members.iter().any(|m| m.nick.eq_ignore_ascii_case(who.nick.as_str()));
                if !here && members.len() >= limit {
                    return Err(forbidden(format!("`{room}` is full ({limit} users)")).because("full"));
                }
            }
        }
        Ok(role)
    }

    /// Whether `who` may come into `room` at all, whatever its settings:
    /// its token's `rooms` claim and the authorization hook. Asked before
    /// [`Service::may_enter`], before a join changes anything.
    pub(crate) async fn may_come(&self, who: &Identity, room: &Name) -> Result<(), ProtoError> {
        if !who.may_enter(room) {
            return Err(forbidden(format!("your token does not allow the room `{room}`")));
        }
        if let Some(hook) = &self.hook
            && !hook.allows(who, room, "join").await
        {
            return Err(forbidden(format!("you may not join `{room}`")));
        }
        Ok(())
    }

    /// Whether a user may say something in `room`: its session is in the
    /// room, and the authorization hook (if any) allows it. Returns the
    /// room's name as shown.
    pub(crate) async fn may_say(
        &self,
        who: &Identity,
        session: &SessionHandle,
        room: &Name,
    ) -> Result<Arc<str>, ProtoError> {
        session.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        let name = self.may_speak_here(session, room.key())?;
        if let Some(hook) = &self.hook
            && !hook.allows(who, room, "say").await
        {
            return Err(forbidden(format!("you may not speak in `{room}`")));
        }
        Ok(name)
    }

    /// Whether a session may be heard in `room` (say, edit, typing, an
    /// event, a reaction): it is in the room, and the room's settings
    /// allow it (a banned user is silent; in a moderated room, only
    /// moderators and voiced members speak), from the hub's copy: no
    /// database here. Returns the room's name as shown.
    pub(crate) fn may_speak_here(&self, session: &SessionHandle, room: &str) -> Result<Arc<str>, ProtoError> {
        let here = session
            .joined(room)
            .ok_or_else(|| ProtoError::new(ErrorCode::NotInRoom, format!("you are not in `{room}`: join it first")))?;
        let name = here.name;
        if !here.moderator
            && let Some(gate) = self.hub.gate(room)
        {
            if !gate.bans.is_empty() && gate.banned(&self.user_mask(session.nick().as_str())) {
                return Err(forbidden(format!("you are banned from `{name}`")).because("banned"));
            }
            if gate.moderated && !here.voiced {
                return Err(forbidden(format!("`{name}` is moderated: only moderators and voiced members speak"))
                    .because("moderated"));
            }
        }
        Ok(name)
    }

    /// [`Service::may_speak_here`] for a room the session may have left
    /// (an edit): if it is not in it, from the stored settings, bans and
    /// role.
    pub(crate) async fn may_still_speak(
        &self,
        who: &Identity,
        session: &SessionHandle,
        room: &str,
    ) -> Result<(), ProtoError> {
        if session.joined(room).is_some() {
            return self.may_speak_here(session, room).map(|_| ());
        }
        if who.admin {
            return Ok(());
        }
        let role = self.store.member_role(room, &who.id).await?;
        if role == Some(Role::Moderator) {
            return Ok(());
        }
        let Some(record) = self.store.room(room).await? else { return Ok(()) };
        let name = if record.name.is_empty() { room } else { &*record.name };
        let mask = self.user_mask(who.nick.as_str()).to_ascii_lowercase();
        let bans = self.store.room_bans(room).await?;
        if bans.iter().any(|b| crate::hub::wildcard(b.mask.as_bytes(), mask.as_bytes())) {
            return Err(forbidden(format!("you are banned from `{name}`")).because("banned"));
        }
        if record.modes.moderated && role != Some(Role::Voice) {
            return Err(forbidden(format!("`{name}` is moderated: only moderators and voiced members speak"))
                .because("moderated"));
        }
        Ok(())
    }

    /// [`may_read`] for a caller: `Ok` if it may read `room` (its
    /// history, members, messages found by search), else `forbidden` (with
    /// `reason` `banned` for a banned user). `in_room`: a session of the
    /// caller is in it.
    pub(crate) async fn may_read_room(
        &self,
        caller: &Caller,
        in_room: bool,
        room: &Name,
        record: Option<&RoomRecord>,
    ) -> Result<(), ProtoError> {
        let reader = match caller {
            Caller::User(u) => Some(Reader { id: &u.id, nick: u.nick.as_str(), admin: u.admin }),
            Caller::ApiKey => None,
        };
        match may_read(&self.store, &self.host(), reader, room.key(), record, in_room).await? {
            Readable::Yes => Ok(()),
            Readable::Banned => Err(forbidden(format!("you are banned from `{room}`")).because("banned")),
            Readable::Closed => Err(forbidden(format!("`{room}` is closed: only its members read it"))),
        }
    }

    /// Whether `who` may destroy `room`: an API key, a site admin, or a
    /// moderator of the room.
    pub(crate) async fn may_destroy(&self, caller: &Caller, room: &Name) -> Result<(), ProtoError> {
        match caller {
            Caller::User(user) if !user.admin => match self.store.member_role(room.key(), &user.id).await {
                Ok(Some(Role::Moderator)) => Ok(()),
                _ => Err(forbidden("only moderators destroy a room")),
            },
            _ => Ok(()),
        }
    }

    /// A message `who` may change: its own (or, to delete, one in a room
    /// it moderates, through `session`), still there. `None` for `session`
    /// is a caller with no live session (no room it moderates now).
    pub(crate) async fn changeable_message(
        &self,
        who: &Identity,
        session: Option<&SessionHandle>,
        msg_id: Ulid,
        moderators_too: bool,
    ) -> Result<StoredMessage, ProtoError> {
        let msg = match self.store.message(msg_id).await? {
            Some(msg) => msg,
            None if self.bus.clustered() => {
                // Sent moments ago, it may still be in the cluster's buffer.
                if !self.bus.settle().await {
                    return Err(ProtoError::unavailable());
                }
                self.store.message(msg_id).await?.ok_or_else(|| no_such_message(msg_id))?
            }
            None => return Err(no_such_message(msg_id)),
        };
        let me = &who.id;
        let visible = match &msg.conv {
            Conv::Dm(a, b) => a == me || b == me,
            Conv::Room(_) | Conv::Everyone => true,
        };
        if !visible || msg.deleted {
            return Err(no_such_message(msg_id));
        }
        let moderates = match &msg.conv {
            Conv::Room(key) => {
                let here = session.and_then(|s| s.joined(key));
                here.is_some_and(|r| r.moderator && msg.seq > r.moderates_after) || who.admin
            }
            Conv::Everyone => who.admin,
            Conv::Dm(..) => false,
        };
        let own = msg.sender_id == *me;
        if !(own || moderators_too && moderates) {
            return Err(forbidden(if moderators_too {
                "you may only delete your own messages, or any in a room you moderate"
            } else {
                "you may only edit your own messages"
            }));
        }
        Ok(msg)
    }

    /// Who a grant to `nick` is for: the account or site user that owns
    /// the nick; if nobody owns it yet, a pending grant that only the site
    /// user of that nick will claim (never a guest holding it now, never an
    /// account registered later: see `auth::check_free_for_guest`).
    pub(crate) async fn grantee(&self, nick: &Name) -> Result<String, ProtoError> {
        match self.store.account(nick.key()).await? {
            Some(a) if a.owner.is_some() => Ok(a.owner.unwrap_or_default()),
            _ => Ok(crate::model::ids::pending_grant(nick.key())),
        }
    }
}
