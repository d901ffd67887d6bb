//! The store's one error type. Each variant keeps its cause as
//! [`std::error::Error::source`], so a caller can tell a pool timeout from a
//! refused connection; `Display` repeats the cause's text the way sqlx's own
//! errors do, so a log line that prints only `%e` still says why. No
//! variant prints a database URL except through [`super::redact_url`].

use std::path::PathBuf;
use std::time::Duration;

/// Why a row did not decode (a decoder's error, or a sentence).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or did not answer while doing `what`.
    #[error("storage unavailable: {what}: {source}")]
    Unavailable {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// SQLite refused while the writer's own connection was doing `what`
    /// (see `sql::appender`).
    #[error("storage unavailable: {what}: {source}")]
    Sqlite {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The first connection got no answer at all within `after`.
    #[error("storage unavailable: no answer within {after:?}")]
    NoAnswer { after: Duration },
    /// A stored row that cannot be read back as what it should hold.
    #[error("bad {what} in the {table} table: {source}")]
    Corrupt {
        table: &'static str,
        what: &'static str,
        #[source]
        source: Cause,
    },
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The folder of a SQLite file could not be created.
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `database.url` names no backend this server speaks (`url` redacted).
    #[error("unsupported database url `{url}`")]
    UnsupportedUrl { url: String },
    /// Opening the database `url` (redacted) failed.
    #[error("cannot open the database `{url}`: {source}")]
    Open {
        url: String,
        #[source]
        source: Box<StoreError>,
    },
    /// A cluster's Redis buffer (the newest, not yet archived messages)
    /// could not be read.
    #[error("storage unavailable: {0}")]
    Buffer(String),
    /// The file storage (a directory, an object store) failed while doing `what`.
    #[error("file storage: {what}: {source}")]
    Files {
        what: &'static str,
        #[source]
        source: Cause,
    },
}

impl StoreError {
    /// A file storage failure.
    pub(crate) fn files(what: &'static str, source: impl Into<Cause>) -> StoreError {
        StoreError::Files { what, source: source.into() }
    }
}

/// `.context("reading history")` on a sqlx result: the error becomes
/// [`StoreError::Unavailable`] with the sqlx error as its source.
pub(crate) trait Context<T> {
    fn context(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Unavailable { what, source })
    }
}

/// `.corrupt("users", "settings")` on a column read that failed: the row
/// is there but does not decode.
pub(crate) trait Corrupt<T> {
    fn corrupt(self, table: &'static str, what: &'static str) -> Result<T, StoreError>;
}

impl<T, E: Into<Cause>> Corrupt<T> for Result<T, E> {
    fn corrupt(self, table: &'static str, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Corrupt { table, what, source: e.into() })
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_sqlx_error_survives_as_the_source() {
        let e = Err::<(), _>(sqlx::Error::PoolTimedOut).context("reading history").unwrap_err();
        assert_eq!(e.to_string(), format!("storage unavailable: reading history: {}", sqlx::Error::PoolTimedOut));
        let source = e.source().and_then(|s| s.downcast_ref::<sqlx::Error>());
        assert!(matches!(source, Some(sqlx::Error::PoolTimedOut)), "{source:?}");
    }

    #[test]
    fn a_corrupt_row_names_table_and_column() {
        let e = Err::<(), _>(serde_json::from_str::<Vec<String>>("{").unwrap_err())
            .corrupt("messages", "attachments")
            .unwrap_err();
        assert!(e.to_string().starts_with("bad attachments in the messages table: "), "{e}");
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
    }

    #[test]
    fn opening_names_the_url_only_redacted() {
        let url = super::super::redact_url("postgres://u:secret@h/db");
        let inner = Box::new(StoreError::NoAnswer { after: Duration::from_secs(5) });
        let e = StoreError::Open { url, source: inner };
        assert_eq!(
            e.to_string(),
            "cannot open the database `postgres://u:***@h/db`: storage unavailable: no answer within 5s"
        );
        assert!(matches!(&e, StoreError::Open { source, .. } if matches!(**source, StoreError::NoAnswer { .. })));
    }
}
