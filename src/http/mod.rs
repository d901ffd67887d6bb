//! The HTTP side: the router (web client, `/ws`, health, the API), the
//! embedded static files, and the JSON error body every route uses.

mod accounts;
mod api;
mod app;
mod caller;
pub(crate) mod conns;
mod edge;
mod error;
mod proxies;
mod rooms;
pub(crate) mod serve;
mod upgrade;
mod uploads;

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use rust_embed::RustEmbed;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::protocol::ErrorCode;
pub(crate) use app::App;
use error::{ApiError, error_response};

/// The web client, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub(crate) fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(upgrade::upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/register", post(accounts::register))
        .route("/api/login", post(accounts::login))
        .route("/api/me", get(accounts::get_me).patch(accounts::patch_me))
        .route("/api/me/password", post(accounts::change_password))
        .route("/api/me/avatar", post(uploads::set_avatar).delete(uploads::remove_avatar))
        .route("/api/users/{nick}", get(accounts::get_user))
        .route("/api/push/key", get(accounts::push_key))
        .route("/api/me/push", post(accounts::add_push))
        .route("/api/me/push/{id}", delete(accounts::remove_push))
        .route("/api/rooms", get(rooms::list).post(rooms::create))
        .route("/api/rooms/{room}", get(rooms::status).patch(rooms::patch).delete(rooms::destroy))
        .route("/api/rooms/{room}/members", post(rooms::add_member))
        .route("/api/rooms/{room}/members/{nick}", delete(rooms::remove_member))
        .route("/api/rooms/{room}/messages", get(api::room_messages).post(rooms::publish))
        .route("/api/rooms/{room}/transcript", get(api::room_transcript))
        .route("/api/search", get(api::search))
        .route(
            "/api/uploads",
            // The service counts the file's bytes itself (and cuts at
            // uploads.max_bytes); this only bounds the multipart framing.
            post(uploads::create).layer(DefaultBodyLimit::max(
                usize::try_from(app.config.uploads.max_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX),
            )),
        )
        .route("/files/{id}", get(uploads::file))
        .route("/files/{id}/thumbnail", get(uploads::thumbnail))
        .route("/avatars/{file}", get(uploads::avatar))
        .route("/", get(index_page))
        .route("/embed", get(embed_page))
        .route("/a/{version}/{*path}", get(versioned_asset))
        .fallback(get(static_file));
    if app.config.metrics.listen.is_empty() {
        router = router.route("/metrics", get(metrics));
    }
    if app.config.socketio.enabled {
        router = socketio_routes(router, &app);
    }
    router
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        // Outermost last: the host check, then JSON errors, then the body deadline.
        .layer(middleware::from_fn_with_state(app.clone(), edge::body_deadline))
        .layer(middleware::from_fn(edge::json_errors))
        .layer(middleware::from_fn_with_state(app.clone(), edge::check_host))
        .with_state(app)
}

/// `/socket.io/`: the Socket.IO door ([`crate::gateway::socketio`]). A new
/// Engine.IO connection passes the origin check and takes its place under
/// the connection caps, held for its life: a WebSocket takes over its TCP
/// connection's permit (as `/ws` does); a polling connection counts once,
/// afresh, however many requests (and TCP connections) carry it.
fn socketio_routes(router: Router<Arc<App>>, app: &Arc<App>) -> Router<Arc<App>> {
    use crate::gateway::socketio::{self, Transport};
    let weak = Arc::downgrade(app);
    let admit: socketio::Admit = Box::new(move |headers, extensions, transport| {
        let unavailable =
            || Box::new(error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "shutting down"));
        let app = weak.upgrade().ok_or_else(unavailable)?;
        let peer = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().ok_or_else(unavailable)?.0;
        let client = app.trusted_proxies.client(peer, headers);
        if !upgrade::origin_allowed(headers, &app.config.auth.allowed_origins) {
            tracing::warn!(addr = %client.socket_addr(), "socket.io connection refused: foreign origin");
            return Err(Box::new(error_response(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this page's origin may not connect (see auth.allowed_origins)",
            )));
        }
        let permit = match transport {
            Transport::Polling => app.conns.acquire(client.ip),
            Transport::WebSocket => {
                upgrade::upgrade_permit(&app, &client, extensions.get::<conns::PermitSlot>().cloned())
            }
        };
        match permit {
            Ok(permit) => Ok((client.ip, Box::new(permit) as Box<dyn Send + Sync>)),
            Err(refused) => {
                tracing::warn!(addr = %client.socket_addr(), ?refused, "socket.io connection refused: cap reached");
                let (status, msg) = match refused {
                    conns::Refused::Total => (StatusCode::SERVICE_UNAVAILABLE, "too many connections"),
                    conns::Refused::PerIp => (StatusCode::TOO_MANY_REQUESTS, "too many connections from this address"),
                };
                Err(Box::new(error_response(status, ErrorCode::TooManyConnections, msg)))
            }
        }
    });
    let door = socketio::door(app.service().clone(), admit, edge::timed_out);
    let serve = move |req: Request| door.clone().serve(req);
    router.route(socketio::PATH, any(serve.clone())).route(&format!("{}/", socketio::PATH), any(serve))
}

/// `/metrics` alone, for `metrics.listen`.
pub(crate) fn metrics_router(app: Arc<App>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(app)
}

/// Counts each request by its route pattern (`/api/rooms/{room}`, not the
/// path) and status; the static files and unknown paths count as `other`.
async fn count_requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics.http_request(route.as_deref().unwrap_or("other"), response.status().as_u16());
    response
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let snapshot = app.snapshot().await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], app.metrics.render(&snapshot)).into_response()
}

/// A JSON request body. What axum would refuse in plain text (not JSON, a
/// missing or unknown field, a wrong type, no `Content-Type`) is refused
/// with the API's own error body instead: 400 `invalid`, naming the problem;
/// a body over the limit is 413 `too_large`, one that did not arrive within
/// `server.request_body_timeout` 408 `timeout`.
pub(crate) struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) if edge::timed_out(&e) => Err(edge::body_timeout_response()),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, e.body_text()).into_response())
            }
            Err(e) => Err(ApiError::invalid(e.body_text()).into_response()),
        }
    }
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: Redis (in a cluster) and the store answer, the store takes
/// writes, and the server is not shutting down.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.lifecycle.stop_reading.is_cancelled() {
        let e = ErrorCode::ShuttingDown;
        return error_response(StatusCode::SERVICE_UNAVAILABLE, e, "the server is shutting down");
    }
    match app.ready().await {
        Ok(()) => Json(json!({"status": "ready", "connections": app.conns.open()})).into_response(),
        Err(why) => error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, why),
    }
}

// ---- the web client ----------------------------------------------------
//
// Pages (`/`, `/embed`) are never cached without asking (`no-cache`, with an
// ETag) and carry a strict Content-Security-Policy. They load their CSS and
// JavaScript from `/a/<version>/…`, where the version changes whenever any
// embedded file does: those answers are cached for a year. Relative module
// imports inherit the versioned folder, so no file needs rewriting but the
// pages (`{{v}}`).

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /`: the web client.
async fn index_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    page(&app, &headers, "index.html")
}

/// `GET /embed?room=…&token=…`: the one-room widget, for an iframe.
async fn embed_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    page(&app, &headers, "embed.html")
}

/// `GET /a/{version}/{path}`: a static file, cached for good when `version`
/// is the current one (an older page asking for an older version gets
/// today's file, revalidated).
async fn versioned_asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let cache = if version == asset_version() { IMMUTABLE } else { NO_CACHE };
    if path.ends_with(".html") {
        return error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such page");
    }
    asset(&path, cache, &headers)
}

/// Any other path: the file of that name (`/embed.js`, `/favicon.svg`), or
/// a page by its file name.
async fn static_file(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    match uri.path().trim_start_matches('/') {
        "" | "index.html" => page(&app, &headers, "index.html"),
        "embed.html" => page(&app, &headers, "embed.html"),
        // Linked from other sites by a fixed URL: cached for an hour.
        "embed.js" => asset("embed.js", "public, max-age=3600", &headers),
        path => asset(path, NO_CACHE, &headers),
    }
}

/// The version in asset URLs: the crate's version and a digest of every
/// embedded file, so that a changed file gets a new URL even between releases.
fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut names: Vec<_> = Assets::iter().collect();
        names.sort();
        let mut digest = Sha256::new();
        for name in names {
            if let Some(file) = Assets::get(&name) {
                digest.update(name.as_bytes());
                digest.update(file.metadata.sha256_hash());
            }
        }
        format!("{}-{}", env!("CARGO_PKG_VERSION"), hex(&digest.finalize()[..5]))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `true` when the request's `If-None-Match` names `etag`.
fn fresh(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn asset(path: &str, cache: &'static str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such page");
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let common = [
        (header::CACHE_CONTROL, cache.to_string()),
        (header::ETAG, etag.clone()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    if fresh(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, mime.as_ref().to_string())], file.data).into_response()
}

/// A page: `{{v}}` replaced by the asset version, `no-cache`, and the CSP.
fn page(app: &App, headers: &HeaderMap, name: &str) -> Response {
    let Some(file) = Assets::get(name) else {
        return error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such page");
    };
    let version = asset_version();
    let etag = format!("\"{version}-{}\"", hex(&file.metadata.sha256_hash()[..6]));
    let common = [
        (header::CACHE_CONTROL, NO_CACHE.to_string()),
        (header::ETAG, etag.clone()),
        (header::CONTENT_SECURITY_POLICY, content_security_policy(headers, &app.config.auth.allowed_origins)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        // The embed page's URL carries a token: never send it anywhere.
        (header::REFERRER_POLICY, "no-referrer".to_string()),
    ];
    if fresh(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let html = String::from_utf8_lossy(&file.data).replace("{{v}}", version);
    (common, [(header::CONTENT_TYPE, "text/html; charset=utf-8".to_string())], html).into_response()
}

/// Scripts, styles, fonts and connections from this server only (its
/// WebSocket included, named by the request's `Host`, since not every
/// browser counts `ws:` as `'self'`); avatars from anywhere; framing by
/// this server's own pages and by `auth.allowed_origins` (the sites that
/// embed the chat are the ones allowed to connect to it).
fn content_security_policy(headers: &HeaderMap, embedders: &[String]) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
    let connect = match host {
        Some(h) => format!("'self' ws://{h} wss://{h}"),
        None => "'self'".to_string(),
    };
    let mut ancestors = String::from("'self'");
    for origin in embedders {
        // An origin is one source expression: no spaces, `;` or `,` that
        // could add directives.
        if !origin.is_empty() && origin.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:/[]*".contains(&b)) {
            ancestors.push(' ');
            ancestors.push_str(origin.trim_end_matches('/'));
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; \
         media-src 'self'; font-src 'self'; connect-src {connect}; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {ancestors}"
    )
}
