//! Who is calling the HTTP API: a server-side caller with an API key, or a
//! user with a session token (from /api/login) or a site token.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::error_response;
use crate::app::App;
use crate::auth::{self, Identity};
use crate::protocol::{ErrorCode, Name, ProtoError};

pub enum Caller {
    ApiKey,
    User(Identity),
}

impl Caller {
    pub fn is_api_key(&self) -> bool {
        matches!(self, Caller::ApiKey)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

/// The caller, or the response that refuses the request: 401 without a
/// valid key or token.
pub async fn caller(app: &Arc<App>, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(token) = bearer(headers) else {
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <api key or token>`",
        ));
    };
    if auth::is_api_key(&app.config.auth.api_keys, token) {
        return Ok(Caller::ApiKey);
    }
    match auth::from_token(&app.store, &app.config.auth, token).await {
        Ok(identity) => Ok(Caller::User(identity)),
        Err(e) => Err(proto_error_response(&e)),
    }
}

/// Whether the caller may read a room: an API key or a site admin always; a
/// user, a public room or a private one it is a member of.
pub async fn may_read(app: &App, caller: &Caller, room: &Name, private: bool) -> Result<(), Response> {
    let Caller::User(user) = caller else { return Ok(()) };
    if !private || user.admin {
        return Ok(());
    }
    match app.store.member_role(room.key(), &user.id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(error_response(StatusCode::FORBIDDEN, "forbidden", "this room is private")),
        Err(_) => Err(super::unavailable()),
    }
}

/// Only an API key will do.
pub async fn api_key(app: &Arc<App>, headers: &HeaderMap) -> Result<(), Response> {
    match caller(app, headers).await? {
        Caller::ApiKey => Ok(()),
        Caller::User(_) => {
            Err(error_response(StatusCode::FORBIDDEN, "forbidden", "this call needs an API key, not a user token"))
        }
    }
}

/// A protocol error as an HTTP response with a fitting status.
pub fn proto_error_response(e: &ProtoError) -> Response {
    let status = match e.code {
        ErrorCode::BadFrame | ErrorCode::Invalid | ErrorCode::UnknownType => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NickTaken => StatusCode::CONFLICT,
        ErrorCode::NoSuchRoom | ErrorCode::NoSuchUser | ErrorCode::NoSuchMessage => StatusCode::NOT_FOUND,
        ErrorCode::NotInRoom => StatusCode::CONFLICT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = serde_json::to_value(e.code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    error_response(status, &code, &e.message)
}
