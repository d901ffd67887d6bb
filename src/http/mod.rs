//! The HTTP side: the router (web client, `/ws`, health, the API), the
//! embedded static files, and the JSON error body every route uses.

pub mod accounts;
pub mod api;
pub mod caller;
pub mod rooms;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use rust_embed::RustEmbed;
use serde_json::json;

use crate::app::App;
use crate::gateway::ws;

/// The web client, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/register", post(accounts::register))
        .route("/api/login", post(accounts::login))
        .route("/api/me", get(accounts::get_me).patch(accounts::patch_me))
        .route("/api/users/{nick}", get(accounts::get_user))
        .route("/api/rooms", get(rooms::list).post(rooms::create))
        .route("/api/rooms/{room}", get(rooms::status).delete(rooms::destroy))
        .route("/api/rooms/{room}/members", post(rooms::add_member))
        .route("/api/rooms/{room}/members/{nick}", delete(rooms::remove_member))
        .route("/api/rooms/{room}/messages", get(api::room_messages).post(rooms::publish))
        .route("/api/rooms/{room}/transcript", get(api::room_transcript))
        .fallback(get(static_file))
        .with_state(app)
}

/// `{"error":{"code":…,"message":…}}` with a status code.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers, and the server is not shutting down.
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.stop_reading.is_cancelled() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down");
    }
    match app.store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "connections": app.conns.open()})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "storage is unreachable")
        }
    }
}

async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match Assets::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            ([(header::CONTENT_TYPE, mime.as_ref())], file.data).into_response()
        }
        None => error_response(StatusCode::NOT_FOUND, "not_found", "no such page"),
    }
}
