//! Namespace `/max`: the cMaxtalk notification protocol, unchanged.
//!
//! - `join {username, timestamp}` → `listening {conversations}`: the rooms
//!   the user belongs to, all of which it joins; the other members who
//!   listen get `joined {conversation, username}` (from the hub's presence
//!   `join`, so never the joiner).
//! - `talk {conversation, timestamp, messageID}` → the conversation's other
//!   members get `update {username, conversation, timestamp, messageID}`:
//!   an `event` named [`UPDATE`] through the service (not stored, rate
//!   limited, members only), translated back here for each listener.
//!
//! `auth` is `{token}` (or `{nick}`, `{nick, password}`) as on `/`; with
//! guests allowed a client may also connect without `auth` (as cMaxtalk's
//! own client does) and is then the guest `username` names at its `join`.
//! A `username` other than the authenticated nick, or a conversation the
//! user is not in, reaches no one: the sender gets `error`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Inbound;
use super::codec;
use super::link::{self, Link};
use crate::protocol::client::Target;
use crate::protocol::server::Frame;
use crate::protocol::{ErrorCode, FrameId, Name, ProtoError, ServerFrame, encode, now_ms};
use crate::service::{CloseReason, Hello, Outbound, Session};

/// The `event` name that carries a `talk` to the other listeners (web and
/// WebSocket members of the room see it as that `event`).
pub(super) const UPDATE: &str = "maxtalk.update";

pub(super) async fn run(mut link: Link, auth: Option<Value>, ip: IpAddr) {
    let svc = link.svc.clone();
    let mut max = Max { session: None, bucket: bucket(&svc.config.limits), ip };
    let mut out: Option<Outbound> = None;
    if auth.is_some() {
        // Boxed: the hello phase should not stay in the connection's future.
        match Box::pin(open(&link, auth.as_ref(), ip)).await {
            Ok((session, rx)) => {
                max.session = Some(session);
                out = Some(rx);
            }
            Err(e) => return link.refuse(&e),
        }
    } else if !svc.config.auth.guests {
        let e = ProtoError::new(ErrorCode::Unauthorized, "bring a site token: io(url + \"/max\", {auth: {token}})");
        return link.refuse(&e);
    }
    link.accept();
    let reading = svc.lifecycle.readers.token();
    let reason = loop {
        let handle = max.session.as_ref().map(|s| s.handle().clone());
        let active = handle.is_some();
        tokio::select! {
            biased;
            _ = async { handle.as_ref().unwrap().closed().cancelled().await }, if active => {
                break handle.and_then(|h| h.close_reason()).unwrap_or(CloseReason::Shutdown);
            }
            _ = svc.lifecycle.stop_reading.cancelled() => break CloseReason::Shutdown,
            batch = async { out.as_mut().unwrap().recv().await }, if out.is_some() => {
                if let Some(handle) = &handle
                    && !link.forward(batch, handle, translate)
                {
                    handle.close(CloseReason::SlowConsumer);
                }
            }
            rooms = async { handle.as_ref().unwrap().admitted().await }, if active => {
                // Rooms the site added the user to: listened to as well.
                if let Some(s) = max.session.as_mut() {
                    let rooms: Vec<Name> = rooms.iter().filter_map(|r| Name::room(r).ok()).collect();
                    Box::pin(s.join_all(&rooms, true)).await;
                }
            }
            inbound = link.inbound.recv() => {
                let Some(inbound) = inbound else { break CloseReason::Normal };
                if let Some(rx) = Box::pin(max.handle(&mut link, *inbound)).await {
                    out = Some(rx);
                }
            }
        }
    };
    drop(reading);
    match (max.session.take(), out) {
        (Some(session), Some(out)) => {
            Box::pin(async move {
                let handle = session.handle().clone();
                session.end(reason).await;
                link.finish(out, &handle, reason, translate).await;
            })
            .await
        }
        _ => link.socket.data.remove(link.ns),
    }
}

async fn open(link: &Link, auth: Option<&Value>, ip: IpAddr) -> Result<(Session, Outbound), ProtoError> {
    link.svc.open(link::hello(auth)?, ip).await
}

struct Max {
    session: Option<Session>,
    /// `talk` is rate-limited like `event` on `/`.
    bucket: DefaultDirectRateLimiter,
    ip: IpAddr,
}

#[derive(Deserialize)]
struct Join {
    username: String,
}

#[derive(Deserialize)]
struct Talk {
    conversation: String,
    #[serde(default)]
    timestamp: Value,
    #[serde(default, rename = "messageID")]
    message_id: Value,
}

impl Max {
    /// Handles one event; returns the session's queue if this opened it.
    async fn handle(&mut self, link: &mut Link, inbound: Inbound) -> Option<Outbound> {
        let (name, args, ack) = match inbound {
            Inbound::Event { name, args, ack } => (name, args, ack),
            Inbound::Refused { error, ack } => {
                self.respond(link, ack, &encode(&ServerFrame::error(ack_id(ack).as_ref(), &error)));
                return None;
            }
        };
        if let Some(s) = &self.session {
            s.handle().heard(now_ms());
        }
        let id = ack_id(ack);
        let arg = args.into_iter().next().unwrap_or(Value::Null);
        let mut opened = None;
        let result = match name.as_str() {
            "join" => match serde_json::from_value::<Join>(arg) {
                Ok(j) => self.join(link, &j.username, &mut opened).await.map(|conversations| {
                    let id = id.as_ref().map(|i| format!(",\"id\":{}", serde_json::to_string(i).unwrap_or_default()));
                    let json = format!(
                        "{{\"type\":\"listening\"{},\"conversations\":{}}}",
                        id.unwrap_or_default(),
                        Value::from(conversations)
                    );
                    Frame::from_json(json)
                }),
                Err(e) => Err(ProtoError::invalid(format!("join {{username, timestamp}}: {e}"))),
            },
            "talk" => match serde_json::from_value::<Talk>(arg) {
                Ok(t) => self.talk(t).await.map(|()| encode(&ServerFrame::ack(id.as_ref()))),
                Err(e) => Err(ProtoError::invalid(format!("talk {{conversation, timestamp, messageID}}: {e}"))),
            },
            other => {
                Err(ProtoError::new(ErrorCode::UnknownType, format!("`{other}` is not a /max event: join or talk")))
            }
        };
        let reply = match result {
            // `talk` without a callback has no answer.
            Ok(frame) if name == "talk" && ack.is_none() => {
                drop(frame);
                None
            }
            Ok(frame) => Some(frame),
            Err(e) => {
                link.svc.metrics.error(e.code);
                Some(encode(&ServerFrame::error(id.as_ref(), &e)))
            }
        };
        if let Some(frame) = reply {
            self.respond(link, ack, &frame);
        }
        opened
    }

    /// Answers: through the session's queue once there is one (so that the
    /// answer comes after everything queued before it), else at once.
    fn respond(&self, link: &mut Link, ack: Option<u64>, frame: &Frame) {
        match &self.session {
            Some(s) => {
                if let Some(a) = ack {
                    link.await_ack(a);
                }
                s.handle().send(frame);
            }
            None => {
                link.reply(ack, frame);
            }
        }
    }

    /// `join`: opens the guest session if there is none yet, joins every
    /// room the user belongs to; returns them (`listening`).
    async fn join(
        &mut self,
        link: &Link,
        username: &str,
        opened: &mut Option<Outbound>,
    ) -> Result<Vec<String>, ProtoError> {
        let nick = Name::nick(username)?;
        if self.session.is_none() {
            let hello = Hello { nick: Some(nick.clone()), password: None, token: None };
            let (session, rx) = link.svc.open(hello, self.ip).await?;
            tracing::info!(session = session.handle().id, nick = %nick, "socket.io /max: connected");
            self.session = Some(session);
            *opened = Some(rx);
        }
        let Some(session) = self.session.as_mut() else { return Err(ProtoError::internal()) };
        if session.handle().nick().key() != nick.key() {
            return Err(ProtoError::new(ErrorCode::Forbidden, "`username` must be the authenticated user's nick"));
        }
        for room in session.own_rooms().await? {
            if session.handle().joined_room(room.key()).is_none()
                && let Err(e) = Box::pin(session.join(None, &room, None, Some(0))).await
            {
                tracing::debug!(room = %room, code = ?e.code, "socket.io /max: not joined");
            }
        }
        Ok(session.handle().rooms().iter().map(|r| r.name.to_string()).collect())
    }

    /// `talk`: an `update` for the conversation's other members.
    async fn talk(&mut self, t: Talk) -> Result<(), ProtoError> {
        let Some(session) = self.session.as_mut() else {
            return Err(ProtoError::new(ErrorCode::Unauthorized, "send `join` first"));
        };
        if self.bucket.check().is_err() {
            return Err(ProtoError::new(ErrorCode::RateLimited, "too many events: slow down"));
        }
        let room = Name::room(&t.conversation)?;
        let data = json!({ "timestamp": t.timestamp, "messageID": t.message_id });
        session.event(Target::Room(room), UPDATE, &data).await
    }
}

fn ack_id(ack: Option<u64>) -> Option<FrameId> {
    ack.map(|a| FrameId::Int(a as i64))
}

fn bucket(l: &crate::config::Limits) -> DefaultDirectRateLimiter {
    let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(nz(l.rate_per_sec)).allow_burst(nz(l.burst)))
}

/// What a `/max` listener sees of the session's frames: others' joins as
/// `joined`, their talk as `update`, errors and the shutdown notice; the
/// rest (messages, typing, …) is not cMaxtalk's.
fn translate(ty: &str, frame: &str) -> Option<String> {
    let path = "/max";
    match ty {
        "presence" => {
            let p: Value = serde_json::from_str(frame).ok()?;
            (p["event"] == "join").then(|| {
                let joined = json!({ "conversation": p["room"], "username": p["nick"] });
                codec::event(path, "joined", &joined.to_string())
            })
        }
        "event" => {
            let e: Value = serde_json::from_str(frame).ok()?;
            (e["name"] == UPDATE && e["room"].is_string()).then(|| {
                let update = json!({
                    "username": e["nick"],
                    "conversation": e["room"],
                    "timestamp": e["data"]["timestamp"],
                    "messageID": e["data"]["messageID"],
                });
                codec::event(path, "update", &update.to_string())
            })
        }
        "error" | "notice" | "listening" => Some(codec::event(path, ty, frame)),
        _ => None,
    }
}
