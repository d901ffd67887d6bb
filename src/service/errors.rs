//! How the floors below report failure to a client: the store's typed
//! error becomes `unavailable`, logged here once with its whole cause
//! chain; the client never sees an internal error string.

use std::error::Error;

use crate::protocol::ProtoError;
use crate::store::StoreError;

impl From<StoreError> for ProtoError {
    fn from(e: StoreError) -> ProtoError {
        tracing::warn!(error = %chain(&e), "storage error");
        ProtoError::unavailable()
    }
}

/// An error and its sources, `: `-separated (`reading history: pool timed out`).
pub(crate) fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
