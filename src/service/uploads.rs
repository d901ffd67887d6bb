//! Uploads: a file streamed in from a door (`POST /api/uploads`), its type
//! sniffed from its bytes, an image checked, cleaned and thumbnailed off
//! the async runtime; kept in the file storage and recorded; attached to
//! messages (`say`, the HTTP API's publish); served by id; and removed by
//! the sweep when no message carries it in time, or its message is gone.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::images::{self, ImageLimits, ImageRefusal};
use super::{Caller, Service};
use crate::config::UploadsConfig;
use crate::model::{UploadRecord, ids};
use crate::protocol::server::Attachment;
use crate::protocol::{ErrorCode, ProtoError, now_ms};
use crate::store::files::{ByteStream, Files, Spool, TempFile};
use crate::store::{Store, StoreError};

/// Bytes kept from the start of a file to sniff its type.
const SNIFF_BYTES: usize = 8192;
/// Longest file name kept, in characters.
const MAX_NAME: usize = 200;
/// Uploads the sweep removes in one go.
const SWEEP_BATCH: usize = 500;

/// A file to serve: what it is, and whether a browser may show it inline.
pub(crate) struct FileMeta {
    pub(super) key: String,
    pub(crate) name: String,
    pub(crate) content_type: String,
    /// `None` for a thumbnail (its length is not recorded: served whole).
    pub(crate) size: Option<u64>,
    /// Only images this server re-encoded, audio and video are shown
    /// inline; anything else (SVG and HTML included) is a download.
    pub(crate) inline: bool,
}

/// A file received whole (see [`Service::receive`]).
pub(super) struct Received {
    pub(super) original: TempFile,
    pub(super) content_type: String,
    pub(super) size: u64,
}

/// The URL of an upload, and of its thumbnail.
fn url_of(id: &str) -> String {
    format!("/files/{id}")
}

fn thumbnail_url_of(id: &str) -> String {
    format!("/files/{id}/thumbnail")
}

/// 128 random bits, as 32 lowercase hex digits.
pub(super) fn new_id() -> Result<String, ProtoError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for an upload id");
        ProtoError::internal()
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` looks like an upload id (so nothing else reaches the store).
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The file name as sent, reduced to a plain name: its last path
/// component, no control characters, at most [`MAX_NAME`] characters.
fn clean_name(raw: Option<&str>) -> String {
    let last = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = last.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." { "file".to_owned() } else { name.to_owned() }
}

/// What the bytes are. Binary formats by their magic numbers (`infer`);
/// text by its first bytes (SVG and HTML named as such, so they are never
/// shown inline); the client's declared type is never asked.
fn sniff(head: &[u8]) -> String {
    if let Some(t) = infer::get(head) {
        return t.mime_type().to_owned();
    }
    // A cut in the middle of a UTF-8 sequence at the end is still text.
    let text = match std::str::from_utf8(head) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let Some(text) = text.filter(|t| !t.contains('\0')) else {
        return "application/octet-stream".to_owned();
    };
    let lower = text.trim_start_matches('\u{feff}').trim_start().to_ascii_lowercase();
    if lower.contains("<svg") {
        "image/svg+xml".to_owned()
    } else if ["<!doctype html", "<html", "<head", "<body", "<script", "<iframe"].iter().any(|m| lower.contains(m)) {
        "text/html".to_owned()
    } else if lower.starts_with("<?xml") {
        "text/xml".to_owned()
    } else {
        "text/plain".to_owned()
    }
}

/// Whether a browser may show a file of this type in the page.
fn inline(content_type: &str) -> bool {
    images::format_of(content_type).is_some()
        || content_type.starts_with("audio/")
        || content_type.starts_with("video/")
}

fn attachment_of(u: &UploadRecord) -> Attachment {
    Attachment {
        id: u.id.clone(),
        url: url_of(&u.id),
        name: u.name.clone(),
        content_type: u.content_type.clone(),
        size: u.size,
        width: u.width,
        height: u.height,
        thumbnail_url: u.thumb.then(|| thumbnail_url_of(&u.id)),
    }
}

fn too_large(max: u64) -> ProtoError {
    ProtoError::new(ErrorCode::TooLarge, format!("the file is larger than {max} bytes (uploads.max_bytes)"))
}

impl Service {
    /// The largest upload accepted (a door refuses a longer body at once).
    pub(crate) fn max_upload_bytes(&self) -> u64 {
        self.config.uploads.max_bytes
    }

    /// Takes a file from `chunks` (as they arrive; cut off past
    /// `uploads.max_bytes` with `too_large`, nothing kept), checks it, and
    /// keeps it for `caller`. `name` is the file name the client sent.
    pub(crate) async fn upload<S, E>(
        &self,
        caller: &Caller,
        name: Option<&str>,
        mut chunks: S,
    ) -> Result<Attachment, ProtoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<ProtoError>,
    {
        let owner: Arc<str> = match caller {
            Caller::ApiKey => ids::SERVER.into(),
            Caller::User(identity) => identity.id.clone(),
        };
        let Received { original, content_type, size } = self.receive(&mut chunks).await?;
        let id = new_id()?;
        let mut record = UploadRecord {
            id: id.clone(),
            owner: owner.to_string(),
            name: clean_name(name),
            content_type,
            size,
            width: None,
            height: None,
            thumb: false,
            created_at: now_ms(),
            msg_id: None,
        };
        if let Some(format) = images::format_of(&record.content_type) {
            let out = self.files.temp_file();
            let thumb = self.files.temp_file();
            let limits = ImageLimits {
                max_pixels: self.config.uploads.max_pixels,
                thumbnail_px: self.config.uploads.thumbnail_px,
            };
            let (src, out_path, thumb_path) =
                (original.path().to_owned(), out.path().to_owned(), thumb.path().to_owned());
            let done =
                tokio::task::spawn_blocking(move || images::process(&src, format, limits, &out_path, &thumb_path))
                    .await;
            let processed = match done {
                Ok(Ok(p)) => p,
                Ok(Err(ImageRefusal::Invalid(why))) => return Err(ProtoError::invalid(format!("`file`: {why}"))),
                Ok(Err(ImageRefusal::Io(e))) => return Err(StoreError::files("processing an image", e).into()),
                Err(e) => {
                    tracing::error!(error = %e, "image processing failed");
                    return Err(ProtoError::internal());
                }
            };
            record.width = Some(processed.width);
            record.height = Some(processed.height);
            record.thumb = true;
            self.files.put(&format!("{id}.thumb"), &thumb).await?;
            if processed.rewritten {
                record.size = tokio::fs::metadata(out.path())
                    .await
                    .map_err(|e| StoreError::files("reading an image's size", e))?
                    .len();
                self.files.put(&id, &out).await?;
            } else {
                self.files.put(&id, &original).await?;
            }
        } else {
            self.files.put(&id, &original).await?;
        }
        if let Err(e) = self.store.insert_upload(&record).await {
            self.remove_files(&id, record.thumb).await;
            return Err(e.into());
        }
        Ok(attachment_of(&record))
    }

    /// Takes a file from `chunks` into a spool file: cut off past
    /// `uploads.max_bytes` (`too_large`, the spool file removed), refused
    /// when empty; its type sniffed from its first bytes.
    pub(super) async fn receive<S, E>(&self, chunks: &mut S) -> Result<Received, ProtoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<ProtoError>,
    {
        let max = self.config.uploads.max_bytes;
        let mut spool: Spool = self.files.spool().await?;
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(Into::into)?;
            if spool.written() + chunk.len() as u64 > max {
                // The spool file goes with `spool`.
                return Err(too_large(max));
            }
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            spool.write(&chunk).await?;
        }
        let size = spool.written();
        if size == 0 {
            return Err(ProtoError::invalid("`file`: the file is empty"));
        }
        Ok(Received { original: spool.finish().await?, content_type: sniff(&head), size })
    }

    /// Attaches uploads to a new message: at most `uploads.max_attachments`,
    /// each an upload of one of `owners` that no message carries yet; all
    /// or none. Their attachment objects, in order.
    pub(crate) async fn attach(
        &self,
        ids: &[String],
        owners: [&str; 2],
        msg_id: &str,
    ) -> Result<Vec<Attachment>, ProtoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let max = self.config.uploads.max_attachments;
        if ids.len() > max {
            return Err(ProtoError::invalid(format!("`attachments`: at most {max} files in one message")));
        }
        for (i, id) in ids.iter().enumerate() {
            if !valid_id(id) {
                return Err(ProtoError::invalid(format!("`attachments`: no upload with id `{id}`")));
            }
            if ids[..i].contains(id) {
                return Err(ProtoError::invalid(format!("`attachments`: `{id}` is listed twice")));
            }
        }
        if let Some(bad) = self.store.attach_uploads(ids, owners, msg_id, now_ms()).await? {
            return Err(ProtoError::invalid(format!(
                "`attachments`: `{bad}` is not an upload of yours that no other message carries"
            )));
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store.upload(id).await? {
                Some(u) => out.push(attachment_of(&u)),
                // Swept between the two steps: the message cannot carry it.
                None => return Err(ProtoError::invalid(format!("`attachments`: no upload with id `{id}`"))),
            }
        }
        Ok(out)
    }

    /// Frees the uploads of a message that was not stored after all.
    pub(crate) async fn detach(&self, msg_id: &str) {
        if let Err(e) = self.store.detach_uploads(msg_id).await {
            tracing::warn!(error = %e, "could not free the uploads of a message that was not stored");
        }
    }

    /// Removes the files a (deleted) message carried; what fails here the
    /// sweep removes later.
    pub(crate) async fn remove_message_files(&self, msg_id: &str) {
        match self.store.message_uploads(msg_id).await {
            Ok(uploads) => {
                for (id, thumb) in uploads {
                    remove_upload(&self.store, &self.files, &id, thumb).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read a deleted message's uploads"),
        }
    }

    async fn remove_files(&self, id: &str, thumb: bool) {
        for key in [Some(id.to_owned()), thumb.then(|| format!("{id}.thumb"))].into_iter().flatten() {
            if let Err(e) = self.files.delete(&key).await {
                tracing::warn!(error = %e, key, "could not remove a file");
            }
        }
    }

    /// The file `GET /files/{id}` (or its thumbnail) serves; `None` for an
    /// unknown id.
    pub(crate) async fn file(&self, id: &str, thumbnail: bool) -> Result<Option<FileMeta>, ProtoError> {
        if !valid_id(id) {
            return Ok(None);
        }
        let Some(u) = self.store.upload(id).await? else { return Ok(None) };
        if thumbnail {
            if !u.thumb {
                return Ok(None);
            }
            let content_type = if u.content_type == "image/jpeg" { "image/jpeg" } else { "image/png" };
            return Ok(Some(FileMeta {
                key: format!("{id}.thumb"),
                name: u.name,
                content_type: content_type.to_owned(),
                size: None,
                inline: true,
            }));
        }
        Ok(Some(FileMeta {
            key: u.id,
            inline: inline(&u.content_type),
            name: u.name,
            content_type: u.content_type,
            size: Some(u.size),
        }))
    }

    /// The bytes `range` of a file (the whole thumbnail for `None`).
    pub(crate) async fn file_bytes(
        &self,
        meta: &FileMeta,
        range: Option<Range<u64>>,
    ) -> Result<Option<ByteStream>, ProtoError> {
        Ok(self.files.get(&meta.key, range.unwrap_or(0..u64::MAX)).await?)
    }
}

/// Removes an upload's files, then its row (kept if a file could not be
/// removed, so the next sweep tries again).
async fn remove_upload(store: &Store, files: &Files, id: &str, thumb: bool) {
    for key in [Some(id.to_owned()), thumb.then(|| format!("{id}.thumb"))].into_iter().flatten() {
        if let Err(e) = files.delete(&key).await {
            tracing::warn!(error = %e, key, "could not remove a file; the sweep tries again");
            return;
        }
    }
    if let Err(e) = store.delete_upload(id).await {
        tracing::warn!(error = %e, "could not forget a removed upload");
    }
}

/// The sweep: every `uploads.sweep_interval` (and once at start), removes
/// uploads no message took within `uploads.unattached_ttl`, those of
/// deleted messages, and those whose message has been missing as long (it
/// was never stored, or its room was destroyed); and spool files a crash
/// left. Each node of a cluster sweeps; removing twice is harmless.
pub(crate) fn spawn_sweep(store: Store, files: Files, config: UploadsConfig, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let before = now_ms() - config.unattached_ttl.as_millis() as i64;
            loop {
                match store.stale_uploads(before, before, SWEEP_BATCH).await {
                    Ok(stale) => {
                        let full = stale.len() == SWEEP_BATCH;
                        for (id, thumb) in stale {
                            remove_upload(&store, &files, &id, thumb).await;
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the upload sweep could not read the store");
                        break;
                    }
                }
            }
            files.clean_spool(config.body_timeout * 2).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_bytes_not_names() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'><script>x</script></svg>"), "image/svg+xml");
        assert_eq!(sniff(b"  <!DOCTYPE html><p>hi"), "text/html");
        assert_eq!(sniff(b"hello"), "text/plain");
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff]), "application/octet-stream");
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_name(Some("C:\\Users\\me\\cat.png")), "cat.png");
        assert_eq!(clean_name(Some("a\u{0}b\nc.txt")), "abc.txt");
        assert_eq!(clean_name(None), "file");
        assert_eq!(clean_name(Some("..")), "file");
    }

    #[test]
    fn only_media_is_inline() {
        assert!(inline("image/png") && inline("audio/ogg") && inline("video/webm"));
        assert!(!inline("image/svg+xml") && !inline("text/html") && !inline("application/pdf"));
    }

    #[test]
    fn ids_are_random_and_checked() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert!(valid_id(&a) && valid_id(&b) && a != b);
        assert!(!valid_id("../x") && !valid_id(&a[..31]));
    }
}
