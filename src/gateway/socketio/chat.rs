//! Namespace `/`: the chat protocol as Socket.IO events. The handshake's
//! `auth` is `hello`; each client event is a frame of its name's `type`
//! whose fields are the event's argument, handled by the WebSocket door's
//! [`Conn`] (the same parse, rate buckets and service calls); each server
//! frame is an event of its `type`, or the ack callback's argument when it
//! answers an event that has one.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::Inbound;
use super::link::{self, Link};
use crate::gateway::ws::dispatch::Conn;
use crate::protocol::client::ParseError;
use crate::protocol::{ClientFrame, FrameId, ProtoError, now_ms};
use crate::service::{CloseReason, Outbound};

/// Every frame becomes an event of its `type`.
fn as_event(path: &'static str) -> impl FnMut(&str, &str) -> Option<String> {
    move |ty, frame| Some(super::codec::event(path, ty, frame))
}

pub(super) async fn run(mut link: Link, auth: Option<Value>, ip: IpAddr) {
    // Boxed: the hello phase is short; the future the connection keeps for
    // its whole life should not hold it (nor the end, below).
    let Some((mut conn, mut out)) = Box::pin(open(&mut link, auth, ip)).await else { return };
    let svc = link.svc.clone();
    let handle = conn.handle().clone();
    let closed = handle.closed().clone();
    let reading = svc.lifecycle.readers.token();
    let reason = loop {
        tokio::select! {
            biased;
            _ = closed.cancelled() => break handle.close_reason().unwrap_or(CloseReason::Shutdown),
            _ = svc.lifecycle.stop_reading.cancelled() => break CloseReason::Shutdown,
            batch = out.recv() => {
                if !link.forward(batch, &handle, as_event(link.path())) {
                    handle.close(CloseReason::SlowConsumer);
                }
            }
            rooms = handle.admitted() => Box::pin(conn.join_admitted(rooms)).await,
            inbound = link.inbound.recv() => {
                let Some(inbound) = inbound else { break CloseReason::Normal };
                handle.heard(now_ms());
                let parsed = frame(&mut link, *inbound);
                Box::pin(conn.request(parsed)).await;
            }
        }
    };
    drop(reading);
    Box::pin(async move {
        conn.session.end(reason).await;
        let path = link.path();
        link.finish(out, &handle, reason, as_event(path)).await;
    })
    .await;
}

/// The handshake's `auth` as `hello`: the session, welcomed and joined to
/// the auto-join rooms; or `connect_error`.
async fn open(link: &mut Link, auth: Option<Value>, ip: IpAddr) -> Option<(Conn, Outbound)> {
    let svc = link.svc.clone();
    let hello = match link::hello(auth.as_ref()) {
        Ok(h) => h,
        Err(e) => {
            link.refuse(&e);
            return None;
        }
    };
    let opened = tokio::select! {
        r = svc.open(hello, ip) => r,
        _ = svc.lifecycle.stop_reading.cancelled() => Err(ProtoError::new(
            crate::protocol::ErrorCode::Unavailable, "the server is shutting down")),
    };
    let (session, out) = match opened {
        Ok(ok) => ok,
        Err(e) => {
            link.refuse(&e);
            return None;
        }
    };
    link.accept();
    let mut conn = Conn::new(session);
    tracing::info!(session = conn.handle().id, nick = %conn.handle().nick(), %ip, "socket.io: connected");
    conn.welcome(None).await;
    Some((conn, out))
}

/// The frame a client event stands for: `emit("say", {room, text}, cb)` is
/// `{"type":"say","room":…,"text":…,"id":<ack id>}`. Without a callback the
/// event carries no `id` (one in the argument is dropped: acks are how a
/// Socket.IO client pairs replies).
fn frame(link: &mut Link, inbound: Inbound) -> Result<ClientFrame, ParseError> {
    let (name, args, ack) = match inbound {
        Inbound::Event { name, args, ack } => (name, args, ack),
        Inbound::Refused { error, ack } => {
            if let Some(a) = ack {
                link.await_ack(a);
            }
            return Err(ParseError { id: ack.map(|a| FrameId::Int(a as i64)), error });
        }
    };
    let id = ack.map(|a| FrameId::Int(a as i64));
    if let Some(a) = ack {
        link.await_ack(a);
    }
    let mut fields = match args.into_iter().next() {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            let error = ProtoError::invalid("an event's argument must be an object: emit(\"say\", {room, text})");
            return Err(ParseError { id, error });
        }
    };
    fields.insert("type".into(), Value::String(name));
    match ack {
        Some(a) => fields.insert("id".into(), Value::from(a)),
        None => fields.remove("id"),
    };
    ClientFrame::from_value(Value::Object(fields))
}

#[cfg(test)]
mod sizes {
    fn ret3<A, B, C, Fut, F: FnOnce(A, B, C) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Each namespace connection keeps its task's future for its whole
    /// life: its size is memory per connection.
    #[test]
    fn namespace_futures_are_small() {
        let chat = ret3(&super::run);
        let max = ret3(&super::super::max::run);
        eprintln!("chat::run {chat}, max::run {max}, Link {}", std::mem::size_of::<super::Link>());
        assert!(chat < 1536 && max < 1536, "chat {chat}, max {max}");
    }
}
