//! Accounts and profiles: `POST /api/register`, `POST /api/login`,
//! `GET/PATCH /api/me`, `GET /api/users/{nick}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{Caller, caller, proto_error_response};
use super::edge::ClientAddr;
use super::{Body, bad_request, error_response, unavailable};
use crate::app::App;
use crate::auth::{self, MAX_DISPLAY_NAME, MAX_PASSWORD, MAX_SETTINGS_BYTES, MAX_STATUS, MIN_PASSWORD};
use crate::protocol::{Name, ProtoError, now_ms};
use crate::store::{Account, ProfileUpdate};

#[derive(Deserialize)]
pub struct Credentials {
    nick: String,
    password: String,
}

/// The profile as `/api/me` shows it to its owner.
fn profile(a: &Account) -> Value {
    json!({
        "nick": a.nick,
        "display_name": if a.display_name.is_empty() { &a.nick } else { &a.display_name },
        "status": a.status,
        "avatar": a.avatar,
        "settings": a.settings,
        "guest": false,
        "created_at": a.created_at,
    })
}

/// A new session token for the account `id` (nick `nick`), stored as its hash.
async fn session_for(app: &App, id: &str, nick: &str) -> Result<String, Response> {
    let (token, hash) = auth::new_session_token().map_err(|e| proto_error_response(&e))?;
    let now = now_ms();
    let expires = now + app.config.auth.session_ttl.as_millis() as i64;
    app.store.create_session(&hash, id, nick, now, expires).await.map_err(|_| unavailable())?;
    Ok(token)
}

/// `POST /api/register` `{nick, password}` → 201 `{token, user}`.
pub async fn register(State(app): State<Arc<App>>, client: ClientAddr, Body(c): Body<Credentials>) -> Response {
    if !app.config.auth.registration_open() {
        return error_response(StatusCode::FORBIDDEN, "forbidden", "registration is closed on this server");
    }
    let nick = match Name::nick(&c.nick) {
        Ok(n) => n,
        Err(e) => return proto_error_response(&e),
    };
    if let Err(e) = auth::check_not_reserved(&nick, &app.config.auth) {
        return proto_error_response(&e);
    }
    let len = c.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&len) {
        return bad_request(&format!("`password` must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"));
    }
    if let Err(e) = app.login_throttle.attempt(&nick, Some(client.ip)) {
        return proto_error_response(&e);
    }
    let hash = match auth::hash_password(c.password).await {
        Ok(h) => h,
        Err(e) => return proto_error_response(&e),
    };
    // A nick the site granted memberships to, before its user came, is
    // kept for that user (see `auth::check_free_for_guest`).
    match app.store.has_memberships(&crate::ids::pending_grant(nick.key())).await {
        Ok(false) => {}
        Ok(true) => {
            return error_response(StatusCode::CONFLICT, "nick_taken", "this nick is reserved for a user of the site");
        }
        Err(_) => return unavailable(),
    }
    let id = crate::ids::new_account();
    match app.store.create_account(nick.as_str(), &hash, &id, now_ms()).await {
        Ok(true) => {}
        Ok(false) => return error_response(StatusCode::CONFLICT, "nick_taken", "this nick is registered already"),
        Err(_) => return unavailable(),
    }
    tracing::info!(nick = %nick, "account registered");
    let token = match session_for(&app, &id, nick.as_str()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match app.store.account(nick.key()).await {
        Ok(Some(a)) => (StatusCode::CREATED, Json(json!({"token": token, "user": profile(&a)}))).into_response(),
        _ => unavailable(),
    }
}

/// `POST /api/login` `{nick, password}` → `{token, user}`.
pub async fn login(State(app): State<Arc<App>>, client: ClientAddr, Body(c): Body<Credentials>) -> Response {
    let Ok(nick) = Name::nick(&c.nick) else {
        return proto_error_response(&ProtoError::new(
            crate::protocol::ErrorCode::Unauthorized,
            "wrong nick or password",
        ));
    };
    let identity = match auth::login(&app.store, &app.login_throttle, &nick, &c.password, Some(client.ip)).await {
        Ok(i) => i,
        Err(e) => return proto_error_response(&e),
    };
    let token = match session_for(&app, &identity.id, identity.nick.as_str()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match app.store.account(identity.nick.key()).await {
        Ok(Some(a)) => Json(json!({"token": token, "user": profile(&a)})).into_response(),
        _ => unavailable(),
    }
}

/// The calling user (not an API key), with its stored profile.
async fn me_account(app: &Arc<App>, headers: &HeaderMap) -> Result<(Name, Account), Response> {
    match caller(app, headers).await? {
        Caller::ApiKey => Err(error_response(StatusCode::FORBIDDEN, "forbidden", "an API key has no profile")),
        // A guest's nick is not its own: a profile stored under it would
        // be the next guest's.
        Caller::User(user) if user.is_guest() => {
            Err(error_response(StatusCode::FORBIDDEN, "forbidden", "guests have no stored profile"))
        }
        Caller::User(user) => match app.store.account(user.nick.key()).await {
            Ok(Some(a)) => Ok((user.nick, a)),
            Ok(None) => {
                Err(error_response(StatusCode::NOT_FOUND, "no_such_user", "connect once to create the profile"))
            }
            Err(_) => Err(unavailable()),
        },
    }
}

/// `GET /api/me`.
pub async fn get_me(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match me_account(&app, &headers).await {
        Ok((_, a)) => Json(profile(&a)).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    display_name: Option<String>,
    status: Option<String>,
    avatar: Option<String>,
    settings: Option<Value>,
}

/// Checks a profile change: lengths, no control characters, an http(s)
/// avatar, settings an object of at most 4 KiB.
fn validate(p: ProfilePatch) -> Result<ProfileUpdate, String> {
    let text = |field: &str, v: Option<String>, max: usize| -> Result<Option<String>, String> {
        match v {
            None => Ok(None),
            Some(s) => {
                let s = s.trim().to_owned();
                if s.chars().count() > max || s.chars().any(char::is_control) {
                    Err(format!("`{field}` must be at most {max} characters, without control characters"))
                } else {
                    Ok(Some(s))
                }
            }
        }
    };
    let display_name = text("display_name", p.display_name, MAX_DISPLAY_NAME)?;
    let status = text("status", p.status, MAX_STATUS)?;
    if let Some(a) = &p.avatar
        && !a.is_empty()
        && !auth::valid_avatar(a)
    {
        return Err("`avatar` must be an http(s) URL of at most 512 characters, or empty".into());
    }
    if let Some(s) = &p.settings
        && (!s.is_object() || s.to_string().len() > MAX_SETTINGS_BYTES)
    {
        return Err(format!("`settings` must be a JSON object of at most {MAX_SETTINGS_BYTES} bytes"));
    }
    Ok(ProfileUpdate { display_name, status, avatar: p.avatar, settings: p.settings })
}

/// `PATCH /api/me` `{display_name?, status?, avatar?, settings?}`. Live
/// sessions show a new display name from their next connection on.
pub async fn patch_me(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (nick, _) = match me_account(&app, &headers).await {
        Ok(me) => me,
        Err(r) => return r,
    };
    let patch: ProfilePatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("not a valid profile change: {e}")),
    };
    let update = match validate(patch) {
        Ok(u) => u,
        Err(msg) => return bad_request(&msg),
    };
    if app.store.update_profile(nick.key(), &update).await.is_err() {
        return unavailable();
    }
    match app.store.account(nick.key()).await {
        Ok(Some(a)) => Json(profile(&a)).into_response(),
        _ => unavailable(),
    }
}

/// `GET /api/users/{nick}`: the public profile and online status.
pub async fn get_user(State(app): State<Arc<App>>, headers: HeaderMap, Path(nick): Path<String>) -> Response {
    if let Err(r) = caller(&app, &headers).await {
        return r;
    }
    let Ok(nick) = Name::nick(&nick) else { return bad_request("not a valid nick") };
    let account = match app.store.account(nick.key()).await {
        Ok(a) => a,
        Err(_) => return unavailable(),
    };
    let online = match app.bus.online(nick.key()).await {
        Ok(o) => o,
        Err(_) => return unavailable(),
    };
    let Some(a) = account else {
        return error_response(StatusCode::NOT_FOUND, "no_such_user", "no such user");
    };
    Json(json!({
        "nick": a.nick,
        "display_name": if a.display_name.is_empty() { &a.nick } else { &a.display_name },
        "status": a.status,
        "avatar": a.avatar,
        "registered": a.registered(),
        "online": online.is_some(),
        "away": online.as_ref().is_some_and(|o| o.away),
        "last_seen": if online.is_some() { now_ms() } else { a.last_seen },
    }))
    .into_response()
}
