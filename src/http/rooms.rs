//! Rooms over HTTP: list, create, status, destroy (users and API keys);
//! add and remove members, publish (API keys).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use ulid::Ulid;

use super::caller::{Caller, api_key, caller, may_read, proto_error_response};
use super::{Body, bad_request, error_response, unavailable};
use crate::app::App;
use crate::hub::Route;
use crate::protocol::server::Conv;
use crate::protocol::{Name, check_text, now_ms};
use crate::store::{HistoryQuery, NewMessage, Role};

fn no_such_room() -> Response {
    error_response(StatusCode::NOT_FOUND, "no_such_room", "no such room")
}

fn room_name(raw: &str) -> Result<Name, Response> {
    Name::room(raw).map_err(|e| proto_error_response(&e))
}

/// `GET /api/rooms`: named and live rooms; private ones only for API keys.
pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, Response> {
    let caller = caller(&app, &headers).await?;
    let stored = app.store.list_rooms().await.map_err(|_| unavailable())?;
    let live = app.bus.room_list().await.map_err(|e| proto_error_response(&e))?;
    let mut rooms: Vec<serde_json::Value> = Vec::new();
    for r in &stored {
        if r.private && !caller.is_api_key() {
            continue;
        }
        let members = live.iter().find(|l| l.name.eq_ignore_ascii_case(&r.name)).map_or(0, |l| l.members);
        rooms.push(json!({"name": r.name, "topic": r.topic, "members": members, "private": r.private}));
    }
    for l in live.iter().filter(|l| !stored.iter().any(|r| r.name.eq_ignore_ascii_case(&l.name))) {
        rooms.push(json!({"name": l.name, "topic": l.topic, "members": l.members, "private": false}));
    }
    Ok(Json(json!({"rooms": rooms})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    name: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /api/rooms` `{name, topic?, private?, members?}` → 201. A user who
/// creates a room moderates it.
pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(body): Body<NewRoom>,
) -> Result<Response, Response> {
    let caller = caller(&app, &headers).await?;
    let name = match room_name(&body.name) {
        Ok(n) => n,
        Err(r) => return Err(r),
    };
    if body.topic.chars().count() > app.config.limits.max_topic {
        return Err(bad_request("`topic` is too long"));
    }
    let members = body
        .members
        .iter()
        .map(|m| Name::nick(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| proto_error_response(&e))?;
    if app.bus.room_name(name.key()).await.map_err(|e| proto_error_response(&e))?.is_some() {
        return Err(error_response(StatusCode::CONFLICT, "room_exists", "a room of that name exists"));
    }
    match app.store.create_room(name.key(), name.as_str(), body.topic.trim(), body.private, true).await {
        Ok(true) => {}
        Ok(false) => return Err(error_response(StatusCode::CONFLICT, "room_exists", "a room of that name exists")),
        Err(_) => return Err(unavailable()),
    }
    for m in &members {
        if app.store.set_member(name.key(), m.key(), Role::Member).await.is_err() {
            return Err(unavailable());
        }
    }
    if let Caller::User(user) = &caller
        && app.store.set_member(name.key(), user.nick.key(), Role::Moderator).await.is_err()
    {
        return Err(unavailable());
    }
    tracing::info!(room = %name, private = body.private, "room created");
    let body = json!({"name": name.as_str(), "topic": body.topic.trim(), "private": body.private});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/rooms/{room}`: name, topic, privacy, latest `seq`, members online.
pub async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response, Response> {
    let caller = caller(&app, &headers).await?;
    let room = room_name(&room)?;
    let record = app.store.room(room.key()).await.map_err(|_| unavailable())?;
    let live = app.bus.who(room.key()).await.map_err(|e| proto_error_response(&e))?;
    let Some((name, topic)) = live
        .as_ref()
        .map(|(n, t, _)| (n.clone(), t.clone()))
        .or_else(|| record.as_ref().map(|r| (r.name.clone(), r.topic.clone())))
    else {
        return Err(no_such_room());
    };
    let private = record.as_ref().is_some_and(|r| r.private);
    may_read(&app, &caller, &room, private).await?;
    let members = live.map(|(_, _, m)| m).unwrap_or_default();
    // The newest message's seq (in a cluster it may still be buffered in
    // Redis, not yet in the database).
    let newest = HistoryQuery { limit: 1, ..Default::default() };
    let page = app.bus.history(&Conv::Room(room.key().clone()), newest).await.map_err(|_| unavailable())?;
    let seq = page.messages.last().map_or(0, |m| m.seq).max(record.as_ref().map_or(0, |r| r.last_seq));
    Ok(Json(json!({
        "name": name,
        "topic": topic,
        "private": private,
        "seq": seq,
        "count": members.len(),
        "members": members,
    }))
    .into_response())
}

/// `DELETE /api/rooms/{room}`: members are told (`left`, reason
/// `destroyed`) and removed; the messages stay for transcripts. API keys,
/// or a user who moderates the room.
pub async fn destroy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response, Response> {
    let caller = caller(&app, &headers).await?;
    let room = room_name(&room)?;
    if let Caller::User(user) = &caller
        && !user.admin
        && !matches!(app.store.member_role(room.key(), user.nick.key()).await, Ok(Some(Role::Moderator)))
    {
        return Err(error_response(StatusCode::FORBIDDEN, "forbidden", "only moderators destroy a room"));
    }
    // In a cluster the newest messages may still be buffered in Redis:
    // archive them first, so that none outlives the room.
    if !app.bus.settle().await {
        return Err(unavailable());
    }
    let stored = app.store.delete_room(room.key()).await.map_err(|_| unavailable())?;
    let sessions = app.bus.destroy(room.key()).await.map_err(|e| proto_error_response(&e))?;
    if !stored && sessions == 0 {
        return Err(no_such_room());
    }
    tracing::info!(room = %room, sessions, "room destroyed");
    Ok(Json(json!({"destroyed": room.as_str(), "sessions": sessions})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    nick: String,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/rooms/{room}/members` `{nick, role?}`: adds a user to the
/// member list (what a private room checks), as `member` or `moderator`.
pub async fn add_member(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Body(body): Body<NewMember>,
) -> Result<Response, Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let nick = Name::nick(&body.nick).map_err(|e| proto_error_response(&e))?;
    let role = match body.role.as_deref() {
        None | Some("member") => Role::Member,
        Some("moderator") => Role::Moderator,
        Some(_) => return Err(bad_request("`role` must be member or moderator")),
    };
    match app.store.room(room.key()).await {
        Ok(Some(_)) => {}
        Ok(None) if matches!(app.bus.room_name(room.key()).await, Ok(Some(_))) => {}
        Ok(None) => return Err(no_such_room()),
        Err(_) => return Err(unavailable()),
    }
    if app.store.set_member(room.key(), nick.key(), role).await.is_err() {
        return Err(unavailable());
    }
    app.bus
        .set_moderator(room.key(), nick.key(), role == Role::Moderator)
        .await
        .map_err(|e| proto_error_response(&e))?;
    Ok(Json(json!({"room": room.as_str(), "nick": nick.as_str(), "role": role.as_str()})).into_response())
}

/// `DELETE /api/rooms/{room}/members/{nick}`: removes the user from the
/// member list and kicks its sessions out of the room everywhere.
pub async fn remove_member(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, nick)): Path<(String, String)>,
) -> Result<Response, Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let Ok(nick) = Name::nick(&nick) else { return Err(bad_request("not a valid nick")) };
    let listed = app.store.remove_member(room.key(), nick.key()).await.map_err(|_| unavailable())?;
    let kicked = app.bus.kick(room.key(), nick.key(), "server").await.map_err(|e| proto_error_response(&e))?;
    if !listed && kicked == 0 {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            "not_in_room",
            "that user is neither a member nor in the room",
        ));
    }
    Ok(Json(json!({"room": room.as_str(), "nick": nick.as_str(), "sessions": kicked})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    text: String,
    #[serde(default)]
    from: Option<String>,
}

/// `POST /api/rooms/{room}/messages` `{text, from?}`: the server (or the
/// named user) says something; stored, then delivered, like any message.
pub async fn publish(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Body(body): Body<Publish>,
) -> Result<Response, Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let text = check_text(&body.text, app.config.limits.max_text, false).map_err(|e| proto_error_response(&e))?;
    let from = match body.from.as_deref() {
        None => "server".into(),
        Some(f) => match Name::nick(f) {
            Ok(n) => n.shown().clone(),
            Err(e) => return Err(proto_error_response(&e)),
        },
    };
    let live = app.bus.room_name(room.key()).await.map_err(|e| proto_error_response(&e))?;
    let name = match (live, app.store.room(room.key()).await) {
        (Some(n), _) => n,
        (None, Ok(Some(r))) => r.name,
        (None, Ok(None)) => return Err(no_such_room()),
        (None, Err(_)) => return Err(unavailable()),
    };
    let msg = NewMessage {
        msg_id: Ulid::generate(),
        conv: Conv::Room(room.key().clone()),
        room: Some(name),
        to: None,
        from,
        text,
        attachments: Vec::new(),
        sent_at: now_ms(),
    };
    let (tx, rx) = oneshot::channel();
    let route = Route { waiter: Some(tx), ..Route::default() };
    if app.bus.publish(msg, route).await.is_err() {
        return Err(unavailable());
    }
    match rx.await {
        Ok(Ok(stored)) => Ok((StatusCode::CREATED, Json(json!({"message": stored}))).into_response()),
        Ok(Err(e)) => Err(proto_error_response(&e)),
        Err(_) => Err(unavailable()),
    }
}
