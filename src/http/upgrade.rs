//! `GET /ws`: the WebSocket handshake (RFC 6455, HTTP/1.1), behind the
//! origin check and the connection caps, with the frame and buffer limits;
//! the connection itself is the gateway's ([`crate::gateway::ws`]), which
//! takes the upgraded socket as tokio-tungstenite's stream (so that it can
//! write data frames to the socket itself: see `gateway::ws::outbox`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use super::App;
use super::conns::{ConnPermit, PermitSlot, Refused};
use super::edge::ClientAddr;
use super::error::error_response;
use crate::gateway::ws;
use crate::gateway::ws::handshake;
use crate::protocol::ErrorCode;

/// `GET /ws`.
pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    client: ClientAddr,
    slot: Option<Extension<PermitSlot>>,
    method: Method,
    headers: HeaderMap,
    on_upgrade: Option<Extension<hyper::upgrade::OnUpgrade>>,
) -> Response {
    let key = match handshake::check(&method, &headers) {
        Ok(key) => key,
        Err((status, msg)) => {
            let code =
                if status == StatusCode::METHOD_NOT_ALLOWED { ErrorCode::MethodNotAllowed } else { ErrorCode::Invalid };
            return error_response(status, code, msg);
        }
    };
    let Some(Extension(on_upgrade)) = on_upgrade else {
        return error_response(StatusCode::UPGRADE_REQUIRED, ErrorCode::Invalid, "this connection cannot be upgraded");
    };
    // The client's address (through trusted proxies), for caps and logs.
    let addr = client.socket_addr();
    if !origin_allowed(&headers, &app.config.auth.allowed_origins) {
        tracing::warn!(%addr, origin = ?headers.get(header::ORIGIN), "connection refused: foreign origin");
        return error_response(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this page's origin may not connect (see auth.allowed_origins)",
        );
    }
    let permit = match upgrade_permit(&app, &client, slot.map(|Extension(s)| s)) {
        Ok(p) => p,
        Err(refused) => {
            tracing::warn!(%addr, peer = %client.peer, ?refused, "connection refused: cap reached");
            let (status, msg) = match refused {
                Refused::Total => (StatusCode::SERVICE_UNAVAILABLE, "too many connections"),
                Refused::PerIp => (StatusCode::TOO_MANY_REQUESTS, "too many connections from this address"),
            };
            return error_response(status, ErrorCode::TooManyConnections, msg);
        }
    };
    let svc = app.service().clone();
    tokio::spawn(svc.lifecycle.tracker.track_future(ws::serve(svc.clone(), on_upgrade, addr, permit)));
    handshake::switching_protocols(key)
}

/// The connection's permit, taken over from the accept loop for the life
/// of the WebSocket; through a trusted proxy it now counts towards the
/// forwarded client's address too (on refusal it goes back to the slot).
pub(super) fn upgrade_permit(app: &App, client: &ClientAddr, slot: Option<PermitSlot>) -> Result<ConnPermit, Refused> {
    let Some(mut permit) = slot.as_ref().and_then(PermitSlot::take) else {
        // Not served by the accept loop (or a second upgrade): count afresh.
        return app.conns.acquire(client.ip);
    };
    if client.via_proxy
        && let Err(refused) = permit.add_ip(client.ip)
    {
        if let Some(slot) = slot {
            slot.put_back(permit);
        }
        return Err(refused);
    }
    Ok(permit)
}

/// Cross-site WebSocket hijacking guard: a browser always sends `Origin`;
/// it must be this server's own origin (same host as `Host`) or one of
/// `auth.allowed_origins`. Clients that are not browsers send none.
pub(super) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Ok(origin) = origin.to_str() else { return false };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://site.example".to_string()];
        assert!(origin_allowed(&headers(None, "chat.example"), &allowed));
        assert!(origin_allowed(&headers(Some("https://chat.example"), "chat.example"), &allowed));
        assert!(origin_allowed(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"), &allowed));
        assert!(origin_allowed(&headers(Some("https://site.example"), "chat.example"), &allowed));
        assert!(!origin_allowed(&headers(Some("https://evil.example"), "chat.example"), &allowed));
        assert!(!origin_allowed(&headers(Some("https://chat.example.evil"), "chat.example"), &allowed));
        assert!(!origin_allowed(&headers(Some("null"), "chat.example"), &allowed));
    }
}
