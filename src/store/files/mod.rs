//! Uploaded files, kept behind the small [`Blobs`] trait in one of two
//! homes: a local directory ([`local`], the default) or an S3-compatible
//! object store ([`s3`], the choice for a cluster, where every node must
//! see every file). A file's key is its upload id; its thumbnail's is
//! `<id>.thumb`.
//!
//! An upload first lands in a [`Spool`] file under `<uploads.dir>/tmp/`,
//! written chunk by chunk as it arrives (never whole in memory); only a
//! complete, checked file is then [`Files::put`] in place, by a rename or
//! an object store upload that becomes visible only when complete. A spool
//! or temporary file is removed when its guard drops, whatever the exit
//! path, so nothing half-written stays behind.

mod local;
mod s3;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use tokio::io::AsyncWriteExt;

use super::StoreError;
use crate::config::{StorageKind, UploadsConfig};

/// A file's bytes, as they are read.
pub(crate) type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Where files live. Keys are ASCII letters, digits and `.`.
pub(crate) trait Blobs: Send + Sync {
    /// Moves the complete file at `from` in as `key` (`from` may be gone
    /// afterwards). Either the whole file is stored, or nothing is.
    fn put<'a>(&'a self, key: &'a str, from: &'a Path) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The bytes `range` of `key` (a range inside the file); `None` if
    /// there is no such file.
    fn get<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Option<ByteStream>, StoreError>>;
    /// Removes `key`; a file that is not there is no error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The file storage: a cheap, cloneable handle.
#[derive(Clone)]
pub(crate) struct Files {
    blobs: Arc<dyn Blobs>,
    spool_dir: Arc<PathBuf>,
}

impl Files {
    /// Opens the storage `uploads.storage` names, creating the directories
    /// it needs.
    pub(crate) async fn open(config: &UploadsConfig) -> Result<Files, StoreError> {
        let dir = PathBuf::from(&config.dir);
        let spool_dir = dir.join("tmp");
        tokio::fs::create_dir_all(&spool_dir)
            .await
            .map_err(|e| StoreError::CreateDir { dir: spool_dir.clone(), source: e })?;
        let blobs: Arc<dyn Blobs> = match config.storage {
            StorageKind::Local => Arc::new(local::LocalDir::new(dir)),
            StorageKind::S3 => Arc::new(s3::S3::new(&config.s3)?),
        };
        Ok(Files { blobs, spool_dir: Arc::new(spool_dir) })
    }

    /// A new spool file for an upload on its way in.
    pub(crate) async fn spool(&self) -> Result<Spool, StoreError> {
        let temp = self.temp_file();
        let file =
            tokio::fs::File::create(&temp.path).await.map_err(|e| StoreError::files("creating a spool file", e))?;
        Ok(Spool { temp, file: Some(file), written: 0 })
    }

    /// A path for a temporary file beside the spool files, removed when
    /// the guard drops.
    pub(crate) fn temp_file(&self) -> TempFile {
        TempFile { path: self.spool_dir.join(format!("{}.part", ulid::Ulid::generate())) }
    }

    pub(crate) async fn put(&self, key: &str, from: &TempFile) -> Result<(), StoreError> {
        self.blobs.put(key, &from.path).await
    }

    pub(crate) async fn get(&self, key: &str, range: Range<u64>) -> Result<Option<ByteStream>, StoreError> {
        self.blobs.get(key, range).await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.blobs.delete(key).await
    }

    /// Removes spool files older than `age` (left by a crash; a spool file
    /// in use is younger than `uploads.body_timeout`).
    pub(crate) async fn clean_spool(&self, age: std::time::Duration) {
        let Ok(mut entries) = tokio::fs::read_dir(&*self.spool_dir).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let old = entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if old && entry.file_name().to_string_lossy().ends_with(".part") {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}

/// A temporary file's path; the file is removed when this drops.
pub(crate) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Gone already after a rename into place: nothing to do.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An upload being written to its spool file, chunk by chunk.
pub(crate) struct Spool {
    temp: TempFile,
    file: Option<tokio::fs::File>,
    written: u64,
}

impl Spool {
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::files("writing a spool file", "written after it was finished"));
        };
        file.write_all(chunk).await.map_err(|e| StoreError::files("writing a spool file", e))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Flushes the file to disk and closes it; the path stays until the
    /// returned guard drops.
    pub(crate) async fn finish(mut self) -> Result<TempFile, StoreError> {
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(|e| StoreError::files("writing a spool file", e))?;
            file.sync_all().await.map_err(|e| StoreError::files("writing a spool file", e))?;
        }
        Ok(self.temp)
    }
}

/// Whether `key` is one this storage hands out: letters, digits and `.`.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 80 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}
