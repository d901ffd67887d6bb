//! Reactions (added, taken back, shown on history pages) and full-text
//! search, on each backend's own index: SQLite FTS5, a PostgreSQL
//! `tsvector` with GIN, a MySQL/MariaDB `FULLTEXT` index (see the 0007
//! migrations). A search is built from the query's words only
//! (`protocol::social::search_words`: letters and digits), each quoted in
//! the engine's syntax, so no input is read as an operator.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::QueryBuilder;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use ulid::Ulid;

use super::dialect::Fts;
use super::messages::decode;
use super::{Pool, SqlStore};
use crate::protocol::server::StoredMessage;
use crate::store::error::Context;
use crate::store::{Page, SearchQuery, SearchScope, StoreError};

/// What a `react` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReactionChange {
    /// Added or taken back: the others are told.
    Changed,
    /// It was so already: nothing to tell.
    Unchanged,
    /// A new emoji past the message's limit of distinct ones.
    TooMany,
}

/// InnoDB's default full-text stop words (`INNODB_FT_DEFAULT_STOPWORD`):
/// a required stop word would match nothing, so the query leaves them out.
const INNODB_STOPWORDS: &[&str] = &[
    "a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from", "how", "i", "in", "is", "it",
    "la", "of", "on", "or", "that", "the", "this", "to", "was", "what", "when", "where", "who", "will", "with", "und",
    "www",
];

/// The query in the engine's syntax: every word required, as a prefix.
/// `None` when no word can match on this engine (MySQL: all too short or
/// stop words).
fn fts_query(fts: Fts, words: &[String], min_word_chars: usize) -> Option<String> {
    let q = match fts {
        // A quoted string, then `*`: a prefix phrase. Words hold no quote.
        Fts::Fts5 => words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" "),
        // A quoted lexeme, `:*` for a prefix. Words hold no quote.
        Fts::Tsquery => words.iter().map(|w| format!("'{w}':*")).collect::<Vec<_>>().join(" & "),
        Fts::Boolean => words
            .iter()
            .filter(|w| w.chars().count() >= min_word_chars && !INNODB_STOPWORDS.contains(&w.as_str()))
            .map(|w| format!("+{w}*"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    (!q.is_empty()).then_some(q)
}

/// `s` for a `LIKE … ESCAPE '!'` pattern: its `!`, `%` and `_` literal.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// SQLite, PostgreSQL: most queued messages one indexing transaction takes (it holds
/// the write lock: the writer waits for it, so it stays short).
const INDEX_BATCH: i64 = 256;

/// SQLite: indexes the first of the queued messages up to an id (`?`), at most `?` of them.
pub(super) const INDEX_SQLITE: &str = "INSERT INTO messages_fts (rowid, text) SELECT m.rowid, m.text FROM messages m \
    JOIN (SELECT id FROM messages_fts_pending WHERE id <= ? ORDER BY id LIMIT ?) p ON m.rowid = p.id";
/// SQLite: takes the messages [`INDEX_SQLITE`] indexed off the queue (same parameters).
pub(super) const UNQUEUE_SQLITE: &str = "DELETE FROM messages_fts_pending WHERE id IN (SELECT id FROM messages_fts_pending WHERE id <= ? ORDER BY id LIMIT ?)";

/// SQLite, PostgreSQL: how often the background indexer looks at the queue.
pub(super) const INDEX_EVERY: Duration = Duration::from_millis(100);

/// SQLite: indexes the messages queued in `messages_fts_pending` (see
/// migrations/sqlite/0007), in transactions of at most [`INDEX_BATCH`],
/// until the queue is empty. Indexing many rows in one statement costs a
/// fraction of indexing each in the writer's insert (a trigger per row).
pub(super) async fn index_pending(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    // What is queued now, not what keeps coming: a search never chases the writer.
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM messages_fts_pending").fetch_one(pool).await?;
    loop {
        let queued: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages_fts_pending WHERE id <= ?)")
            .bind(last)
            .fetch_one(pool)
            .await?;
        if !queued {
            return Ok(());
        }
        // IMMEDIATE: the write lock first, so the batch read is the batch removed.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(INDEX_SQLITE).bind(last).bind(INDEX_BATCH).execute(&mut *tx).await?;
        sqlx::query(UNQUEUE_SQLITE).bind(last).bind(INDEX_BATCH).execute(&mut *tx).await?;
        tx.commit().await?;
    }
}

/// PostgreSQL: indexes the messages queued in `message_search_pending`
/// (see migrations/postgres/0007), [`INDEX_BATCH`] per statement, until the
/// queue is empty. A message queued twice (edited meanwhile) is indexed
/// with its text as it is then. Concurrent indexers (other nodes) wait for
/// each other's rows (`FOR UPDATE`), so a search never misses what another
/// node is indexing.
pub(super) async fn index_pending_pg(pool: &PgPool) -> Result<(), sqlx::Error> {
    // What is queued now, not what keeps coming (see `index_pending`).
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0)::BIGINT FROM message_search_pending").fetch_one(pool).await?;
    loop {
        let queued: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM message_search_pending WHERE id <= $1)")
            .bind(last)
            .fetch_one(pool)
            .await?;
        if !queued {
            return Ok(());
        }
        sqlx::query(
            "WITH batch AS (DELETE FROM message_search_pending WHERE id IN \
             (SELECT id FROM message_search_pending WHERE id <= $2 ORDER BY id LIMIT $1 FOR UPDATE) RETURNING msg_id) \
             INSERT INTO message_search (msg_id, search) \
             SELECT m.msg_id, to_tsvector('simple', m.text) FROM messages m WHERE m.msg_id IN (SELECT msg_id FROM batch) \
             ON CONFLICT (msg_id) DO UPDATE SET search = excluded.search",
        )
        .bind(INDEX_BATCH)
        .bind(last)
        .execute(pool)
        .await?;
    }
}

/// The background indexer (SQLite, PostgreSQL), on a pool connection of
/// its own. On a SQLite file whose writer runs on its own thread, that
/// thread indexes instead (see `appender`), and this task is stopped: two
/// connections taking turns at the write lock made the writer wait.
pub(super) async fn indexer(pool: Pool) {
    let mut tick = tokio::time::interval(INDEX_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let done = match &pool {
            Pool::Sqlite(p) => index_pending(p).await,
            Pool::Postgres(p) => index_pending_pg(p).await,
            Pool::Mysql(_) => return,
        };
        if let Err(e) = done {
            tracing::debug!(error = %e, "indexing new messages for search failed; retrying later");
        }
    }
}

impl SqlStore {
    /// Adds (`on`) or takes back a user's reaction to a message. A new
    /// emoji on a message that carries `max_emoji` distinct ones already
    /// is refused.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn react(
        &self,
        msg_id: Ulid,
        user_id: &str,
        nick: &str,
        emoji: &str,
        on: bool,
        max_emoji: usize,
        at: i64,
    ) -> Result<ReactionChange, StoreError> {
        let id = msg_id.to_string();
        let changed = on_pool!(self, |pool, sql| {
            if on {
                let present: Vec<String> = sqlx::query_scalar(sql.reaction_emoji)
                    .bind(&id)
                    .fetch_all(pool)
                    .await
                    .context("reading reactions")?;
                if !present.iter().any(|e| e == emoji) && present.len() >= max_emoji {
                    return Ok(ReactionChange::TooMany);
                }
                let q = sqlx::query(sql.add_reaction).bind(&id).bind(user_id).bind(emoji).bind(nick).bind(at);
                q.execute(pool).await.context("adding a reaction")?.rows_affected()
            } else {
                let q = sqlx::query(sql.remove_reaction).bind(&id).bind(user_id).bind(emoji);
                q.execute(pool).await.context("taking back a reaction")?.rows_affected()
            }
        });
        Ok(if changed > 0 { ReactionChange::Changed } else { ReactionChange::Unchanged })
    }

    /// Fills in the reactions of the messages (not of deleted ones), in
    /// one query.
    pub(super) async fn fill_reactions(&self, messages: &mut [StoredMessage]) -> Result<(), StoreError> {
        let at: HashMap<String, usize> =
            messages.iter().enumerate().filter(|(_, m)| !m.deleted).map(|(i, m)| (m.msg_id.to_string(), i)).collect();
        if at.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, String, String)> = on_pool!(self, |pool, _sql| {
            let mut q = QueryBuilder::new("SELECT msg_id, emoji, nick FROM reactions WHERE msg_id IN (");
            let mut list = q.separated(", ");
            for id in at.keys() {
                list.push_bind(id.clone());
            }
            q.push(") ORDER BY created_at, nick");
            q.build_query_as().fetch_all(pool).await.context("reading reactions")?
        });
        for (id, emoji, nick) in rows {
            if let Some(&i) = at.get(id.trim()) {
                messages[i].reactions.push(emoji, nick.into());
            }
        }
        Ok(())
    }

    /// The messages that hold every word of the query (each as a prefix),
    /// newest first, deleted ones never; `None` if no word of the query
    /// can match on this backend (see [`fts_query`]).
    pub(crate) async fn search(&self, q: &SearchQuery) -> Result<Option<Page>, StoreError> {
        // SQLite: what was stored since the indexer last ran is found too.
        match &self.pool {
            Pool::Sqlite(pool) => index_pending(pool).await.context("indexing new messages")?,
            Pool::Postgres(pool) => index_pending_pg(pool).await.context("indexing new messages")?,
            Pool::Mysql(_) => {}
        }
        let fetch = q.limit as i64 + 1;
        let messages: Option<Vec<StoredMessage>> = on_pool!(self, |pool, sql| {
            match fts_query(sql.fts, &q.words, q.min_word_chars) {
                None => None,
                Some(fts) => {
                    let mut b = QueryBuilder::new(concat!("SELECT ", message_columns!(), "WHERE "));
                    b.push(sql.fts_match.0).push_bind(fts).push(sql.fts_match.1);
                    b.push(" AND m.deleted = FALSE");
                    match &q.scope {
                        SearchScope::Conv(conv) => {
                            b.push(" AND m.conv = ").push_bind(conv.storage_key());
                        }
                        SearchScope::Readable { user_id, member, in_rooms, all_rooms } => {
                            b.push(" AND (m.conv = 'e'");
                            if let Some(id) = user_id {
                                let id = like_escape(id);
                                b.push(" OR m.conv LIKE ").push_bind(format!("d:{id}:%")).push(" ESCAPE '!'");
                                b.push(" OR m.conv LIKE ").push_bind(format!("d:%:{id}")).push(" ESCAPE '!'");
                            }
                            b.push(" OR (m.conv LIKE 'r:%'");
                            if !all_rooms {
                                let (pre, post) = sql.room_conv;
                                // Closed rooms (see `service::access::may_read`).
                                b.push(" AND (NOT EXISTS (SELECT 1 FROM rooms r WHERE ");
                                b.push("(r.private OR r.secret OR r.join_key <> '') AND ");
                                b.push(pre).push("r.name_key").push(post).push(" = m.conv)");
                                if !in_rooms.is_empty() {
                                    b.push(" OR m.conv IN (");
                                    let mut list = b.separated(", ");
                                    for key in in_rooms {
                                        list.push_bind(format!("r:{key}"));
                                    }
                                    b.push(")");
                                }
                                if let Some(member) = member {
                                    b.push(" OR EXISTS (SELECT 1 FROM room_members rm WHERE rm.member = ");
                                    b.push_bind(member.to_string()).push(" AND ");
                                    b.push(pre).push("rm.room_key").push(post).push(" = m.conv)");
                                }
                                b.push(")");
                            }
                            b.push("))");
                        }
                    }
                    // Newest first: by time, then (within a millisecond) by
                    // seq; msg_id makes the order total, for `before`.
                    if let Some(before) = q.before {
                        b.push(" AND (m.sent_at, m.seq, m.msg_id) < (SELECT c.sent_at, c.seq, c.msg_id FROM messages c WHERE c.msg_id = ");
                        b.push_bind(before.to_string()).push(")");
                    }
                    b.push(" ORDER BY m.sent_at DESC, m.seq DESC, m.msg_id DESC LIMIT ").push_bind(fetch);
                    let rows = b.build().fetch_all(pool).await.context("searching messages")?;
                    Some(rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?)
                }
            }
        });
        let Some(mut messages) = messages else { return Ok(None) };
        let more = messages.len() > q.limit;
        messages.truncate(q.limit);
        self.fill_reactions(&mut messages).await?;
        Ok(Some(Page { messages, more }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn queries_per_engine() {
        let w = words(&["the", "cat", "go", "zoo"]);
        assert_eq!(fts_query(Fts::Fts5, &w, 3).unwrap(), r#""the"* "cat"* "go"* "zoo"*"#);
        assert_eq!(fts_query(Fts::Tsquery, &w, 3).unwrap(), "'the':* & 'cat':* & 'go':* & 'zoo':*");
        assert_eq!(fts_query(Fts::Boolean, &w, 3).unwrap(), "+cat* +zoo*");
        assert_eq!(fts_query(Fts::Boolean, &words(&["to", "be"]), 3), None);
    }

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_escape("s-a%25b_c!"), "s-a!%25b!_c!!");
    }
}
