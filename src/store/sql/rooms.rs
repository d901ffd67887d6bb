//! Rooms: names, topics and flags, creation and removal, members and
//! their roles.

use sqlx::Row;

use super::SqlStore;
use crate::protocol::server::Conv;
use crate::store::error::{Context, Corrupt};
use crate::store::{Role, RoomRecord, StoreError};

impl SqlStore {
    /// The room's stored name, topic and latest `seq`, if it was ever used.
    pub(crate) async fn room(&self, key: &str) -> Result<Option<RoomRecord>, StoreError> {
        let conv = Conv::Room(key.into());
        let record = on_pool!(self, |pool, sql| {
            let row = sqlx::query(sql.room)
                .bind(conv.storage_key())
                .bind(key)
                .fetch_optional(pool)
                .await
                .context("reading a room")?;
            match row {
                Some(r) => Some(RoomRecord {
                    name: r.try_get::<String, _>(0).corrupt("rooms", "name")?.into(),
                    topic: r.try_get::<String, _>(1).corrupt("rooms", "topic")?.into(),
                    last_seq: r.try_get::<i64, _>(2).corrupt("rooms", "last seq")? as u64,
                    private: r.try_get::<bool, _>(3).corrupt("rooms", "private")?,
                    managed: r.try_get::<bool, _>(4).corrupt("rooms", "managed")?,
                }),
                None => None,
            }
        });
        if record.is_some() {
            return Ok(record);
        }
        // Rooms used before this table knew them: messages alone.
        let last_seq = self.last_seq(&conv).await?;
        Ok((last_seq > 0).then(|| RoomRecord { name: key.into(), topic: "".into(), last_seq, ..Default::default() }))
    }

    pub(crate) async fn set_topic(&self, key: &str, name: &str, topic: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.upsert_topic)
                .bind(key)
                .bind(name)
                .bind(topic)
                .bind(crate::protocol::now_ms())
                .execute(pool)
                .await
                .context("setting a topic")?;
        });
        Ok(())
    }

    /// Creates a named room. False if a room of that name is stored already.
    pub(crate) async fn create_room(
        &self,
        key: &str,
        name: &str,
        topic: &str,
        private: bool,
        managed: bool,
    ) -> Result<bool, StoreError> {
        let at = crate::protocol::now_ms();
        on_pool!(self, |pool, sql| {
            let r = sqlx::query(sql.insert_room)
                .bind(key)
                .bind(name)
                .bind(topic)
                .bind(private)
                .bind(managed)
                .bind(at)
                .execute(pool)
                .await;
            match r {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                Err(e) => Err(e).context("creating a room"),
            }
        })
    }

    /// Forgets a room: its name, flags, members and messages (a room made
    /// later under the same name must not show them; keep a transcript
    /// first). False if there was nothing to forget.
    pub(crate) async fn delete_room(&self, key: &str) -> Result<bool, StoreError> {
        self.seqs().remove(&Conv::Room(key.into()));
        let conv = Conv::Room(key.into()).storage_key();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete_members).bind(key).execute(pool).await.context("deleting a room's members")?;
            let reactions = sqlx::query(sql.delete_conv_reactions).bind(&conv).execute(pool).await;
            reactions.context("deleting a room's reactions")?;
            let gone = sqlx::query(sql.delete_messages)
                .bind(&conv)
                .execute(pool)
                .await
                .context("deleting a room's messages")?;
            let r = sqlx::query(sql.delete_room).bind(key).execute(pool).await.context("deleting a room")?;
            Ok(r.rows_affected() > 0 || gone.rows_affected() > 0)
        })
    }

    /// Every named room (created through the API or given a topic).
    pub(crate) async fn list_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let rows: Vec<(String, String, bool, bool)> = on_pool!(self, |pool, sql| sqlx::query_as(sql.list_rooms)
            .fetch_all(pool)
            .await
            .context("listing rooms")?);
        Ok(rows
            .into_iter()
            .map(|(name, topic, private, managed)| RoomRecord {
                name: name.into(),
                topic: topic.into(),
                last_seq: 0,
                private,
                managed,
            })
            .collect())
    }

    // ---- members -------------------------------------------------------------------

    /// Adds a member to a room, or changes its role.
    pub(crate) async fn set_member(&self, room_key: &str, member: &str, role: Role) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.upsert_member)
                .bind(room_key)
                .bind(member)
                .bind(role.as_str())
                .execute(pool)
                .await
                .context("setting a member")?;
        });
        Ok(())
    }

    pub(crate) async fn remove_member(&self, room_key: &str, member: &str) -> Result<bool, StoreError> {
        on_pool!(self, |pool, sql| {
            let r = sqlx::query(sql.remove_member)
                .bind(room_key)
                .bind(member)
                .execute(pool)
                .await
                .context("removing a member")?;
            Ok(r.rows_affected() > 0)
        })
    }

    pub(crate) async fn member_role(&self, room_key: &str, member: &str) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.member_role)
                .bind(room_key)
                .bind(member)
                .fetch_optional(pool)
                .await
                .context("reading a member's role")?
        });
        Ok(role.map(|r| Role::parse(&r)))
    }

    /// The keys of the rooms `member` (a user id) is a member of.
    pub(crate) async fn member_rooms(&self, member: &str) -> Result<Vec<String>, StoreError> {
        Ok(on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.member_rooms)
                .bind(member)
                .fetch_all(pool)
                .await
                .context("listing a member's rooms")?
        }))
    }
}
