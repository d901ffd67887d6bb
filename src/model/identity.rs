//! Who is asking: an identity as `hello` or a bearer token established it.

use std::sync::Arc;

use crate::protocol::Name;

/// Who a `hello` (or an HTTP call) authenticated as.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The user's stable id (see [`super::ids`]): everything the user owns
    /// belongs to it, not to the nick.
    pub id: Arc<str>,
    pub nick: Name,
    pub kind: IdentityKind,
    pub display_name: Option<String>,
    pub avatar: Option<String>,
    /// Site token `rooms` claim: the only rooms this user may join.
    pub rooms: Option<Vec<Name>>,
    /// Site token `admin` claim: moderator everywhere.
    pub admin: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    Guest,
    /// A registered account (password or session token).
    Account,
    /// Vouched for by the embedding site; `sub` is the site's user id.
    Site {
        sub: String,
    },
}

impl Identity {
    /// A guest identity: `id` is new at its first `hello`, or the one its
    /// `welcome.token` names on a reconnect.
    pub fn guest(nick: Name, id: String) -> Identity {
        Identity {
            id: id.into(),
            nick,
            kind: IdentityKind::Guest,
            display_name: None,
            avatar: None,
            rooms: None,
            admin: false,
        }
    }

    pub fn is_guest(&self) -> bool {
        self.kind == IdentityKind::Guest
    }

    /// Whether the token's `rooms` claim (if any) lets this user into `room`.
    pub fn may_enter(&self, room: &Name) -> bool {
        self.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r.key() == room.key()))
    }
}
