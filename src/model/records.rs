//! What the store keeps, as plain data: messages before they are stored,
//! history pages, rooms, accounts, roles.

use std::sync::Arc;

use ulid::Ulid;

use crate::protocol::server::{Attachment, Conv, Reactions, ReplyRef, StoredMessage};

/// A message accepted by the hub, not yet stored: it has no `seq` yet.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub msg_id: Ulid,
    pub conv: Conv,
    pub room: Option<Arc<str>>,
    pub to: Option<Arc<str>>,
    pub from: Arc<str>,
    /// Who sent it (see [`super::ids`]): edit and delete rights follow it.
    pub sender_id: Arc<str>,
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// The nicks its text mentions (`@nick`, users that exist), as shown.
    pub mentions: Vec<Arc<str>>,
    pub sent_at: i64,
    /// The message this one answers, as quoted when it was sent.
    pub reply_to: Option<Box<ReplyRef>>,
}

impl NewMessage {
    pub(crate) fn stored(self, seq: u64) -> StoredMessage {
        StoredMessage {
            msg_id: self.msg_id,
            conv: self.conv,
            room: self.room,
            to: self.to,
            seq,
            from: self.from,
            sender_id: self.sender_id,
            text: self.text,
            attachments: self.attachments,
            mentions: self.mentions,
            sent_at: self.sent_at,
            edited_at: None,
            deleted: false,
            reply_to: self.reply_to,
            reactions: Reactions::default(),
        }
    }
}

/// Which page of a conversation to read. `upto` bounds the page from above
/// (inclusive), so a `join` can read exactly what was delivered before it.
#[derive(Clone, Copy, Debug, Default)]
pub struct HistoryQuery {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub upto: Option<u64>,
    pub limit: usize,
}

/// A page of history, oldest first; `more` when older (for `before` or the
/// latest page) or newer (for `after`) messages exist past the page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub messages: Vec<StoredMessage>,
    pub more: bool,
}

/// A room as the store knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomRecord {
    pub name: Arc<str>,
    pub topic: Arc<str>,
    pub last_seq: u64,
    /// Only members (see `room_members`) may join.
    pub private: bool,
    /// Created through the API: only moderators set the topic.
    pub managed: bool,
    /// Its settings (IRC's channel modes).
    pub modes: RoomModes,
    /// Its ban masks, read by the service for a join (the store's `room`
    /// leaves this empty: see `room_bans`).
    pub bans: Vec<String>,
}

/// A room's stored settings, for every door (IRC shows them as channel
/// modes). Invite-only (`+i`) is [`RoomRecord::private`].
#[derive(Clone, Default, PartialEq)]
pub struct RoomModes {
    /// `+m`: only moderators and voiced members say anything.
    pub moderated: bool,
    /// `+t`: only moderators set the topic. `None`: the default (locked in
    /// a room made through the API or private, open in one made by joining).
    pub topic_lock: Option<bool>,
    /// `+s`: left out of room lists, `LIST` and `WHOIS` for non-members.
    pub secret: bool,
    /// `+k`: joining needs this key (empty: none). Never logged.
    pub key: Arc<str>,
    /// `+l`: most users in the room at once (0: no limit).
    pub limit: u32,
}

impl std::fmt::Debug for RoomModes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomModes")
            .field("moderated", &self.moderated)
            .field("topic_lock", &self.topic_lock)
            .field("secret", &self.secret)
            .field("key", &if self.key.is_empty() { "" } else { "<set>" })
            .field("limit", &self.limit)
            .finish()
    }
}

impl RoomRecord {
    /// Whether only moderators set the topic.
    pub fn topic_locked(&self) -> bool {
        self.modes.topic_lock.unwrap_or(self.managed || self.private)
    }
}

/// A ban (`+b`): a case-folded `nick!user@host` mask with `*` and `?`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ban {
    pub mask: String,
    pub set_by: String,
    pub set_at: i64,
}

/// A users row: an account if it has a password hash, else a nick seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub nick: String,
    pub display_name: String,
    pub status: String,
    pub avatar: String,
    pub settings: serde_json::Value,
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub last_seen: i64,
    /// The id of the identity that owns the nick (an account's or a site
    /// user's, see [`super::ids`]); `None` for a nick only guests used.
    pub owner: Option<String>,
}

impl Account {
    pub fn registered(&self) -> bool {
        self.password_hash.is_some()
    }
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ProfileUpdate {
    pub display_name: Option<String>,
    pub status: Option<String>,
    pub avatar: Option<String>,
    pub settings: Option<serde_json::Value>,
}

/// A user's role in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Member,
    /// May speak in a moderated room (`+v`).
    Voice,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Voice => "voice",
            Role::Moderator => "moderator",
        }
    }
    pub fn parse(s: &str) -> Role {
        match s {
            "moderator" => Role::Moderator,
            "voice" => Role::Voice,
            _ => Role::Member,
        }
    }
}

/// An uploaded file as the store keeps it (its bytes are in the file
/// storage under `id`, its thumbnail under `<id>.thumb`).
#[derive(Clone, Debug, PartialEq)]
pub struct UploadRecord {
    pub id: String,
    /// The uploader's user id (see [`super::ids`]).
    pub owner: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub thumb: bool,
    pub created_at: i64,
    /// The message that carries it, once one does.
    pub msg_id: Option<String>,
}

/// What a search covers.
#[derive(Clone, Debug)]
pub enum SearchScope {
    /// One conversation (the caller may read it: checked before).
    Conv(crate::protocol::server::Conv),
    /// Everything a caller may read: every open room and the messages to
    /// everyone; the closed (private, secret or keyed) rooms `member`
    /// belongs to or the caller is in (`in_rooms`, their keys); every room
    /// if `all_rooms`; the direct messages of `user_id` (none if `None`).
    Readable { user_id: Option<Arc<str>>, member: Option<Arc<str>>, in_rooms: Vec<Arc<str>>, all_rooms: bool },
}

/// A search: the query's words (see `protocol::social::search_words`),
/// where, and a page of at most `limit` matches older than `before`.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub words: Vec<String>,
    pub scope: SearchScope,
    pub before: Option<Ulid>,
    pub limit: usize,
    /// MySQL/MariaDB index no shorter words (`innodb_ft_min_token_size`).
    pub min_word_chars: usize,
}
