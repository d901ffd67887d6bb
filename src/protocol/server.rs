//! Server frames. Each is built from typed values and serialised once with
//! [`encode`] into a [`Frame`]: immutable, reference-counted UTF-8 bytes that
//! every recipient's queue shares (cloning one is a reference-count bump).

use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;
use ulid::Ulid;

pub use super::social::{Reactions, ReplyRef};
use super::{ErrorCode, FrameId, ProtoError};

/// One serialised server frame, shared by all its recipients: a pointer-
/// sized handle, so that each session's outbound queue stays small (tokio
/// allocates a queue's first block of 32 slots up front, whatever it holds).
#[derive(Clone, Debug)]
pub struct Frame(Arc<axum::extract::ws::Utf8Bytes>);

impl Frame {
    /// A frame serialised elsewhere (another cluster node).
    pub fn from_json(json: String) -> Frame {
        Frame(Arc::new(json.into()))
    }

    /// The text, for the socket (a reference-count bump, no copy).
    pub fn text(&self) -> axum::extract::ws::Utf8Bytes {
        (*self.0).clone()
    }
}

impl std::ops::Deref for Frame {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

/// Serialises a frame once.
pub fn encode(frame: &ServerFrame<'_>) -> Frame {
    // Serialising these types cannot fail: every map key is a string.
    Frame(Arc::new(serde_json::to_string(frame).unwrap_or_default().into()))
}

/// A conversation: where a message lives and what its `seq` counts in.
/// A room by its case-folded name; a DM by its two users' ids, in order,
/// so both parties name the same conversation (a later holder of either
/// nick is another user, in another conversation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    Room(Arc<str>),
    Dm(Arc<str>, Arc<str>),
    Everyone,
}

impl Conv {
    pub fn dm(a: &Arc<str>, b: &Arc<str>) -> Conv {
        if a <= b { Conv::Dm(a.clone(), b.clone()) } else { Conv::Dm(b.clone(), a.clone()) }
    }

    /// A stable text key, for storage: `r:<room>`, `d:<id>:<id>` (the two
    /// users' ids, see [`crate::model::ids`]), `e`.
    pub fn storage_key(&self) -> String {
        match self {
            Conv::Room(r) => format!("r:{r}"),
            Conv::Dm(a, b) => format!("d:{a}:{b}"),
            Conv::Everyone => "e".to_owned(),
        }
    }

    /// The inverse of [`Conv::storage_key`].
    pub fn from_storage_key(key: &str) -> Option<Conv> {
        match key.split_once(':') {
            Some(("r", room)) => Some(Conv::Room(room.into())),
            Some(("d", pair)) => pair.split_once(':').map(|(a, b)| Conv::Dm(a.into(), b.into())),
            None if key == "e" => Some(Conv::Everyone),
            _ => None,
        }
    }
}

/// A stored message, as history and `message` frames show it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub msg_id: Ulid,
    pub conv: Conv,
    /// The room's name as shown (room messages only).
    pub room: Option<Arc<str>>,
    /// The recipient's nick as shown (direct messages only).
    pub to: Option<Arc<str>>,
    pub seq: u64,
    pub from: Arc<str>,
    /// The sender's user id (see [`crate::model::ids`]); never sent to clients.
    pub sender_id: Arc<str>,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// The nicks the text mentions (`@nick`, users that exist), as shown;
    /// the `mentions` field, left out when empty.
    pub mentions: Vec<Arc<str>>,
    pub sent_at: i64,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    /// The message this one answers (same conversation).
    pub reply_to: Option<Box<ReplyRef>>,
    /// Who reacted with what; not shown when empty (and never on a
    /// deleted message).
    pub reactions: Reactions,
}

impl Serialize for StoredMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("msg_id", &self.msg_id.to_string())?;
        if let Some(room) = &self.room {
            m.serialize_entry("room", room)?;
        }
        if let Some(to) = &self.to {
            m.serialize_entry("to", to)?;
        }
        if self.conv == Conv::Everyone {
            m.serialize_entry("everyone", &true)?;
        }
        m.serialize_entry("seq", &self.seq)?;
        m.serialize_entry("from", &self.from)?;
        m.serialize_entry("text", if self.deleted { "" } else { &self.text })?;
        m.serialize_entry("attachments", &self.attachments)?;
        if !self.mentions.is_empty() && !self.deleted {
            m.serialize_entry("mentions", &self.mentions)?;
        }
        m.serialize_entry("sent_at", &self.sent_at)?;
        if let Some(at) = self.edited_at {
            m.serialize_entry("edited_at", &at)?;
        }
        if self.deleted {
            m.serialize_entry("deleted", &true)?;
        }
        if let Some(reply) = &self.reply_to {
            m.serialize_entry("reply_to", reply)?;
        }
        if !self.reactions.is_empty() && !self.deleted {
            m.serialize_entry("reactions", &self.reactions)?;
        }
        m.end()
    }
}

/// A file a message carries, as `message`, `ack` and `history` show it
/// (and as the store keeps it, in the message's row). `url` and
/// `thumbnail_url` are paths on this server (`/files/<id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Attachment {
    pub id: String,
    pub url: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

/// A room member as `joined` and `room_status` list it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberView {
    pub nick: Arc<str>,
    pub display_name: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<Arc<str>>,
    /// The profile's status line; not shown when empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub status: Arc<str>,
    pub joined_at: i64,
    pub away: bool,
    /// Moderates the room (one node: shown; omitted when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub moderator: bool,
    /// May speak when the room is moderated (`+v`; omitted when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub voiced: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct UserView<'a> {
    pub nick: &'a str,
    pub display_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<&'a str>,
    pub guest: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// A user as a `profile` frame shows it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProfileView<'a> {
    pub nick: &'a str,
    pub display_name: &'a str,
    /// `null` when the avatar was removed.
    pub avatar: Option<&'a str>,
    pub status: &'a str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub node: &'a str,
}

#[derive(Clone, Debug, Serialize)]
pub struct LimitsView {
    pub max_text: usize,
    pub max_frame_bytes: usize,
    pub rate_per_sec: u32,
    pub burst: u32,
    /// Whether `say` to everyone is allowed (`chat.allow_everyone`): a
    /// client shows "Everyone" only when it is.
    pub allow_everyone: bool,
}

/// One setting that changed, as members are told (`mode` frame `changes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModeItem {
    /// `moderated`, `topic_lock`, `invite_only`, `secret`, `key`, `limit`,
    /// `ban`, `op` or `voice`.
    pub mode: &'static str,
    pub on: bool,
    /// The key, limit, mask or nick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
}

/// A ban as `modes` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct BanView {
    pub mask: String,
    pub by: String,
    pub at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RoomSummary {
    pub name: Arc<str>,
    pub topic: Arc<str>,
    pub members: usize,
    /// Not shown: the `rooms` frame lists public rooms only.
    #[serde(skip)]
    pub private: bool,
}

/// Where a frame about a conversation points: `room`, `with` (the other
/// party of a DM as seen by the receiver) or `everyone`. Serialised as the
/// one field that applies.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Place<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub everyone: bool,
}

impl<'a> Place<'a> {
    pub fn room(room: &'a str) -> Self {
        Place { room: Some(room), ..Place::default() }
    }
    pub fn with(nick: &'a str) -> Self {
        Place { with: Some(nick), ..Place::default() }
    }
    pub fn everyone() -> Self {
        Place { everyone: true, ..Place::default() }
    }
}

/// Where a `typing` or `event` came from: a room, or (for one sent to a
/// user) `from` the sender.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Origin<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        session: &'a str,
        nick: &'a str,
        user: UserView<'a>,
        rooms: &'a [Arc<str>],
        /// A session token for this user's HTTP calls; a guest also comes
        /// back as itself with it (`hello` `{token}`) within the grace period.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<&'a str>,
        server: ServerInfo<'a>,
        limits: &'a LimitsView,
    },
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        room: &'a str,
        topic: &'a str,
        members: &'a [MemberView],
        seq: u64,
        history: &'a [StoredMessage],
        more: bool,
        /// The room is secret (`+s`); omitted when not.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        secret: bool,
        /// Who set the topic, and when (ms); omitted when not known.
        #[serde(skip_serializing_if = "Option::is_none")]
        topic_by: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        topic_at: Option<i64>,
    },
    Left {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
        /// A kick's comment, when the moderator gave one.
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<&'a str>,
    },
    Rooms {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        rooms: &'a [RoomSummary],
    },
    RoomStatus {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        room: &'a str,
        topic: &'a str,
        count: usize,
        members: &'a [MemberView],
    },
    Topic {
        room: &'a str,
        topic: &'a str,
        by: &'a str,
    },
    /// A moderator changed `room`'s settings (see docs/protocol.md "mode").
    Mode {
        room: &'a str,
        by: &'a str,
        changes: &'a [ModeItem],
    },
    /// A room's settings, the answer to `mode` without `set`.
    Modes {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        room: &'a str,
        moderated: bool,
        topic_lock: bool,
        invite_only: bool,
        secret: bool,
        /// The key (`*` for those not in the room); omitted when none.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
        /// Omitted when none.
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        bans: &'a [BanView],
    },
    /// A moderator of `room` invites this user to it (IRC's INVITE).
    Invited {
        room: &'a str,
        by: &'a str,
    },
    Message(&'a StoredMessage),
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a StoredMessage>,
    },
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        #[serde(flatten)]
        place: Place<'a>,
        messages: &'a [StoredMessage],
        more: bool,
    },
    Edited {
        msg_id: String,
        #[serde(flatten)]
        place: Place<'a>,
        text: &'a str,
        edited_at: i64,
    },
    Deleted {
        msg_id: String,
        #[serde(flatten)]
        place: Place<'a>,
    },
    /// A reaction added (`on: true`) or taken back.
    Reaction {
        msg_id: String,
        #[serde(flatten)]
        place: Place<'a>,
        emoji: &'a str,
        nick: &'a str,
        on: bool,
    },
    /// Messages that match a `search`, newest first.
    SearchResults {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        messages: &'a [StoredMessage],
        more: bool,
    },
    Read {
        #[serde(flatten)]
        place: Place<'a>,
        nick: &'a str,
        seq: u64,
    },
    Typing {
        #[serde(flatten)]
        origin: Origin<'a>,
        nick: &'a str,
        active: bool,
    },
    Event {
        #[serde(flatten)]
        origin: Origin<'a>,
        nick: &'a str,
        name: &'a str,
        data: &'a Value,
    },
    Presence {
        room: &'a str,
        nick: &'a str,
        event: &'a str,
        /// On `leave` and `quit`: the text the user gave (IRC's PART and
        /// QUIT messages), or a kick's comment.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        /// On a `leave` that is a kick: the moderator who kicked.
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<&'a str>,
    },
    /// A user's shown profile changed: to its own sessions (no `room`), and
    /// to each room its sessions are in.
    Profile {
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        user: ProfileView<'a>,
    },
    Status {
        nick: &'a str,
        online: bool,
        away: bool,
        last_seen: Option<i64>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a FrameId>,
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// Which room setting refused (see docs/protocol.md "mode").
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    Notice {
        code: &'a str,
        message: &'a str,
    },
}

impl<'a> ServerFrame<'a> {
    pub fn error(id: Option<&'a FrameId>, e: &'a ProtoError) -> Self {
        ServerFrame::Error { id, code: e.code, message: &e.message, retry_after_ms: e.retry_after_ms, reason: e.reason }
    }
    pub fn ack(id: Option<&'a FrameId>) -> Self {
        ServerFrame::Ack { id, message: None }
    }
}

/// A watched user's state as one number (what `status` frames say, for
/// telling a watcher a state only once): 1 offline, 2 online, 3 away.
pub fn status_code(online: bool, away: bool) -> u8 {
    match (online, away) {
        (false, _) => 1,
        (true, false) => 2,
        (true, true) => 3,
    }
}

/// The frame that clears a message sender's typing indicator where the
/// message went.
pub fn typing_off(msg: &StoredMessage) -> Frame {
    let origin = match msg.conv {
        Conv::Room(_) => Origin { room: msg.room.as_deref(), from: None },
        _ => Origin { room: None, from: Some(&msg.from) },
    };
    encode(&ServerFrame::Typing { origin, nick: &msg.from, active: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frame_shape() {
        let m = StoredMessage {
            msg_id: Ulid::nil(),
            conv: Conv::Room("lobby".into()),
            room: Some("Lobby".into()),
            to: None,
            seq: 4,
            from: "alice".into(),
            sender_id: "a-secret-id".into(),
            text: "hi".into(),
            attachments: vec![],
            mentions: vec![],
            sent_at: 7,
            edited_at: None,
            deleted: false,
            reply_to: None,
            reactions: Reactions::default(),
        };
        let v: Value = serde_json::from_str(&encode(&ServerFrame::Message(&m))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"message","msg_id":"00000000000000000000000000","room":"Lobby",
                "seq":4,"from":"alice","text":"hi","attachments":[],"sent_at":7})
        );
        let id = FrameId::Int(3);
        let v: Value = serde_json::from_str(&encode(&ServerFrame::History {
            id: Some(&id),
            place: Place::with("bob"),
            messages: &[],
            more: false,
        }))
        .unwrap();
        assert_eq!(v, serde_json::json!({"type":"history","id":3,"with":"bob","messages":[],"more":false}));
    }
}
