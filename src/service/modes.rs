//! Room settings (IRC's channel modes), for every door: moderated, topic
//! lock, invite-only, secret, key, member limit, bans, and the operator and
//! voice roles of members. Stored (`rooms`, `room_bans`, `room_members`),
//! enforced by [`super::access`] (join) and [`Service::may_say`] (say, from
//! the hub's copy: no database on the hot path), changed by a room's
//! moderators, and told to its members as a `mode` frame.

use std::sync::Arc;

use super::access::{forbidden, not_in_room};
use super::{Service, Session};
use crate::cluster::Except;
use crate::hub::{Gate, RoleChange};
use crate::model::{Ban, Role, RoomModes};
pub(crate) use crate::protocol::server::ModeItem;
use crate::protocol::{ErrorCode, Name, ProtoError, ServerFrame, encode, now_ms};

/// Longest key (`+k`): RFC 2812's 23 characters.
pub(crate) const MAX_KEY: usize = 23;
/// Longest ban mask, in bytes.
pub(crate) const MAX_MASK: usize = 128;

/// A change of a room's settings (the protocol's `mode` `set`).
pub(crate) type ModeChange = crate::protocol::client::ModeSet;
pub(crate) use crate::protocol::client::RoleMode;

fn item(mode: &'static str, on: bool, arg: Option<String>) -> ModeItem {
    ModeItem { mode, on, arg }
}

/// A room's settings as read (`mode` without `set`, IRC `MODE #x`).
pub(crate) struct ModesView {
    pub(crate) name: Arc<str>,
    pub(crate) invite_only: bool,
    pub(crate) topic_locked: bool,
    pub(crate) modes: RoomModes,
    pub(crate) bans: Vec<Ban>,
}

/// Checks a key: 1 to 23 printable ASCII characters, no spaces, no
/// commas, not starting with `:` (IRC could not carry it).
pub(crate) fn check_key(key: &str) -> Result<(), ProtoError> {
    if key.is_empty()
        || key.len() > MAX_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
        || key.contains(',')
        || key.starts_with(':')
    {
        return Err(ProtoError::invalid(format!(
            "a key is 1 to {MAX_KEY} printable ASCII characters without spaces or commas, not starting with `:`"
        )));
    }
    Ok(())
}

/// A ban mask as stored: case-folded, `nick` completed to `nick!*@*` and
/// `user@host` to `*!user@host`. Invalid: empty, too long, spaces, commas
/// or control characters, not ASCII, starting with `:` (IRC could not
/// carry it).
pub(crate) fn normal_mask(mask: &str) -> Result<String, ProtoError> {
    if mask.is_empty()
        || mask.len() > MAX_MASK
        || !mask.bytes().all(|b| b.is_ascii_graphic())
        || mask.contains(',')
        || mask.starts_with(':')
    {
        return Err(ProtoError::invalid(format!(
            "a ban mask is `nick!user@host` (wildcards `*` and `?`), at most {MAX_MASK} ASCII characters, \
             not starting with `:`"
        )));
    }
    let mask = mask.to_ascii_lowercase();
    Ok(match (mask.contains('!'), mask.contains('@')) {
        (false, false) => format!("{mask}!*@*"),
        (false, true) => format!("*!{mask}"),
        (true, false) => format!("{mask}@*"),
        (true, true) => mask,
    })
}

impl Service {
    /// `nick!user@host` of a user, as bans match it (and IRC shows it).
    pub(crate) fn user_mask(&self, nick: &str) -> String {
        format!("{nick}!{nick}@{}", self.host())
    }

    /// The server's name as a host (IRC's source; ban masks).
    pub(crate) fn host(&self) -> String {
        let host: String =
            self.config.server.name.chars().map(|c| if c.is_ascii_graphic() { c } else { '-' }).collect();
        if host.is_empty() { "chat".to_owned() } else { host }
    }

    /// A room's settings and bans. `no_such_room` if it is neither live
    /// nor stored.
    pub(crate) async fn room_settings(&self, room: &Name) -> Result<ModesView, ProtoError> {
        if !self.room_open(room).await? {
            return Err(super::access::no_such_room(room));
        }
        let (name, record) = self.room_name(room).await?;
        let record = match record {
            Some(r) => Some(r),
            None => self.store.room(room.key()).await?,
        };
        let record = record.unwrap_or_default();
        let bans = self.store.room_bans(room.key()).await?;
        Ok(ModesView {
            name,
            invite_only: record.private,
            topic_locked: record.topic_locked(),
            modes: record.modes,
            bans,
        })
    }
}

impl Session {
    /// A room's settings (anyone may read them, to learn why a join is
    /// refused; the key only those in it).
    pub(crate) async fn modes(&self, room: &Name) -> Result<ModesView, ProtoError> {
        let member = self.handle.joined(room.key()).is_some();
        let mut view = self.svc.room_settings(room).await?;
        if !member && !view.modes.key.is_empty() {
            view.modes.key = "*".into();
        }
        Ok(view)
    }

    /// Changes a room's settings (its moderators only): stored, applied on
    /// every node, and told to its members as a `mode` frame. Returns what
    /// changed (a setting already so is left out).
    pub(crate) async fn set_modes(&mut self, room: &Name, change: ModeChange) -> Result<Vec<ModeItem>, ProtoError> {
        let joined = self.handle.joined(room.key()).ok_or_else(|| not_in_room(room))?;
        if !joined.moderator {
            return Err(forbidden(format!("only moderators change the settings of `{}`", joined.name)));
        }
        let by = self.handle.nick().as_str().to_owned();
        self.svc.apply_modes(room, joined.name, &by, change).await
    }
}

impl Service {
    /// `PATCH /api/rooms/{room}`: an API key, a site admin or a stored
    /// moderator of the room changes its settings (told as by `server`, or
    /// by the user's nick).
    pub(crate) async fn patch_room(
        &self,
        caller: &super::Caller,
        room: &Name,
        change: ModeChange,
    ) -> Result<Vec<ModeItem>, ProtoError> {
        self.may_destroy(caller, room).await.map_err(|_| forbidden("only moderators change a room's settings"))?;
        if !self.room_open(room).await? {
            return Err(super::access::no_such_room(room));
        }
        let (name, _) = self.room_name(room).await?;
        let by = match caller {
            super::Caller::User(user) => user.nick.as_str().to_owned(),
            _ => crate::model::ids::SERVER.to_owned(),
        };
        self.apply_modes(room, name, &by, change).await
    }

    /// Applies a change of a room's settings (the caller may make it):
    /// stored, applied on every node, and told to its members as a `mode`
    /// frame. Returns what changed (a setting already so is left out).
    async fn apply_modes(
        &self,
        room: &Name,
        name: Arc<str>,
        by: &str,
        change: ModeChange,
    ) -> Result<Vec<ModeItem>, ProtoError> {
        let svc = self;
        let key = room.key();
        // Everything is checked before anything changes.
        if let Some(Some(k)) = &change.key {
            check_key(k)?;
        }
        let mut bans = Vec::with_capacity(change.bans.len());
        for (on, mask) in &change.bans {
            bans.push((*on, normal_mask(mask)?));
        }
        // One change of this room's settings at a time here: each reads
        // what the one before stored.
        let _one = {
            use std::hash::{BuildHasher, BuildHasherDefault};
            let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(&**key);
            svc.settings_locks[hash as usize % svc.settings_locks.len()].lock().await
        };
        let record = svc.store.room(key).await?.unwrap_or_default();
        let (was, was_private, was_locked) = (record.modes.clone(), record.private, record.topic_locked());
        let mut modes = was.clone();
        let mut private = was_private;
        let mut changes = Vec::new();
        if let Some(on) = change.invite_only
            && on != private
        {
            private = on;
            changes.push(item("invite_only", on, None));
        }
        if let Some(on) = change.moderated
            && on != modes.moderated
        {
            modes.moderated = on;
            changes.push(item("moderated", on, None));
        }
        if let Some(on) = change.secret
            && on != modes.secret
        {
            modes.secret = on;
            changes.push(item("secret", on, None));
        }
        if let Some(on) = change.topic_lock
            && on != was_locked
        {
            modes.topic_lock = Some(on);
            changes.push(item("topic_lock", on, None));
        }
        match &change.key {
            Some(Some(k)) if **k != *modes.key => {
                modes.key = k.as_str().into();
                changes.push(item("key", true, Some(k.clone())));
            }
            Some(None) if !modes.key.is_empty() => {
                modes.key = "".into();
                changes.push(item("key", false, Some("*".into())));
            }
            _ => {}
        }
        match change.limit {
            Some(Some(n)) if n > 0 && n != modes.limit => {
                modes.limit = n;
                changes.push(item("limit", true, Some(n.to_string())));
            }
            Some(None | Some(0)) if modes.limit != 0 => {
                modes.limit = 0;
                changes.push(item("limit", false, None));
            }
            _ => {}
        }
        // Bans: what would change, and the cap on how many a room keeps.
        let stored: Vec<String> = svc.store.room_bans(key).await?.into_iter().map(|b| b.mask).collect();
        let mut after = stored.clone();
        let mut ban_changes: Vec<(bool, String)> = Vec::new();
        for (on, mask) in bans {
            match (on, after.contains(&mask)) {
                (true, false) => after.push(mask.clone()),
                (false, true) => after.retain(|m| *m != mask),
                _ => continue,
            }
            ban_changes.retain(|(_, m)| *m != mask);
            if stored.contains(&mask) != on {
                ban_changes.push((on, mask));
            }
        }
        let max = svc.config.rooms.max_bans;
        if after.len() > max && after.len() > stored.len() {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("`{name}` has {max} bans, the most it may keep: remove one first"),
            )
            .because("ban_list_full"));
        }
        // Roles: by the user id holding the nick now, and only for a user
        // in the room. A role is changed from the one held: `-v` leaves a
        // moderator one, `-o` a voiced member voiced.
        let members = match svc.bus.who(key).await? {
            Some((_, _, members)) => members,
            None => Vec::new(),
        };
        struct Target<'a> {
            mode: RoleMode,
            on: bool,
            nick: &'a Name,
            online: crate::hub::Online,
            held: Option<Role>,
            new: Option<Role>,
        }
        let mut roles: Vec<Target> = Vec::new();
        for (mode, on, nick) in &change.roles {
            let Some(online) = svc.bus.online(nick.key()).await? else {
                return Err(ProtoError::new(ErrorCode::NoSuchUser, format!("`{nick}` is not here")));
            };
            if !members.iter().any(|m| m.nick.eq_ignore_ascii_case(nick.as_str())) {
                return Err(ProtoError::new(ErrorCode::NotInRoom, format!("`{nick}` is not in `{name}`")));
            }
            // The role held, as changed by the items before this one.
            let held = match roles.iter().rev().find(|r| r.online.id == online.id) {
                Some(r) => r.new,
                None if record.managed => svc.store.member_role(key, &online.id).await?,
                None => None,
            };
            let new = match (mode, on, held) {
                (RoleMode::Op, true, _) => Some(Role::Moderator),
                (RoleMode::Op, false, Some(Role::Moderator)) => Some(Role::Member),
                (RoleMode::Voice, true, Some(Role::Moderator)) => Some(Role::Moderator),
                (RoleMode::Voice, true, _) => Some(Role::Voice),
                (RoleMode::Voice, false, Some(Role::Voice)) => Some(Role::Member),
                (_, false, held) => held,
            };
            roles.push(Target { mode: *mode, on: *on, nick, online, held, new });
        }

        // Everything checked: now stored. (Bans alone need the room's row
        // too: a join reads them with it.)
        if !changes.is_empty() || !ban_changes.is_empty() {
            let private = (private != was_private).then_some(private);
            svc.store.change_room_modes(key, &name, private, &was, &modes).await?;
        }
        for (on, mask) in ban_changes {
            let done = if on {
                let ban = Ban { mask: mask.clone(), set_by: by.to_owned(), set_at: now_ms() };
                svc.store.add_ban(key, &ban).await?
            } else {
                svc.store.remove_ban(key, &mask).await?
            };
            if done {
                changes.push(item("ban", on, Some(mask)));
            }
        }
        let bans_changed = changes.iter().any(|c| c.mode == "ban");
        if bans_changed || modes.moderated != was.moderated || modes.secret != was.secret {
            // From what is stored now (another change may have come between).
            let fresh = svc.store.room(key).await?.unwrap_or_default();
            let stored = svc.store.room_bans(key).await?;
            let gate = Gate {
                moderated: fresh.modes.moderated,
                secret: fresh.modes.secret,
                bans: stored.iter().map(|b| b.mask.as_str().into()).collect(),
            };
            svc.bus.set_gate(key, gate).await?;
        }
        for Target { mode, on, nick, online, held, new } in &roles {
            // In a room made by joining, roles last while it lives (see
            // `Session::join`); in one made through the API they are kept.
            if record.managed
                && let Some(new) = new
                && held != &Some(*new)
            {
                svc.store.set_member(key, &online.id, *new).await?;
            }
            let change = match mode {
                // A stored moderator moderates the room's whole history; one
                // made in a room made by joining, what is said from now on.
                RoleMode::Op => RoleChange { moderator: Some(*on), voiced: None, whole_history: record.managed && *on },
                RoleMode::Voice => RoleChange { moderator: None, voiced: Some(*on), whole_history: false },
            };
            svc.bus.set_role(key, nick.key(), &online.id, change).await?;
            let label = if *mode == RoleMode::Op { "op" } else { "voice" };
            changes.push(item(label, *on, Some(online.nick.to_string())));
        }
        if !changes.is_empty() {
            let frame = encode(&ServerFrame::Mode { room: &name, by, changes: &changes });
            svc.bus.to_room(key, &frame, Except::Nobody).await?;
            tracing::info!(room = %name, by, changes = changes.len(), "room settings changed");
        }
        Ok(changes)
    }
}
