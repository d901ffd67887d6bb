//! The HTTP edge, before any route: who the client is (through trusted
//! reverse proxies), which host names the server answers to, a deadline on
//! request bodies, and the JSON error form for every refusal — axum's own
//! rejections (query strings, paths, bodies) included.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::App;
use super::error::error_response;
pub(crate) use super::proxies::{ClientAddr, TrustedProxies};
use crate::protocol::ErrorCode;

// ---- the client's address ---------------------------------------------------------

impl FromRequestParts<Arc<App>> for ClientAddr {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Ok(app.trusted_proxies.client(*peer, &parts.headers)),
            None => Err(error_response(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "no client address")),
        }
    }
}

// ---- host names ---------------------------------------------------------------------

/// With `server.allowed_hosts` set, a request naming another host (or none)
/// is refused with 421: a page on another name that resolves here (DNS
/// rebinding) cannot talk to the server. Health checks answer any host.
pub async fn check_host(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let allowed = &app.config.server.allowed_hosts;
    if allowed.is_empty() || matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(header::HOST).and_then(|h| h.to_str().ok()),
    };
    if host.is_some_and(|h| host_allowed(h, allowed)) {
        return next.run(req).await;
    }
    error_response(
        StatusCode::MISDIRECTED_REQUEST,
        ErrorCode::Misdirected,
        "this server does not answer to that host name (see server.allowed_hosts)",
    )
}

/// `host` (a `Host` value) against the list: an entry with a port must
/// match exactly, one without matches any port. Case-insensitive.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim();
    let name = without_port(host);
    allowed.iter().any(|a| {
        if without_port(a).len() != a.len() { a.eq_ignore_ascii_case(host) } else { a.eq_ignore_ascii_case(name) }
    })
}

fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

// ---- JSON errors ---------------------------------------------------------------------

/// Every error answer in the API's form `{"error":{"code","message"}}`:
/// axum's rejections (a bad query string, a bad path, a body over the
/// limit, a wrong method) come as plain text, and are rewritten here.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = status.canonical_reason().unwrap_or("error");
    let message = if text.trim().is_empty() || status.is_server_error() { reason } else { text.trim() };
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::Timeout,
        413 | 414 | 431 => ErrorCode::TooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        500.. => ErrorCode::Internal,
        _ => ErrorCode::Invalid,
    };
    let mut out = error_response(status, code, message);
    for name in [header::ALLOW, header::RETRY_AFTER, header::CONNECTION] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

// ---- request bodies --------------------------------------------------------------------

/// Gives each request body `server.request_body_timeout` from the end of
/// its headers: a body dripped a byte at a time fails then (the JSON body
/// extractor answers 408, and the connection closes).
pub async fn body_deadline(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    // An upload may be large: it has a deadline of its own.
    let timeout = if req.uri().path() == "/api/uploads" {
        app.config.uploads.body_timeout
    } else {
        app.config.server.request_body_timeout
    };
    let deadline = Box::pin(tokio::time::sleep(timeout));
    next.run(req.map(|inner| axum::body::Body::new(TimedBody { inner, deadline }))).await
}

/// A request body that fails with [`BodyTimedOut`] at its deadline.
struct TimedBody {
    inner: axum::body::Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The error of a body that did not arrive within `server.request_body_timeout`.
#[derive(Debug)]
pub struct BodyTimedOut;

impl fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (or what caused it) is a body deadline.
pub fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(err);
    while let Some(err) = e {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        e = err.source();
    }
    false
}

/// 408 `timeout`, closing the connection.
pub fn body_timeout_response() -> Response {
    let mut r = error_response(StatusCode::REQUEST_TIMEOUT, ErrorCode::Timeout, &BodyTimedOut.to_string());
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_net;
    use axum::http::HeaderMap;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses() {
        let t = TrustedProxies::new(&["127.0.0.1".into(), "10.0.0.0/8".into(), "::1".into()]);
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ip = |peer: SocketAddr, xff: &[&str]| t.client(peer, &headers(xff)).ip.to_string();
        // The right-most untrusted hop; trusted hops are skipped.
        assert_eq!(ip(proxy, &["1.1.1.1, 2.2.2.2, 10.1.2.3"]), "2.2.2.2");
        assert_eq!(ip(proxy, &["1.1.1.1", "2.2.2.2:443"]), "2.2.2.2");
        assert_eq!(ip(proxy, &["[2001:db8::1]:80"]), "2001:db8::1");
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(ip(proxy, &["1.1.1.1, nonsense, 10.0.0.9"]), "10.0.0.9");
        assert_eq!(ip(proxy, &[]), "127.0.0.1");
        // An untrusted peer's header is ignored.
        assert_eq!(ip("192.0.2.1:5000".parse().unwrap(), &["1.1.1.1"]), "192.0.2.1");
        // IPv4-mapped peers count as IPv4.
        assert_eq!(ip("[::ffff:127.0.0.1]:5000".parse().unwrap(), &["3.3.3.3"]), "3.3.3.3");
        assert!(parse_net("10.0.0.0/33").is_none() && parse_net("localhost").is_none());
    }

    #[test]
    fn host_names() {
        let allowed = ["chat.example.org".to_string(), "127.0.0.1:8080".to_string(), "[::1]".to_string()];
        assert!(host_allowed("chat.example.org", &allowed));
        assert!(host_allowed("CHAT.example.org:443", &allowed));
        assert!(host_allowed("127.0.0.1:8080", &allowed));
        assert!(!host_allowed("127.0.0.1:8081", &allowed));
        assert!(host_allowed("[::1]:8080", &allowed));
        assert!(!host_allowed("evil.example", &allowed));
        assert!(!host_allowed("chat.example.org.evil.example", &allowed));
    }
}
