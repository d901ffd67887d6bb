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
    if let Caller::User(user) = &caller
        && user.is_guest()
    {
        // A guest's identity ends with its sessions: a room it created would
        // outlive its moderator. Guests make rooms by joining them.
        return Err(error_response(StatusCode::FORBIDDEN, "forbidden", "guests cannot create rooms here: join one"));
    }
    let exists = || error_response(StatusCode::CONFLICT, "room_exists", "a room of that name exists");
    if app.bus.room_name(name.key()).await.map_err(|e| proto_error_response(&e))?.is_some() {
        return Err(exists());
    }
    // A room that has a history, or that everyone is put in, is somebody's
    // already: a user may not take it over (as a private room, say). The
    // API key may name such a room (it gets the topic, privacy, members).
    if let Caller::User(_) = &caller {
        let auto_join = app.config.rooms.auto_join.iter().any(|r| r.eq_ignore_ascii_case(name.key()));
        if auto_join || app.store.room(name.key()).await.map_err(|_| unavailable())?.is_some() {
            return Err(exists());
        }
    }
    match app.store.create_room(name.key(), name.as_str(), body.topic.trim(), body.private, true).await {
        Ok(true) => {}
        Ok(false) => return Err(error_response(StatusCode::CONFLICT, "room_exists", "a room of that name exists")),
        Err(_) => return Err(unavailable()),
    }
    for m in &members {
        let member = grantee(&app, m).await?;
        if app.store.set_member(name.key(), &member, Role::Member).await.is_err() {
            return Err(unavailable());
        }
        app.bus.admit(name.key(), &member, m.key()).await.map_err(|e| proto_error_response(&e))?;
    }
    if let Caller::User(user) = &caller
        && app.store.set_member(name.key(), &user.id, Role::Moderator).await.is_err()
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
        && !matches!(app.store.member_role(room.key(), &user.id).await, Ok(Some(Role::Moderator)))
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
    #[serde(default)]
    nick: Option<String>,
    /// The site's user id, as site tokens carry it: the surest way to name
    /// a site user (a string or a number).
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    role: Option<String>,
}

/// Who a grant to `nick` is for: the account or site user that owns the
/// nick; if nobody owns it yet, a pending grant that only the site user of
/// that nick will claim (never a guest holding it now, never an account
/// registered later: see `auth::check_free_for_guest`).
async fn grantee(app: &App, nick: &Name) -> Result<String, Response> {
    match app.store.account(nick.key()).await {
        Ok(Some(a)) if a.owner.is_some() => Ok(a.owner.unwrap_or_default()),
        Ok(_) => Ok(crate::ids::pending_grant(nick.key())),
        Err(_) => Err(unavailable()),
    }
}

/// `POST /api/rooms/{room}/members` `{nick | sub, role?}`: adds a user to
/// the member list (what a private room checks), as `member` or
/// `moderator`, and joins its connected sessions to the room.
pub async fn add_member(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Body(body): Body<NewMember>,
) -> Result<Response, Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let (member, nick, sub) = match (&body.nick, &body.sub) {
        (Some(nick), None) => {
            let nick = Name::nick(nick).map_err(|e| proto_error_response(&e))?;
            (grantee(&app, &nick).await?, Some(nick), None)
        }
        (None, Some(sub)) => {
            let sub = match sub {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(bad_request("`sub` must be a string or a number")),
            };
            if sub.is_empty() || sub.len() > crate::auth::MAX_SUB {
                return Err(bad_request("`sub` must be 1 to 128 bytes"));
            }
            // The nick it holds, if it was ever here.
            let nick = match app.store.account_nick_of(&crate::ids::site(&sub)).await {
                Ok(n) => n.and_then(|n| Name::nick(&n).ok()),
                Err(_) => return Err(unavailable()),
            };
            (crate::ids::site(&sub), nick, Some(sub))
        }
        _ => return Err(bad_request("name the user by exactly one of `nick` and `sub`")),
    };
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
    if app.store.set_member(room.key(), &member, role).await.is_err() {
        return Err(unavailable());
    }
    if let Some(nick) = &nick {
        let bus = &app.bus;
        bus.set_moderator(room.key(), nick.key(), role == Role::Moderator)
            .await
            .map_err(|e| proto_error_response(&e))?;
        bus.admit(room.key(), &member, nick.key()).await.map_err(|e| proto_error_response(&e))?;
    }
    let mut body = json!({"room": room.as_str(), "nick": nick.as_ref().map(Name::as_str), "role": role.as_str()});
    if let Some(sub) = sub {
        body["sub"] = json!(sub);
    }
    Ok(Json(body).into_response())
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
    let member = grantee(&app, &nick).await?;
    let listed = app.store.remove_member(room.key(), &member).await.map_err(|_| unavailable())?;
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
    // The server speaks as `server` (a nick nobody may take); a named
    // user's message is theirs (they may edit it) if they own the nick.
    let (from, sender_id): (Arc<str>, Arc<str>) = match body.from.as_deref() {
        None => ("server".into(), crate::ids::SERVER.into()),
        Some(f) => match Name::nick(f) {
            Ok(n) => {
                let user = app.user_of(&n).await.map_err(|e| proto_error_response(&e))?;
                match user {
                    Some(u) => (u.nick, u.id),
                    None => (n.shown().clone(), format!("l-{}", n.key()).into()),
                }
            }
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
        sender_id,
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
