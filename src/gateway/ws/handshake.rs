//! The server side of the RFC 6455 opening handshake (HTTP/1.1), shared by
//! the doors that take a WebSocket over: `/ws` (`http::upgrade`) and
//! Socket.IO's WebSocket transport. Each answers a refusal its own way.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Checks an opening handshake (RFC 6455 section 4.2.1) and returns its
/// `Sec-WebSocket-Key`, or the status and reason that refuse it.
pub(crate) fn check<'h>(
    method: &Method,
    headers: &'h HeaderMap,
) -> Result<&'h HeaderValue, (StatusCode, &'static str)> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if method != Method::GET {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "a WebSocket handshake is a GET"));
    }
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err((StatusCode::UPGRADE_REQUIRED, "this is a WebSocket endpoint: send `Upgrade: websocket`"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err((StatusCode::BAD_REQUEST, "`Sec-WebSocket-Version` must be 13"));
    }
    headers.get(header::SEC_WEBSOCKET_KEY).ok_or((StatusCode::BAD_REQUEST, "`Sec-WebSocket-Key` is missing"))
}

/// The `101 Switching Protocols` answer to a handshake with this key.
pub(crate) fn switching_protocols(key: &HeaderValue) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
