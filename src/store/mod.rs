//! Where messages, rooms and users are kept, behind one [`Store`] handle:
//! SQLite (the default; `memory://` is an in-memory SQLite database),
//! PostgreSQL or MySQL/MariaDB, through sqlx ([`sql`]).
//!
//! [`writer`] is the durable step of DESIGN.md's data flow: it batches new
//! messages, assigns each conversation's next `seq` in commit order and
//! reports committed batches back, in order, to whoever fans them out.
//!
//! [`files`] keeps uploaded files: a local directory or an S3-compatible
//! object store.
//!
//! Every failure is a [`StoreError`] ([`error`]) that keeps its cause (the
//! sqlx error, the migration error) as its `source()`.

mod error;
pub(crate) mod files;
mod health;
pub(crate) mod sql;
mod writer;

use std::sync::Arc;

use crate::config::Config;

pub(crate) use crate::model::{
    Account, Ban, HistoryQuery, NewMessage, Page, ProfileUpdate, Role, RoomModes, RoomRecord, SearchQuery, SearchScope,
    UploadRecord,
};
pub use error::StoreError;
pub(crate) use sql::notify::{NewOutbox, OutboxRow, PushSubscription, Wanting};
pub(crate) use writer::{CommitSink, Writer};

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
