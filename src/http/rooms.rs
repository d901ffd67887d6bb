//! Rooms over HTTP: list, create, status, destroy (users and API keys);
//! add and remove members, publish (API keys). Parse, call the service,
//! encode.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::caller::{api_key, caller};
use super::error::ApiError;
use super::{App, Body};
use crate::model::Role;
use crate::protocol::{ErrorCode, Name};
use crate::service::rooms::{Grantee, NewRoom};

type Result<T> = std::result::Result<T, ApiError>;

fn room_name(raw: &str) -> Result<Name> {
    Ok(Name::room(raw)?)
}

/// `GET /api/rooms`: named and live rooms; private ones only for API keys.
pub(crate) async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let rooms: Vec<serde_json::Value> = (app.list_rooms(&caller).await?.into_iter())
        .map(|r| json!({"name": r.name, "topic": r.topic, "members": r.members, "private": r.private}))
        .collect();
    Ok(Json(json!({"rooms": rooms})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRoomBody {
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
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(body): Body<NewRoomBody>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let name = room_name(&body.name)?;
    let members = body.members.iter().map(|m| Name::nick(m)).collect::<std::result::Result<Vec<_>, _>>()?;
    let room = NewRoom { name, topic: body.topic, private: body.private, members };
    app.create_room(&caller, &room).await?;
    let body = json!({"name": room.name.as_str(), "topic": room.topic.trim(), "private": room.private});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/rooms/{room}`: name, topic, privacy, latest `seq`, members online.
pub(crate) async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let room = room_name(&room)?;
    let s = app.room_status(&caller, &room).await?;
    Ok(Json(json!({
        "name": s.view.name,
        "topic": s.view.topic,
        "private": s.private,
        "seq": s.seq,
        "count": s.view.members.len(),
        "members": s.view.members,
    }))
    .into_response())
}

/// `PATCH /api/rooms/{room}` with a `mode` frame's `set` object: changes
/// the room's settings (API keys, site admins, or a user who moderates the
/// room); members get a `mode` frame. → `{room, changes}`.
pub(crate) async fn patch(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Body(body): Body<serde_json::Value>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let room = room_name(&room)?;
    let serde_json::Value::Object(set) = body else {
        return Err(crate::protocol::ProtoError::invalid("the body must be an object of settings").into());
    };
    let change = crate::protocol::client::ModeSet::parse(&set)?;
    let changes = app.patch_room(&caller, &room, change).await?;
    Ok(Json(json!({"room": room.as_str(), "changes": changes})).into_response())
}

/// `DELETE /api/rooms/{room}`: members are told (`left`, reason
/// `destroyed`) and removed; the messages stay for transcripts. API keys,
/// or a user who moderates the room.
pub(crate) async fn destroy(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Response> {
    let caller = caller(&app, &headers).await?;
    let room = room_name(&room)?;
    let sessions = app.destroy_room(&caller, &room).await?;
    Ok(Json(json!({"destroyed": room.as_str(), "sessions": sessions})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMember {
    #[serde(default)]
    nick: Option<String>,
    /// The site's user id, as site tokens carry it: the surest way to name
    /// a site user (a string or a number).
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/rooms/{room}/members` `{nick | sub, role?}`: adds a user to
/// the member list (what a private room checks), as `member` or
/// `moderator`, and joins its connected sessions to the room.
pub(crate) async fn add_member(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Body(body): Body<NewMember>,
) -> Result<Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let who = match (&body.nick, &body.sub) {
        (Some(nick), None) => Grantee::Nick(Name::nick(nick)?),
        (None, Some(sub)) => {
            let sub = match sub {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(ApiError::invalid("`sub` must be a string or a number")),
            };
            if sub.is_empty() || sub.len() > crate::auth::MAX_SUB {
                return Err(ApiError::invalid("`sub` must be 1 to 128 bytes"));
            }
            Grantee::Sub(sub)
        }
        _ => return Err(ApiError::invalid("name the user by exactly one of `nick` and `sub`")),
    };
    let role = match body.role.as_deref() {
        None | Some("member") => Role::Member,
        Some("moderator") => Role::Moderator,
        Some(_) => return Err(ApiError::invalid("`role` must be member or moderator")),
    };
    let nick = app.add_member(&room, &who, role).await?;
    let mut body = json!({"room": room.as_str(), "nick": nick.as_ref().map(Name::as_str), "role": role.as_str()});
    if let Grantee::Sub(sub) = who {
        body["sub"] = json!(sub);
    }
    Ok(Json(body).into_response())
}

/// `DELETE /api/rooms/{room}/members/{nick}`: removes the user from the
/// member list and kicks its sessions out of the room everywhere.
pub(crate) async fn remove_member(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((room, nick)): Path<(String, String)>,
) -> Result<Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let Ok(nick) = Name::nick(&nick) else { return Err(ApiError::invalid("not a valid nick")) };
    let kicked = app.remove_member(&room, &nick).await.map_err(|e| match e.code {
        ErrorCode::NotInRoom => ApiError::from(e).with_status(StatusCode::NOT_FOUND),
        _ => e.into(),
    })?;
    Ok(Json(json!({"room": room.as_str(), "nick": nick.as_str(), "sessions": kicked})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    #[serde(default)]
    text: String,
    #[serde(default)]
    from: Option<String>,
    /// Upload ids (made with an API key, or by `from`).
    #[serde(default)]
    attachments: Vec<String>,
    /// The message this one answers (a message of the room).
    #[serde(default)]
    reply_to: Option<String>,
}

/// `POST /api/rooms/{room}/messages` `{text, from?, attachments?, reply_to?}`: the server (or the
/// named user) says something; stored, then delivered, like any message.
pub(crate) async fn publish(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Body(body): Body<Publish>,
) -> Result<Response> {
    api_key(&app, &headers).await?;
    let room = room_name(&room)?;
    let from = body.from.as_deref().map(Name::nick).transpose()?;
    let reply_to = match body.reply_to.as_deref() {
        Some(id) => {
            Some(ulid::Ulid::from_string(id).map_err(|_| ApiError::invalid("`reply_to` must be a message id"))?)
        }
        None => None,
    };
    let stored = app.publish_to_room(&room, &body.text, from.as_ref(), &body.attachments, reply_to).await?;
    Ok((StatusCode::CREATED, Json(json!({"message": stored}))).into_response())
}
