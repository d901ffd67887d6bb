//! The API's one error type: handlers return `Result<_, ApiError>` and use
//! `?`; a service error converts with `From`, taking the HTTP status that
//! fits its code. The body is always `{"error":{"code","message"}}`, and
//! never carries an internal error string (the service logged those).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::protocol::{ErrorCode, ProtoError};

#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 400 `invalid`.
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, message)
    }

    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    /// The same error with another status.
    pub(crate) fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

/// The status each code answers with.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadFrame | ErrorCode::Invalid | ErrorCode::UnknownType => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NickTaken | ErrorCode::NotInRoom | ErrorCode::RoomExists => StatusCode::CONFLICT,
        ErrorCode::NoSuchRoom | ErrorCode::NoSuchUser | ErrorCode::NoSuchMessage | ErrorCode::NotFound => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited | ErrorCode::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::Misdirected => StatusCode::MISDIRECTED_REQUEST,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
    }
}

impl From<ProtoError> for ApiError {
    fn from(e: ProtoError) -> ApiError {
        let message = match e.code {
            ErrorCode::Unavailable => "storage is unavailable".to_owned(),
            _ => e.message,
        };
        ApiError { status: status_of(e.code), code: e.code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, &self.message)
    }
}

/// `{"error":{"code":…,"message":…}}` with a status code.
pub(crate) fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code.as_str(), "message": message}}))).into_response()
}
