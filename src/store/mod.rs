//! Where messages, rooms and users are kept, behind one [`Store`] handle:
//! SQLite (the default; `memory://` is an in-memory SQLite database),
//! PostgreSQL or MySQL/MariaDB, through sqlx ([`sql`]).
//!
//! [`writer`] is the durable step of DESIGN.md's data flow: it batches new
//! messages, assigns each conversation's next `seq` in commit order and
//! reports committed batches back, in order, to whoever fans them out.
//!
//! Every failure is a [`StoreError`] ([`error`]) that keeps its cause (the
//! sqlx error, the migration error) as its `source()`.

mod error;
mod health;
pub(crate) mod sql;
mod writer;

use std::sync::Arc;

use ulid::Ulid;

use crate::config::Config;
use crate::protocol::server::{Conv, StoredMessage};

pub use error::StoreError;
pub(crate) use writer::{CommitSink, Writer};

/// A message accepted by the hub, not yet stored: it has no `seq` yet.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub msg_id: Ulid,
    pub conv: Conv,
    pub room: Option<Arc<str>>,
    pub to: Option<Arc<str>>,
    pub from: Arc<str>,
    /// Who sent it (see [`crate::ids`]): edit and delete rights follow it.
    pub sender_id: Arc<str>,
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
            sender_id: self.sender_id,
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
    /// Only members (rows of the `room_members` table) may join.
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
    /// The id of the identity that owns the nick (an account's or a site
    /// user's, see [`crate::ids`]); `None` for a nick only guests used.
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

/// A database URL fit for logs: any password replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
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
        let store = sql::SqlStore::open(&config.database)
            .await
            .map_err(|e| StoreError::Open { url: redact_url(&config.database.url), source: Box::new(e) })?;
        Ok(Store(Arc::new(store)))
    }
}

/// Every query is the backend's own; the handle adds nothing to it.
impl std::ops::Deref for Store {
    type Target = sql::SqlStore;
    fn deref(&self) -> &sql::SqlStore {
        &self.0
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
