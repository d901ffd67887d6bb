//! Messages: appending (numbering each conversation's `seq`), archiving a
//! cluster's buffer, history pages, transcripts, edits and deletions.

use std::collections::HashMap;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite};
use ulid::Ulid;

use super::dialect::SQLITE;
use super::{Pool, SqlStore};
use crate::protocol::server::{Conv, Reactions, ReplyRef, StoredMessage};
use crate::store::error::{Context, Corrupt};
use crate::store::{HistoryQuery, NewMessage, Page, StoreError};

impl SqlStore {
    /// The conversation's latest `seq`: cached, or read once.
    pub(super) async fn last_seq(&self, conv: &Conv) -> Result<u64, StoreError> {
        if let Some(seq) = self.seqs().get(conv) {
            return Ok(*seq);
        }
        self.newest_seq(conv).await
    }

    /// Stores a batch in one step, assigning each conversation's next `seq`
    /// in batch order. All or nothing.
    pub(crate) async fn append(&self, batch: Vec<NewMessage>) -> Result<Vec<StoredMessage>, StoreError> {
        // Read the latest seq of conversations not cached yet (no lock held
        // across the reads), then number the batch.
        let mut next: HashMap<Conv, u64> = HashMap::new();
        for m in &batch {
            if !next.contains_key(&m.conv) {
                next.insert(m.conv.clone(), self.last_seq(&m.conv).await?);
            }
        }
        let stored = number(batch, &mut next);
        let mut inserted = self.insert(&stored, false).await;
        if inserted.as_ref().is_err_and(read_only_connection) {
            // A SQLite connection opened while the file was read-only stays
            // read-only. Nothing was written (SQLite refuses before it
            // writes): retire every connection open now and try once more
            // on a fresh one.
            self.health.failed();
            inserted = self.insert(&stored, false).await;
        }
        match inserted {
            Ok(()) => {
                self.seqs().extend(next);
                Ok(stored)
            }
            Err(e) => {
                // The write may or may not have happened: read the seqs anew.
                self.seqs().clear();
                Err(e).context("storing messages")
            }
        }
    }

    /// Inserts numbered messages in one statement; `ignore_stored` skips
    /// those stored already instead of failing (the archiver's batches);
    /// without it, this is the writer task's append, which on SQLite runs
    /// on the connection the writer keeps.
    async fn insert(&self, messages: &[StoredMessage], ignore_stored: bool) -> Result<(), sqlx::Error> {
        macro_rules! query {
            ($prefix:expr, $suffix:expr) => {{
                let mut q = QueryBuilder::new($prefix);
                q.push_values(messages, |mut row, m| {
                    row.push_bind(m.msg_id.to_string())
                        .push_bind(m.conv.storage_key())
                        .push_bind(m.seq as i64)
                        .push_bind(m.room.as_deref().map(str::to_owned))
                        .push_bind(m.from.to_string())
                        .push_bind(m.to.as_deref().map(str::to_owned))
                        .push_bind(m.text.clone())
                        .push_bind(serde_json::to_string(&m.attachments).unwrap_or_else(|_| "[]".into()))
                        .push_bind(m.sent_at)
                        .push_bind(m.sender_id.to_string())
                        .push_bind(m.reply_to.as_ref().map(|r| r.msg_id.to_string()))
                        .push_bind(
                            (!m.mentions.is_empty()).then(|| serde_json::to_string(&m.mentions).unwrap_or_default()),
                        );
                });
                q.push($suffix);
                q
            }};
        }
        if !ignore_stored && let (Pool::Sqlite(pool), Some(kept)) = (&self.pool, &self.writer) {
            return Self::append_on_kept(pool, kept, query!(SQLITE.insert_messages, "").build()).await;
        }
        on_pool!(self, |pool, sql| {
            let (prefix, suffix) =
                if ignore_stored { (sql.archive_prefix, sql.archive_suffix) } else { (sql.insert_messages, "") };
            query!(prefix, suffix).build().execute(pool).await.map(|_| ())
        })
    }

    /// Runs the writer's insert on the SQLite connection it keeps, opening
    /// one first if it has none. Every append through the pool would cost
    /// a ping on acquire and another on release (each a round trip to the
    /// connection's thread), and consecutive appends would land on
    /// different connections, each of which then finds its page cache
    /// stale and reads the pages again. A connection whose write failed is
    /// given back (the pool retires it, see `health`); the next append
    /// takes a fresh one.
    async fn append_on_kept(
        pool: &SqlitePool,
        kept: &tokio::sync::Mutex<Option<PoolConnection<Sqlite>>>,
        query: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<(), sqlx::Error> {
        // Only the writer task appends: the lock is never contended.
        let mut kept = kept.lock().await;
        let conn = match &mut *kept {
            Some(conn) => conn,
            None => kept.insert(pool.acquire().await?),
        };
        let result = query.execute(&mut **conn).await;
        if result.is_err() {
            *kept = None;
        }
        result.map(|_| ())
    }

    /// Stores messages numbered elsewhere (a cluster's archiver), in one
    /// statement; a message already stored is skipped, so a batch may be
    /// archived twice without harm.
    pub(crate) async fn archive(&self, messages: &[StoredMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.insert(messages, true).await.context("archiving messages")
    }

    /// The conversation's newest stored `seq`, read from the database.
    pub(crate) async fn newest_seq(&self, conv: &Conv) -> Result<u64, StoreError> {
        let key = conv.storage_key();
        let seq: i64 = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.last_seq).bind(&key).fetch_one(pool).await.context("reading the newest seq")?
        });
        Ok(seq as u64)
    }

    pub(crate) async fn history(&self, conv: &Conv, q: HistoryQuery) -> Result<Page, StoreError> {
        let key = conv.storage_key();
        let upto = q.upto.map_or(i64::MAX, |u| u.min(i64::MAX as u64) as i64);
        let fetch = q.limit as i64 + 1;
        let (up, bound) = match q.after {
            Some(after) => (true, after.min(i64::MAX as u64) as i64),
            None => (false, q.before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64)),
        };
        let mut messages: Vec<StoredMessage> = on_pool!(self, |pool, sql| {
            let rows = sqlx::query(if up { sql.page_up } else { sql.page_down })
                .bind(&key)
                .bind(bound)
                .bind(upto)
                .bind(fetch)
                .fetch_all(pool)
                .await
                .context("reading history")?;
            rows.iter().map(decode).collect::<Result<_, _>>()?
        });
        self.fill_reactions(&mut messages).await?;
        let more = messages.len() > q.limit;
        messages.truncate(q.limit);
        if !up {
            messages.reverse();
        }
        Ok(Page { messages, more })
    }

    /// Messages sent in `[from, to)` (ms), oldest first, at most `limit`.
    pub(crate) async fn transcript(&self, conv: &Conv, from: i64, to: i64, limit: usize) -> Result<Page, StoreError> {
        let key = conv.storage_key();
        let mut messages: Vec<StoredMessage> = on_pool!(self, |pool, sql| {
            let rows = sqlx::query(sql.transcript)
                .bind(&key)
                .bind(from)
                .bind(to)
                .bind(limit as i64 + 1)
                .fetch_all(pool)
                .await
                .context("reading a transcript")?;
            rows.iter().map(decode).collect::<Result<_, _>>()?
        });
        self.fill_reactions(&mut messages).await?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok(Page { messages, more })
    }

    pub(crate) async fn message(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            let row = sqlx::query(sql.message).bind(&id).fetch_optional(pool).await.context("reading a message")?;
            row.as_ref().map(decode).transpose()
        })
    }

    /// Replaces a message's text; returns the updated message.
    pub(crate) async fn edit(&self, msg_id: Ulid, text: &str, at: i64) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.edit).bind(text).bind(at).bind(&id).execute(pool).await.context("editing a message")?;
        });
        self.message(msg_id).await
    }

    /// Marks a message deleted (its text is dropped); returns it.
    pub(crate) async fn delete(&self, msg_id: Ulid) -> Result<Option<StoredMessage>, StoreError> {
        let id = msg_id.to_string();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete).bind(&id).execute(pool).await.context("deleting a message")?;
            sqlx::query(sql.delete_reactions).bind(&id).execute(pool).await.context("deleting reactions")?;
        });
        self.message(msg_id).await
    }
}

/// Numbers a batch in order: `next` holds each conversation's latest `seq`
/// before the batch, and after it, the batch's last.
pub(super) fn number(batch: Vec<NewMessage>, next: &mut HashMap<Conv, u64>) -> Vec<StoredMessage> {
    batch
        .into_iter()
        .map(|m| {
            let seq = next.get_mut(&m.conv).map(|s| {
                *s += 1;
                *s
            });
            m.stored(seq.unwrap_or(1))
        })
        .collect()
}

/// A `messages` row (columns in the order the queries select them) as a [`StoredMessage`].
pub(super) fn decode<R: Row>(r: &R) -> Result<StoredMessage, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    bool: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    Option<bool>: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    /// Column `i` (named `what` if it does not decode) as a `T`.
    fn get<R: Row, T>(r: &R, i: usize, what: &'static str) -> Result<T, StoreError>
    where
        usize: sqlx::ColumnIndex<R>,
        T: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        r.try_get::<T, _>(i).corrupt("messages", what)
    }
    let msg_id: String = get(r, 0, "msg_id")?;
    let msg_id = Ulid::from_string(msg_id.trim()).corrupt("messages", "msg_id")?;
    let key: String = get(r, 1, "conv")?;
    let conv = Conv::from_storage_key(&key).ok_or_else(|| format!("`{key}` names no conversation"));
    let conv = conv.corrupt("messages", "conv")?;
    let attachments: String = get(r, 7, "attachments")?;
    let attachments = serde_json::from_str(&attachments).corrupt("messages", "attachments")?;
    // The message it answers, as it is now (its text, or gone).
    let reply_to = match get::<R, Option<String>>(r, 12, "reply_to")? {
        Some(id) => {
            let id = Ulid::from_string(id.trim()).corrupt("messages", "reply_to")?;
            let from = get::<R, Option<String>>(r, 13, "reply_to sender")?.unwrap_or_default();
            let text = get::<R, Option<String>>(r, 14, "reply_to text")?.unwrap_or_default();
            let gone = get::<R, Option<bool>>(r, 15, "reply_to deleted")?.unwrap_or(true);
            Some(Box::new(ReplyRef::quote(id, from.into(), &text, gone)))
        }
        None => None,
    };
    let mentions = match get::<R, Option<String>>(r, 16, "mentions")? {
        Some(m) => serde_json::from_str(&m).corrupt("messages", "mentions")?,
        None => Vec::new(),
    };
    Ok(StoredMessage {
        msg_id,
        conv,
        seq: get::<R, i64>(r, 2, "seq")? as u64,
        room: get::<R, Option<String>>(r, 3, "room")?.map(Into::into),
        from: get::<R, String>(r, 4, "sender")?.into(),
        to: get::<R, Option<String>>(r, 5, "recipient")?.map(Into::into),
        text: get(r, 6, "text")?,
        attachments,
        mentions,
        sent_at: get(r, 8, "sent_at")?,
        edited_at: get(r, 9, "edited_at")?,
        deleted: get(r, 10, "deleted")?,
        sender_id: get::<R, String>(r, 11, "sender_id")?.into(),
        reply_to,
        reactions: Reactions::default(),
    })
}

/// Whether a write failed because its SQLite connection is read-only
/// (`SQLITE_READONLY` and its extended codes): the write did not happen.
fn read_only_connection(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else { return false };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_none() {
        return false;
    }
    let code = db.code().and_then(|c| c.parse::<i64>().ok());
    code.is_some_and(|c| c & 0xff == 8)
}
