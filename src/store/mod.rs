//! Where messages are kept, behind one [`Store`] handle. Backends are enum
//! variants (no trait objects on the hot path): `memory://` keeps recent
//! messages in this process; the SQL backends plug in here.
//!
//! [`writer`] is the durable step of DESIGN.md's data flow: it batches new
//! messages, assigns each conversation's next `seq` in commit order and
//! reports committed batches back, in order, to whoever fans them out.

pub mod memory;
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

/// The message store. Cheap to clone.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<memory::MemoryStore>),
    Sql(Arc<sql::SqlStore>),
}

impl Store {
    /// Opens the store `database.url` names, applying migrations.
    pub async fn open(config: &Config) -> Result<Store, StoreError> {
        if config.database.url.starts_with("memory:") {
            return Ok(Store::Memory(Arc::new(memory::MemoryStore::new(config.database.memory_history))));
        }
        match sql::SqlStore::open(&config.database).await {
            Ok(store) => Ok(Store::Sql(Arc::new(store))),
            Err(StoreError::Unavailable(e)) => Err(StoreError::Unavailable(format!(
                "cannot open the database `{}`: {e}",
                redact_url(&config.database.url)
            ))),
        }
    }

    /// Stores a batch in one step, assigning each conversation's next `seq`
    /// in batch order. All or nothing.
    pub async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<StoredMessage>, StoreError> {
        match self {
            Store::Memory(m) => m.append(batch),
            Store::Sql(s) => s.append(batch).await,
        }
    }

    pub async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.history(conv, q)),
            Store::Sql(s) => s.history(conv, q).await,
        }
    }

    /// Messages sent in `[from, to)` (ms), oldest first, at most `limit`.
    pub async fn transcript(&self, conv: &Conv, from: i64, to: i64, limit: usize) -> Result<Page, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.transcript(conv, from, to, limit)),
            Store::Sql(s) => s.transcript(conv, from, to, limit).await,
        }
    }

    pub async fn message(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.message(msg_id)),
            Store::Sql(s) => s.message(msg_id).await,
        }
    }

    /// Replaces a message's text; returns the updated message.
    pub async fn edit(&self, msg_id: Ulid, text: &str, at: i64) -> Result<Option<StoredMessage>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.update(msg_id, |msg| {
                msg.text = text.to_owned();
                msg.edited_at = Some(at);
            })),
            Store::Sql(s) => s.edit(msg_id, text, at).await,
        }
    }

    /// Marks a message deleted (its text is dropped); returns it.
    pub async fn delete(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.update(msg_id, |msg| {
                msg.deleted = true;
                msg.text.clear();
            })),
            Store::Sql(s) => s.delete(msg_id).await,
        }
    }

    /// The room's stored name, topic and latest `seq`, if it was ever used.
    pub async fn room(&self, key: &str) -> Result<Option<RoomRecord>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.room(key)),
            Store::Sql(s) => s.room(key).await,
        }
    }

    pub async fn set_topic(&self, key: &str, name: &Arc<str>, topic: &Arc<str>) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.set_topic(key, name, topic);
                Ok(())
            }
            Store::Sql(s) => s.set_topic(key, name, topic).await,
        }
    }

    /// Records that a user was seen (connected or disconnected) at `at`.
    pub async fn user_seen(&self, nick: &str, at: i64) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.user_seen(nick, at);
                Ok(())
            }
            Store::Sql(s) => s.user_seen(nick, at).await,
        }
    }

    /// When the user was last seen; `None` for a nick never seen.
    pub async fn last_seen(&self, nick_key: &str) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.last_seen(nick_key)),
            Store::Sql(s) => s.last_seen(nick_key).await,
        }
    }

    /// Whether the store is reachable (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Sql(s) => s.ping().await,
        }
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
