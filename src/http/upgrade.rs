//! `GET /ws`: the WebSocket upgrade, behind the origin check and the
//! connection caps, with the frame and buffer limits; the connection itself
//! is the gateway's ([`crate::gateway::ws`]).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::App;
use super::conns::{ConnPermit, PermitSlot, Refused};
use super::edge::ClientAddr;
use super::error::error_response;
use crate::gateway::ws;
use crate::protocol::ErrorCode;

/// `GET /ws`.
pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    client: ClientAddr,
    slot: Option<Extension<PermitSlot>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
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
    let l = &app.config.limits;
    ws.read_buffer_size(l.ws_read_buffer)
        .write_buffer_size(l.ws_write_buffer)
        .max_message_size(l.max_frame_bytes)
        .max_frame_size(l.max_frame_bytes)
        .on_upgrade(move |socket| {
            let svc = app.service().clone();
            svc.lifecycle.tracker.track_future(ws::serve(svc.clone(), socket, addr, permit))
        })
        .into_response()
}

/// The connection's permit, taken over from the accept loop for the life
/// of the WebSocket; through a trusted proxy it now counts towards the
/// forwarded client's address too (on refusal it goes back to the slot).
fn upgrade_permit(app: &App, client: &ClientAddr, slot: Option<PermitSlot>) -> Result<ConnPermit, Refused> {
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
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
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
