//! Where messages, rooms and users are kept, behind one [`Store`] handle:
//! SQLite (the default; `memory://` is an in-memory SQLite database),
//! PostgreSQL or MySQL/MariaDB, through sqlx ([`sql`]).
//!
//! [`writer`] is the durable step of DESIGN.md's data flow: it batches new
//! messages, assigns each conversation's next `seq` in commit order and
//! reports committed batches back, in order, to whoever fans them out.

pub mod health;
pub mod sql;
pub mod writer;

use std::sync::Arc;

use crate::config::Config;

pub use crate::model::{Account, HistoryQuery, NewMessage, Page, ProfileUpdate, Role, RoomRecord};
pub use writer::{CommitSink, Writer};

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
