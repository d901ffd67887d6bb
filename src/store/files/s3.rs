//! Files in an S3-compatible bucket (`uploads.s3`), through `object_store`.
//! A spool file goes up with a buffered writer: one PUT for a small file,
//! a multipart upload (in chunks, never whole in memory) for a large one;
//! either way the object appears only once complete.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::{Blobs, ByteStream, valid_key};
use crate::config::S3Config;
use crate::store::StoreError;

pub(super) struct S3 {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl S3 {
    pub(super) fn new(c: &S3Config) -> Result<S3, StoreError> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_allow_http(c.allow_http);
        if !c.endpoint.is_empty() {
            b = b.with_endpoint(&c.endpoint);
        }
        if !c.access_key_id.is_empty() {
            b = b.with_access_key_id(c.access_key_id.expose());
        }
        if !c.secret_access_key.is_empty() {
            b = b.with_secret_access_key(c.secret_access_key.expose());
        }
        let store = b.build().map_err(|e| StoreError::files("configuring the S3 store (uploads.s3)", e))?;
        Ok(S3 { store: Arc::new(store), prefix: c.prefix.clone() })
    }

    fn path_of(&self, key: &str) -> Result<ObjectPath, StoreError> {
        if !valid_key(key) {
            return Err(StoreError::files("naming a file", format!("`{key}` is not a file key")));
        }
        Ok(ObjectPath::from(format!("{}{key}", self.prefix)))
    }
}

impl Blobs for S3 {
    fn put<'a>(&'a self, key: &'a str, from: &'a Path) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let to = self.path_of(key)?;
            let mut file =
                tokio::fs::File::open(from).await.map_err(|e| StoreError::files("reading a spool file", e))?;
            // Small files go up in one PUT; larger ones in 5 MiB parts, two at a time.
            let mut up = BufWriter::with_capacity(self.store.clone(), to, 5 * 1024 * 1024).with_max_concurrency(2);
            if let Err(e) = tokio::io::copy(&mut file, &mut up).await {
                let _ = up.abort().await;
                return Err(StoreError::files("uploading to S3", e));
            }
            up.shutdown().await.map_err(|e| StoreError::files("uploading to S3", e))
        })
    }

    fn get<'a>(&'a self, key: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Option<ByteStream>, StoreError>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let options = GetOptions { range: Some(GetRange::Bounded(range)), ..GetOptions::default() };
            match self.store.get_opts(&path, options).await {
                Ok(r) => Ok(Some(r.into_stream().map_err(std::io::Error::other).boxed())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(StoreError::files("reading from S3", e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match self.store.delete(&self.path_of(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(StoreError::files("deleting from S3", e)),
            }
        })
    }
}
