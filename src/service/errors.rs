//! How the floors below report failure to a client: the store's typed
//! error becomes `unavailable`, logged here once (its text carries its
//! causes); the client never sees an internal error string.

use crate::protocol::ProtoError;
use crate::store::StoreError;

impl From<StoreError> for ProtoError {
    fn from(e: StoreError) -> ProtoError {
        tracing::warn!(error = %e, "storage error");
        ProtoError::unavailable()
    }
}
