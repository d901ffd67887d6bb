//! Accounts over HTTP: register, log in, the caller's profile, another
//! user's public profile. Parse, call the service, encode.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::caller;
use super::edge::ClientAddr;
use super::error::ApiError;
use super::{App, Body};
use crate::model::Account;
use crate::protocol::{Name, now_ms};
use crate::service::accounts::ProfilePatch;

type Result<T> = std::result::Result<T, ApiError>;

#[derive(Deserialize)]
pub(crate) struct Credentials {
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

/// `POST /api/register` `{nick, password}` → 201 `{token, user}`.
pub(crate) async fn register(
    State(app): State<Arc<App>>,
    client: ClientAddr,
    Body(c): Body<Credentials>,
) -> Result<Response> {
    let (token, account) = app.register(&c.nick, c.password, client.ip).await?;
    Ok((StatusCode::CREATED, Json(json!({"token": token, "user": profile(&account)}))).into_response())
}

/// `POST /api/login` `{nick, password}` → `{token, user}`.
pub(crate) async fn login(
    State(app): State<Arc<App>>,
    client: ClientAddr,
    Body(c): Body<Credentials>,
) -> Result<Response> {
    let (token, account) = app.login(&c.nick, &c.password, client.ip).await?;
    Ok(Json(json!({"token": token, "user": profile(&account)})).into_response())
}

/// `GET /api/me`.
pub(crate) async fn get_me(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    Ok(Json(profile(&app.my_account(&caller).await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    display_name: Option<String>,
    status: Option<String>,
    avatar: Option<String>,
    settings: Option<Value>,
}

/// `PATCH /api/me` `{display_name?, status?, avatar?, settings?}`. A new
/// display name, status or avatar reaches everyone who sees the user at
/// once (`profile` frames).
pub(crate) async fn patch_me(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let me = app.my_account(&caller).await?;
    let p: ProfileBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("not a valid profile change: {e}")))?;
    let patch = ProfilePatch { display_name: p.display_name, status: p.status, avatar: p.avatar, settings: p.settings };
    Ok(Json(profile(&app.update_profile(&me, patch).await?)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    old: String,
    new: String,
}

/// `POST /api/me/password` `{old, new}` → `{token, user}`: every earlier
/// session token of the account has ended; this is the caller's new one.
pub(crate) async fn change_password(
    State(app): State<Arc<App>>,
    client: ClientAddr,
    headers: HeaderMap,
    Body(c): Body<PasswordChange>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let me = app.my_account(&caller).await?;
    let (token, account) = app.change_password(&me, &c.old, c.new, client.ip).await?;
    Ok(Json(json!({"token": token, "user": profile(&account)})).into_response())
}

/// `GET /api/users/{nick}`: the public profile and online status.
pub(crate) async fn get_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(nick): Path<String>,
) -> Result<Response> {
    caller(&app, &headers).await?;
    let Ok(nick) = Name::nick(&nick) else { return Err(ApiError::invalid("not a valid nick")) };
    let (a, online) = app.user_profile(&nick).await?;
    Ok(Json(json!({
        "nick": a.nick,
        "display_name": if a.display_name.is_empty() { &a.nick } else { &a.display_name },
        "status": a.status,
        "avatar": a.avatar,
        "registered": a.registered(),
        "online": online.is_some(),
        "away": online.as_ref().is_some_and(|o| o.away),
        "last_seen": if online.is_some() { now_ms() } else { a.last_seen },
    }))
    .into_response())
}

/// `GET /api/push/key` → `{"public_key": "<base64url P-256 point>"}`.
pub(crate) async fn push_key(State(app): State<Arc<App>>) -> Result<Response> {
    Ok(Json(json!({"public_key": app.push_key()?})).into_response())
}

#[derive(Deserialize)]
pub(crate) struct PushKeys {
    p256dh: String,
    auth: String,
}

/// A browser's `PushSubscription.toJSON()` (`expirationTime` is ignored).
#[derive(Deserialize)]
pub(crate) struct PushBody {
    endpoint: String,
    keys: PushKeys,
}

/// `POST /api/me/push` `{endpoint, keys: {p256dh, auth}}` → `201 {id}`.
pub(crate) async fn add_push(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(b): Body<PushBody>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let id = app.add_push(&caller, &b.endpoint, &b.keys.p256dh, &b.keys.auth).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

/// `DELETE /api/me/push/{id}` → 204.
pub(crate) async fn remove_push(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    app.remove_push(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
