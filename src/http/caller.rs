//! Who is calling the HTTP API: the bearer token, handed to the service.

use axum::http::{HeaderMap, StatusCode, header};

use super::App;
use super::error::ApiError;
use crate::protocol::ErrorCode;
use crate::service::Caller;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

/// The caller, or 401 without a valid key or token.
pub(crate) async fn caller(app: &App, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "send `Authorization: Bearer <api key or token>`",
        ));
    };
    Ok(app.caller(token).await?)
}

/// Only an API key will do.
pub(crate) async fn api_key(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    match caller(app, headers).await? {
        Caller::ApiKey => Ok(()),
        Caller::User(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this call needs an API key, not a user token",
        )),
    }
}
