//! Files in a local directory: `<dir>/<first two characters of the key>/<key>`.
//! A file is moved in by renaming a complete, synced spool file (the spool
//! is `<dir>/tmp/`, on the same filesystem), so a reader never sees half
//! of one. Several nodes may share the directory (NFS and the like).

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{Blobs, ByteStream, valid_key};
use crate::store::StoreError;

/// Bytes read from disk at a time while serving a file.
const READ_CHUNK: usize = 64 * 1024;

pub(super) struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub(super) fn new(dir: PathBuf) -> LocalDir {
        LocalDir { dir }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        if !valid_key(key) {
            return Err(StoreError::files("naming a file", format!("`{key}` is not a file key")));
        }
        Ok(self.dir.join(&key[..2.min(key.len())]).join(key))
    }
}

impl Blobs for LocalDir {
    fn put<'a>(&'a self, key: &'a str, from: &'a Path) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let to = self.path_of(key)?;
            if let Some(parent) = to.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| StoreError::files("creating a folder", e))?;
            }
            tokio::fs::rename(from, &to).await.map_err(|e| StoreError::files("moving a file in place", e))
        })
    }

    fn get<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Option<ByteStream>, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::files("opening a file", e)),
            };
            file.seek(SeekFrom::Start(range.start)).await.map_err(|e| StoreError::files("reading a file", e))?;
            let len = range.end.saturating_sub(range.start);
            Ok(Some(ReaderStream::with_capacity(file.take(len), READ_CHUNK).boxed()))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path_of(key)?).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StoreError::files("removing a file", e)),
            }
        })
    }
}
