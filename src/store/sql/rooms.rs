//! Rooms: names, topics and flags, creation and removal, members and
//! their roles.

use sqlx::Row;

use super::SqlStore;
use crate::protocol::server::Conv;
use crate::store::error::{Context, Corrupt};
use crate::store::{Ban, Role, RoomModes, RoomRecord, StoreError};

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
                    modes: RoomModes {
                        moderated: r.try_get::<bool, _>(5).corrupt("rooms", "moderated")?,
                        topic_lock: r.try_get::<Option<bool>, _>(6).corrupt("rooms", "topic_lock")?,
                        secret: r.try_get::<bool, _>(7).corrupt("rooms", "secret")?,
                        key: r.try_get::<String, _>(8).corrupt("rooms", "join_key")?.into(),
                        limit: r.try_get::<i64, _>(9).corrupt("rooms", "member_limit")?.clamp(0, u32::MAX as i64)
                            as u32,
                    },
                    bans: Vec::new(),
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
                .bind(private)
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
            sqlx::query(sql.delete_bans).bind(key).execute(pool).await.context("deleting a room's bans")?;
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
        let rows: Vec<(String, String, bool, bool, bool)> = on_pool!(self, |pool, sql| sqlx::query_as(sql.list_rooms)
            .fetch_all(pool)
            .await
            .context("listing rooms")?);
        Ok(rows
            .into_iter()
            .map(|(name, topic, private, managed, secret)| RoomRecord {
                name: name.into(),
                topic: topic.into(),
                last_seq: 0,
                private,
                managed,
                modes: RoomModes { secret, ..Default::default() },
                bans: Vec::new(),
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

    // ---- settings (modes) and bans --------------------------------------------------

    /// Stores the settings that differ between `was` and `now` (and
    /// `private` if given), leaving the others as they are stored: a
    /// change of another setting made meanwhile (on another node) stays.
    pub(crate) async fn change_room_modes(
        &self,
        key: &str,
        name: &str,
        private: Option<bool>,
        was: &RoomModes,
        now: &RoomModes,
    ) -> Result<(), StoreError> {
        let at = crate::protocol::now_ms();
        let changed = |a: bool, b: bool| (a != b).then_some(b);
        let moderated = changed(was.moderated, now.moderated);
        let topic_lock = if was.topic_lock != now.topic_lock { now.topic_lock } else { None };
        let secret = changed(was.secret, now.secret);
        let join_key = (was.key != now.key).then(|| now.key.to_string());
        let limit = (was.limit != now.limit).then_some(i64::from(now.limit));
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.ensure_room)
                .bind(key)
                .bind(name)
                .bind(at)
                .execute(pool)
                .await
                .context("making a room's row")?;
            sqlx::query(sql.change_room_modes)
                .bind(moderated)
                .bind(topic_lock)
                .bind(private)
                .bind(secret)
                .bind(join_key.as_deref())
                .bind(limit)
                .bind(key)
                .execute(pool)
                .await
                .context("changing a room's modes")?;
        });
        Ok(())
    }

    /// Forgets a room's settings, bans and members (a room made by joining
    /// that is made again: see `Session::join`).
    pub(crate) async fn reset_room(&self, key: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.reset_room_modes).bind(key).execute(pool).await.context("resetting a room's modes")?;
            sqlx::query(sql.delete_bans).bind(key).execute(pool).await.context("deleting a room's bans")?;
            sqlx::query(sql.delete_members).bind(key).execute(pool).await.context("deleting a room's members")?;
        });
        Ok(())
    }

    /// A room's bans, oldest first.
    pub(crate) async fn room_bans(&self, key: &str) -> Result<Vec<Ban>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool, sql| sqlx::query_as(sql.room_bans)
            .bind(key)
            .fetch_all(pool)
            .await
            .context("reading a room's bans")?);
        Ok(rows.into_iter().map(|(mask, set_by, set_at)| Ban { mask, set_by, set_at }).collect())
    }

    /// Adds a ban; false if the mask was banned already.
    pub(crate) async fn add_ban(&self, key: &str, ban: &Ban) -> Result<bool, StoreError> {
        on_pool!(self, |pool, sql| {
            let r = sqlx::query(sql.add_ban)
                .bind(key)
                .bind(&ban.mask)
                .bind(&ban.set_by)
                .bind(ban.set_at)
                .execute(pool)
                .await
                .context("adding a ban")?;
            Ok(r.rows_affected() > 0)
        })
    }

    /// Removes a ban; false if there was none.
    pub(crate) async fn remove_ban(&self, key: &str, mask: &str) -> Result<bool, StoreError> {
        on_pool!(self, |pool, sql| {
            let r = sqlx::query(sql.remove_ban).bind(key).bind(mask).execute(pool).await.context("removing a ban")?;
            Ok(r.rows_affected() > 0)
        })
    }
}
