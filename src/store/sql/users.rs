//! Users: nicks seen, accounts and profiles, session tokens, the guests
//! holding a nick, and the room grants a nick receives before it is owned.

use sqlx::Row;

use super::SqlStore;
use crate::store::error::{Context, Corrupt};
use crate::store::{Account, ProfileUpdate, StoreError};

impl SqlStore {
    /// Records that a user was seen (connected or disconnected) at `at`.
    pub(crate) async fn user_seen(&self, nick: &str, at: i64) -> Result<(), StoreError> {
        let key = nick.to_ascii_lowercase();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.upsert_user)
                .bind(&key)
                .bind(nick)
                .bind(at)
                .bind(at)
                .execute(pool)
                .await
                .context("recording a user seen")?;
        });
        Ok(())
    }

    /// When the user was last seen; `None` for a nick never seen.
    pub(crate) async fn last_seen(&self, nick_key: &str) -> Result<Option<i64>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.last_seen).bind(nick_key).fetch_optional(pool).await.context("reading last seen")
        })
    }

    // ---- accounts and profiles -------------------------------------------------

    pub(crate) async fn account(&self, nick_key: &str) -> Result<Option<Account>, StoreError> {
        self.account_where(nick_key, false).await
    }

    /// The registered account whose id is `id`.
    pub(crate) async fn account_by_id(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.account_where(id, true).await
    }

    async fn account_where(&self, key: &str, by_id: bool) -> Result<Option<Account>, StoreError> {
        on_pool!(self, |pool, sql| {
            let query = if by_id { sql.account_by_id } else { sql.account };
            let row = sqlx::query(query).bind(key).fetch_optional(pool).await.context("reading an account")?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(Account {
                    nick: r.try_get(0).corrupt("users", "nick")?,
                    display_name: r.try_get(1).corrupt("users", "display_name")?,
                    status: r.try_get(2).corrupt("users", "status")?,
                    avatar: r.try_get(3).corrupt("users", "avatar")?,
                    settings: serde_json::from_str(&r.try_get::<String, _>(4).corrupt("users", "settings")?)
                        .unwrap_or(serde_json::Value::Object(Default::default())),
                    password_hash: r.try_get(5).corrupt("users", "password_hash")?,
                    created_at: r.try_get(6).corrupt("users", "created_at")?,
                    last_seen: r.try_get(7).corrupt("users", "last_seen")?,
                    owner: r.try_get(8).corrupt("users", "owner")?,
                })),
            }
        })
    }

    /// Registers `nick` with a password hash for the account `id`. False
    /// if the nick is owned already. A nick only ever seen as a guest can be
    /// registered.
    pub(crate) async fn create_account(&self, nick: &str, hash: &str, id: &str, at: i64) -> Result<bool, StoreError> {
        let key = nick.to_ascii_lowercase();
        on_pool!(self, |pool, sql| {
            let claimed = sqlx::query(sql.claim_account).bind(hash).bind(nick).bind(id).bind(&key).execute(pool).await;
            if claimed.context("claiming a guest's nick")?.rows_affected() == 1 {
                return Ok(true);
            }
            let inserted = sqlx::query(sql.insert_account)
                .bind(&key)
                .bind(nick)
                .bind(hash)
                .bind(at)
                .bind(at)
                .bind(id)
                .execute(pool)
                .await;
            match inserted {
                Ok(_) => Ok(true),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
                Err(e) => Err(e).context("creating an account"),
            }
        })
    }

    pub(crate) async fn update_profile(&self, nick_key: &str, p: &ProfileUpdate) -> Result<(), StoreError> {
        let settings = p.settings.as_ref().map(|s| s.to_string());
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.update_profile)
                .bind(p.display_name.as_deref())
                .bind(p.status.as_deref())
                .bind(p.avatar.as_deref())
                .bind(settings.as_deref())
                .bind(nick_key)
                .execute(pool)
                .await
                .context("updating a profile")?;
        });
        Ok(())
    }

    /// Replaces an account's password hash; false if `nick_key` is no
    /// account.
    pub(crate) async fn set_password(&self, nick_key: &str, hash: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool, sql| {
            sqlx::query(sql.set_password)
                .bind(hash)
                .bind(nick_key)
                .execute(pool)
                .await
                .context("changing a password")?
                .rows_affected()
        });
        Ok(done == 1)
    }

    /// Makes `owner` the owner of a nick nobody owns yet (the row must
    /// exist: see `user_seen`). Returns the nick's owner afterwards.
    pub(crate) async fn claim_owner(&self, nick_key: &str, owner: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.claim_owner).bind(owner).bind(nick_key).execute(pool).await.context("claiming a nick")?;
        });
        Ok(self.account(nick_key).await?.and_then(|a| a.owner))
    }

    /// The nick the user `id` (an account, a site user) used last.
    pub(crate) async fn account_nick_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.nick_of_owner).bind(id).fetch_optional(pool).await.context("reading a user's nick")
        })
    }

    // ---- sessions and guests ---------------------------------------------------

    /// Stores a session token's hash for the user `user_id`, who holds `nick`.
    pub(crate) async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        nick: &str,
        at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.insert_session)
                .bind(token_hash)
                .bind(user_id)
                .bind(nick)
                .bind(at)
                .bind(expires_at)
                .execute(pool)
                .await
                .context("creating a session")?;
        });
        Ok(())
    }

    /// The user id a live session token belongs to, and the nick it holds.
    pub(crate) async fn session_user(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_as(sql.session_user)
                .bind(token_hash)
                .bind(now)
                .fetch_optional(pool)
                .await
                .context("reading a session")
        })
    }

    /// Every session token of `user_id` stops working at `at` (a guest's
    /// when its last session ends, after the reconnect grace period).
    pub(crate) async fn expire_sessions(&self, user_id: &str, at: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.expire_sessions).bind(at).bind(user_id).execute(pool).await.context("expiring sessions")?;
        });
        Ok(())
    }

    /// The guest identity that holds `nick_key` (connected, or within its
    /// reconnect grace period), if any.
    pub(crate) async fn guest_holder(&self, nick_key: &str, now: i64) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.guest_holder)
                .bind(nick_key)
                .bind(now)
                .fetch_optional(pool)
                .await
                .context("reading a nick's guest")
        })
    }

    /// Ends every guest's token at `until` at the latest: at the start of a
    /// single server no guest is connected, so each is in its grace period.
    pub(crate) async fn end_guest_sessions(&self, until: i64) -> Result<(), StoreError> {
        let now = crate::protocol::now_ms();
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.end_guest_sessions)
                .bind(until)
                .bind(now)
                .execute(pool)
                .await
                .context("ending guest sessions")?;
        });
        Ok(())
    }

    /// Forgets session tokens that have expired.
    pub(crate) async fn delete_expired_sessions(&self, now: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete_expired_sessions)
                .bind(now)
                .execute(pool)
                .await
                .context("deleting expired sessions")?;
        });
        Ok(())
    }

    // ---- grants --------------------------------------------------------------------

    /// Hands the memberships granted to a nick nobody owned (`pending`, see
    /// [`crate::model::ids::pending_grant`]) to the id that now owns it.
    pub(crate) async fn claim_grants(&self, pending: &str, id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.claim_grants).bind(id).bind(pending).execute(pool).await.context("claiming grants")?;
            sqlx::query(sql.delete_member_rows).bind(pending).execute(pool).await.context("claiming grants")?;
        });
        Ok(())
    }

    /// Whether `member` (an id, or a pending grant) belongs to any room.
    pub(crate) async fn has_memberships(&self, member: &str) -> Result<bool, StoreError> {
        let n: i64 = on_pool!(self, |pool, sql| {
            sqlx::query_scalar(sql.has_member_rows)
                .bind(member)
                .fetch_one(pool)
                .await
                .context("counting memberships")?
        });
        Ok(n > 0)
    }
}
