//! Where messages, rooms and users are kept, behind one [`Store`] handle:
//! SQLite (the default; `memory://` is an in-memory SQLite database),
//! PostgreSQL or MySQL/MariaDB, through sqlx ([`sql`]).
//!
//! [`writer`] is the durable step of DESIGN.md's data flow: it batches new
//! messages, assigns each conversation's next `seq` in commit order and
//! reports committed batches back, in order, to whoever fans them out.

pub mod sql;
pub mod writer;

use std::sync::Arc;

use ulid::Ulid;

use crate::config::Config;
use crate::protocol::server::{Conv, StoredMessage};

pub use writer::{CommitSink, Writer};

/// A message accepted by the hub, not yet stored: it has no `seq` yet.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub msg_id: Ulid,
    pub conv: Conv,
    pub room: Option<Arc<str>>,
    pub to: Option<Arc<str>>,
    pub from: Arc<str>,
    pub text: String,
    pub attachments: Vec<String>,
    pub sent_at: i64,
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
            text: self.text,
            attachments: self.attachments,
            sent_at: self.sent_at,
            edited_at: None,
            deleted: false,
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
    /// Who owns the nick: `account`, or `site:<sub>` for a site user.
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
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
        }
    }
    pub fn parse(s: &str) -> Role {
        if s == "moderator" { Role::Moderator } else { Role::Member }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// A database URL fit for logs: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The message store: a cheap, cloneable handle on the SQL backend.
#[derive(Clone)]
pub struct Store(Arc<sql::SqlStore>);

impl Store {
    /// Opens the database `database.url` names, applying migrations.
    pub async fn open(config: &Config) -> Result<Store, StoreError> {
        match sql::SqlStore::open(&config.database).await {
            Ok(store) => Ok(Store(Arc::new(store))),
            Err(StoreError::Unavailable(e)) => Err(StoreError::Unavailable(format!(
                "cannot open the database `{}`: {e}",
                redact_url(&config.database.url)
            ))),
        }
    }

    /// Stores a batch in one step, assigning each conversation's next `seq`
    /// in batch order. All or nothing.
    pub async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<StoredMessage>, StoreError> {
        self.0.append(batch).await
    }

    pub async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        self.0.history(conv, q).await
    }

    /// Messages sent in `[from, to)` (ms), oldest first, at most `limit`.
    pub async fn transcript(&self, conv: &Conv, from: i64, to: i64, limit: usize) -> Result<Page, StoreError> {
        self.0.transcript(conv, from, to, limit).await
    }

    pub async fn message(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        self.0.message(msg_id).await
    }

    /// Replaces a message's text; returns the updated message.
    pub async fn edit(&self, msg_id: Ulid, text: &str, at: i64) -> Result<Option<StoredMessage>, StoreError> {
        self.0.edit(msg_id, text, at).await
    }

    /// Marks a message deleted (its text is dropped); returns it.
    pub async fn delete(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        self.0.delete(msg_id).await
    }

    /// The room's stored name, topic and latest `seq`, if it was ever used.
    pub async fn room(&self, key: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.0.room(key).await
    }

    pub async fn set_topic(&self, key: &str, name: &str, topic: &str) -> Result<(), StoreError> {
        self.0.set_topic(key, name, topic).await
    }

    /// Records that a user was seen (connected or disconnected) at `at`.
    pub async fn user_seen(&self, nick: &str, at: i64) -> Result<(), StoreError> {
        self.0.user_seen(nick, at).await
    }

    /// When the user was last seen; `None` for a nick never seen.
    pub async fn last_seen(&self, nick_key: &str) -> Result<Option<i64>, StoreError> {
        self.0.last_seen(nick_key).await
    }

    pub async fn account(&self, nick_key: &str) -> Result<Option<Account>, StoreError> {
        self.0.account(nick_key).await
    }

    /// Registers `nick` with a password hash; false if it is registered already.
    pub async fn create_account(&self, nick: &str, hash: &str, at: i64) -> Result<bool, StoreError> {
        self.0.create_account(nick, hash, at).await
    }

    pub async fn update_profile(&self, nick_key: &str, update: &ProfileUpdate) -> Result<(), StoreError> {
        self.0.update_profile(nick_key, update).await
    }

    /// Makes `owner` own the nick if nobody does; returns its owner.
    pub async fn claim_owner(&self, nick_key: &str, owner: &str) -> Result<Option<String>, StoreError> {
        self.0.claim_owner(nick_key, owner).await
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        nick_key: &str,
        at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.0.create_session(token_hash, nick_key, at, expires_at).await
    }

    /// The nick key a live session token belongs to.
    pub async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<String>, StoreError> {
        self.0.session_user(token_hash, now).await
    }

    /// Creates a named room; false if it exists already.
    pub async fn create_room(
        &self,
        key: &str,
        name: &str,
        topic: &str,
        private: bool,
        managed: bool,
    ) -> Result<bool, StoreError> {
        self.0.create_room(key, name, topic, private, managed).await
    }

    /// Forgets a room and its messages; false if there was nothing to forget.
    pub async fn delete_room(&self, key: &str) -> Result<bool, StoreError> {
        self.0.delete_room(key).await
    }

    /// Adds a member to a room, or changes its role.
    pub async fn set_member(&self, room_key: &str, nick_key: &str, role: Role) -> Result<(), StoreError> {
        self.0.set_member(room_key, nick_key, role).await
    }

    pub async fn remove_member(&self, room_key: &str, nick_key: &str) -> Result<bool, StoreError> {
        self.0.remove_member(room_key, nick_key).await
    }

    pub async fn member_role(&self, room_key: &str, nick_key: &str) -> Result<Option<Role>, StoreError> {
        self.0.member_role(room_key, nick_key).await
    }

    pub async fn room_members(&self, room_key: &str) -> Result<Vec<(String, Role)>, StoreError> {
        self.0.room_members(room_key).await
    }

    pub async fn list_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        self.0.list_rooms().await
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(super::redact_url("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(super::redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
    }
}
