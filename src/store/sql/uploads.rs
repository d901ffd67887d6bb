//! Uploads: the row of each uploaded file, which message carries it, and
//! which ones the sweep should remove.

use sqlx::Row;

use super::SqlStore;
use crate::store::error::{Context, Corrupt};
use crate::store::{StoreError, UploadRecord};

impl SqlStore {
    pub(crate) async fn insert_upload(&self, u: &UploadRecord) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.insert_upload)
                .bind(&u.id)
                .bind(&u.owner)
                .bind(&u.name)
                .bind(&u.content_type)
                .bind(u.size as i64)
                .bind(u.width.map(i64::from))
                .bind(u.height.map(i64::from))
                .bind(u.thumb)
                .bind(u.created_at)
                .execute(pool)
                .await
                .context("recording an upload")?;
        });
        Ok(())
    }

    pub(crate) async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        on_pool!(self, |pool, sql| {
            let row = sqlx::query(sql.upload).bind(id).fetch_optional(pool).await.context("reading an upload")?;
            let Some(r) = row else { return Ok(None) };
            let dim = |i: usize, what| -> Result<Option<u32>, StoreError> {
                let v: Option<i64> = r.try_get(i).corrupt("uploads", what)?;
                Ok(v.and_then(|v| u32::try_from(v).ok()))
            };
            let msg_id: Option<String> = r.try_get(9).corrupt("uploads", "msg_id")?;
            Ok(Some(UploadRecord {
                id: r.try_get::<String, _>(0).corrupt("uploads", "id")?.trim().to_owned(),
                owner: r.try_get(1).corrupt("uploads", "owner")?,
                name: r.try_get(2).corrupt("uploads", "name")?,
                content_type: r.try_get(3).corrupt("uploads", "content_type")?,
                size: r.try_get::<i64, _>(4).corrupt("uploads", "size")?.max(0) as u64,
                width: dim(5, "width")?,
                height: dim(6, "height")?,
                thumb: r.try_get(7).corrupt("uploads", "thumb")?,
                created_at: r.try_get(8).corrupt("uploads", "created_at")?,
                msg_id: msg_id.map(|m| m.trim().to_owned()),
            }))
        })
    }

    /// Attaches each upload to `msg_id`, all or none: each must exist,
    /// belong to one of `owners`, and be carried by no message yet.
    /// Returns the first id that is not such an upload (then nothing
    /// changed).
    pub(crate) async fn attach_uploads(
        &self,
        ids: &[String],
        owners: [&str; 2],
        msg_id: &str,
        at: i64,
    ) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, sql| {
            let mut tx = pool.begin().await.context("attaching uploads")?;
            for id in ids {
                let done = sqlx::query(sql.attach_upload)
                    .bind(msg_id)
                    .bind(at)
                    .bind(id)
                    .bind(owners[0])
                    .bind(owners[1])
                    .execute(&mut *tx)
                    .await
                    .context("attaching uploads")?;
                if done.rows_affected() != 1 {
                    tx.rollback().await.context("attaching uploads")?;
                    return Ok(Some(id.clone()));
                }
            }
            tx.commit().await.context("attaching uploads")?;
            Ok(None)
        })
    }

    /// Frees the uploads of a message that was never stored.
    pub(crate) async fn detach_uploads(&self, msg_id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.detach_uploads).bind(msg_id).execute(pool).await.context("detaching uploads")?;
        });
        Ok(())
    }

    /// The uploads a message carries: (id, has a thumbnail).
    pub(crate) async fn message_uploads(&self, msg_id: &str) -> Result<Vec<(String, bool)>, StoreError> {
        let rows: Vec<(String, bool)> = on_pool!(self, |pool, sql| sqlx::query_as(sql.message_uploads)
            .bind(msg_id)
            .fetch_all(pool)
            .await
            .context("reading a message's uploads")?);
        Ok(rows.into_iter().map(|(id, thumb)| (id.trim().to_owned(), thumb)).collect())
    }

    /// Uploads to remove: never attached and created before `unattached_before`;
    /// of a deleted message; or of a message missing since before
    /// `missing_before`. At most `limit`.
    pub(crate) async fn stale_uploads(
        &self,
        unattached_before: i64,
        missing_before: i64,
        limit: usize,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        let rows: Vec<(String, bool)> = on_pool!(self, |pool, sql| sqlx::query_as(sql.stale_uploads)
            .bind(unattached_before)
            .bind(missing_before)
            .bind(limit as i64)
            .fetch_all(pool)
            .await
            .context("finding stale uploads")?);
        Ok(rows.into_iter().map(|(id, thumb)| (id.trim().to_owned(), thumb)).collect())
    }

    pub(crate) async fn delete_upload(&self, id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool, sql| {
            sqlx::query(sql.delete_upload).bind(id).execute(pool).await.context("deleting an upload")?;
        });
        Ok(())
    }
}
