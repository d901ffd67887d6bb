//! Avatars: a user's picture, uploaded as an image, cropped square, scaled
//! down to `uploads.avatar_px`, re-encoded without metadata, and kept in the
//! file storage under `<id>.avatar.<ext>` (beside the uploads, with no row
//! of their own: the upload sweep never sees them). The account's `avatar` is its URL,
//! `/avatars/<id>.<ext>`; a new picture or its removal deletes the old
//! file and tells everyone who sees the user (`profile` frames).

use bytes::Bytes;
use futures_util::Stream;

use super::images::{self, ImageRefusal};
use super::uploads::{FileMeta, Received, new_id};
use super::{Caller, Service};
use crate::model::{Account, ProfileUpdate};
use crate::protocol::ProtoError;
use crate::store::StoreError;

/// Where avatars are served.
const PREFIX: &str = "/avatars/";

/// The storage key of an avatar file named `file` (`<id>.<ext>`), if the
/// name is one this server makes.
fn key_of(file: &str) -> Option<String> {
    let (id, ext) = file.split_once('.')?;
    let ok = super::uploads::valid_id(id) && matches!(ext, "png" | "jpg");
    ok.then(|| format!("{id}.avatar.{ext}"))
}

impl Service {
    /// `POST /api/me/avatar`: the image in `chunks` becomes the caller's
    /// avatar. Accounts and site users only (a guest has no stored profile).
    pub(crate) async fn set_avatar<S, E>(&self, caller: &Caller, mut chunks: S) -> Result<Account, ProtoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<ProtoError>,
    {
        let me = self.my_account(caller).await?;
        let Received { original, content_type, .. } = self.receive(&mut chunks).await?;
        let Some(format) = images::format_of(&content_type) else {
            return Err(ProtoError::invalid(format!(
                "`file`: an avatar must be a PNG, JPEG, GIF or WebP image, not {content_type}"
            )));
        };
        let out = self.files.temp_file();
        let (src, dst) = (original.path().to_owned(), out.path().to_owned());
        let (max_pixels, px) = (self.config.uploads.max_pixels, self.config.uploads.avatar_px);
        let written =
            match tokio::task::spawn_blocking(move || images::avatar(&src, format, max_pixels, px, &dst)).await {
                Ok(Ok(f)) => f,
                Ok(Err(ImageRefusal::Invalid(why))) => return Err(ProtoError::invalid(format!("`file`: {why}"))),
                Ok(Err(ImageRefusal::Io(e))) => return Err(StoreError::files("making an avatar", e).into()),
                Err(e) => {
                    tracing::error!(error = %e, "avatar processing failed");
                    return Err(ProtoError::internal());
                }
            };
        let ext = if written == image::ImageFormat::Png { "png" } else { "jpg" };
        let file = format!("{}.{ext}", new_id()?);
        let key = key_of(&file).ok_or_else(ProtoError::internal)?;
        self.files.put(&key, &out).await?;
        self.replace_avatar(&me, format!("{PREFIX}{file}")).await
    }

    /// `DELETE /api/me/avatar`.
    pub(crate) async fn remove_avatar(&self, caller: &Caller) -> Result<Account, ProtoError> {
        let me = self.my_account(caller).await?;
        self.replace_avatar(&me, String::new()).await
    }

    /// Stores `url` as `me`'s avatar, removes the file of the old one (if
    /// it was this server's), and tells everyone.
    async fn replace_avatar(&self, me: &Account, url: String) -> Result<Account, ProtoError> {
        let nick_key = me.nick.to_ascii_lowercase();
        let update = ProfileUpdate { display_name: None, status: None, avatar: Some(url.clone()), settings: None };
        if let Err(e) = self.store.update_profile(&nick_key, &update).await {
            if let Some(new) = url.strip_prefix(PREFIX).and_then(key_of) {
                let _ = self.files.delete(&new).await;
            }
            return Err(e.into());
        }
        if let Some(old) = me.avatar.strip_prefix(PREFIX).and_then(key_of)
            && let Err(e) = self.files.delete(&old).await
        {
            tracing::warn!(error = %e, key = old, "could not remove an old avatar");
        }
        let account = self.store.account(&nick_key).await?.ok_or_else(ProtoError::unavailable)?;
        self.profile_changed(&account).await;
        Ok(account)
    }

    /// The avatar file `GET /avatars/{file}` serves; `None` for a name this
    /// server does not make.
    pub(crate) fn avatar_file(&self, file: &str) -> Option<FileMeta> {
        let key = key_of(file)?;
        let content_type = if file.ends_with(".png") { "image/png" } else { "image/jpeg" };
        Some(FileMeta { key, name: file.to_owned(), content_type: content_type.to_owned(), size: None, inline: true })
    }
}
