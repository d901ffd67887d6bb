//! One WebSocket connection (after `http`'s upgrade): the `hello` phase,
//! then a reader (this task: parse, rate-limit, call the service, see
//! [`dispatch`])
//! and a writer task (drain the outbound queue in batches, one flush per
//! batch; ping; close). Whoever decides to close — the reader, the hub, the
//! writer's idle check or shutdown — says so through the session's single
//! close signal, and the writer sends the close frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite;

mod dispatch;

use crate::protocol::client::ParseError;
use crate::protocol::server::Frame;
use crate::protocol::{ClientFrame, ErrorCode, ProtoError, Request, ServerFrame, encode, now_ms};
use crate::service::{CloseReason, Hello, Service, SessionHandle};
use dispatch::Conn;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Most frames the writer takes from its queue per flush.
const WRITE_BATCH: usize = 128;
/// How long closing may take against a peer that does not read.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a close frame that ends the connection for the peer's fault
/// (a slow reader, a protocol error) may take to get through: what the
/// socket already took is ahead of it.
const CLOSE_WAIT_SLOW: Duration = Duration::from_secs(10);

/// The life of one connection, from upgrade to close. `_permit` is its
/// place under the connection caps, held until the end.
pub(crate) async fn serve<P: Send>(app: Arc<Service>, socket: WebSocket, addr: SocketAddr, _permit: P) {
    let _open = app.metrics.connection_opened();
    let (mut sink, mut stream) = socket.split();
    // Boxed: the hello phase (its timer included) is short; the memory the
    // connection keeps for its whole life should not include it.
    let identified = Box::pin(async {
        tokio::select! {
            r = identify(&app, addr.ip(), &mut sink, &mut stream) => r,
            _ = tokio::time::sleep(app.config.limits.hello_timeout) => Err(CloseReason::Policy),
            _ = app.lifecycle.stop_reading.cancelled() => Err(CloseReason::Shutdown),
        }
    })
    .await;
    let (mut conn, rx, hello_id) = match identified {
        Ok(ok) => ok,
        Err(reason) => {
            if reason == CloseReason::Policy {
                tracing::info!(%addr, "closed: no hello within limits.hello_timeout (1008)");
            } else {
                tracing::debug!(%addr, reason = reason.text(), "closed before hello");
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, Box::pin(send_close(&mut sink, reason))).await;
            return;
        }
    };
    let session = conn.handle().clone();
    tracing::info!(session = session.id, nick = %session.nick(), %addr, "connected");
    let limits = &app.config.limits;
    let writer =
        app.lifecycle.tracker.spawn(write_loop(sink, rx, session.clone(), (limits.ping_interval, limits.idle_timeout)));
    Box::pin(conn.welcome(hello_id.as_ref())).await;
    let reading = app.lifecycle.readers.token();
    let reason = read_loop(&mut conn, &mut stream, &app).await;
    drop(reading);
    Box::pin(conn.session.end(reason)).await;
    let reason = session.close_reason().unwrap_or(reason);
    tracing::info!(session = session.id, nick = %session.nick(), reason = reason.text(), "disconnected");
    Box::pin(linger(writer, &mut stream)).await;
}

/// Waits for the writer to send the close frame while reading (and
/// dropping) whatever the peer still sends, then for the peer's close
/// reply, briefly. A socket closed with unread input is reset, and the
/// reset can destroy the close frame before the peer reads it.
async fn linger(mut writer: tokio::task::JoinHandle<()>, stream: &mut Stream) {
    let drained = async { while let Some(Ok(_)) = stream.next().await {} };
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut writer => {
            let _ = tokio::time::timeout(CLOSE_WAIT, &mut drained).await;
        }
        _ = &mut drained => {
            let _ = writer.await;
        }
    }
}

/// Reads frames until a valid `hello` registers the session. Everything
/// else gets its error reply and the connection stays open.
async fn identify(
    app: &Arc<Service>,
    ip: std::net::IpAddr,
    sink: &mut Sink,
    stream: &mut Stream,
) -> Result<(Conn, mpsc::Receiver<Frame>, Option<crate::protocol::FrameId>), CloseReason> {
    loop {
        let text = match next_frame(stream).await? {
            Incoming::Text(t) => t,
            Incoming::Binary => {
                let e = binary_error();
                app.metrics.error(e.code);
                send_direct(sink, &encode(&ServerFrame::error(None, &e))).await?;
                continue;
            }
            Incoming::Other => continue,
        };
        let reply = match ClientFrame::parse(&text) {
            Err(ParseError { id, error }) => {
                app.metrics.error(error.code);
                encode(&ServerFrame::error(id.as_ref(), &error))
            }
            Ok(ClientFrame { id, request: Request::Hello { nick, password, token } }) => {
                match app.open(Hello { nick, password, token }, ip).await {
                    Ok((session, rx)) => return Ok((Conn::new(session), rx, id)),
                    Err(e) => {
                        app.metrics.error(e.code);
                        encode(&ServerFrame::error(id.as_ref(), &e))
                    }
                }
            }
            Ok(ClientFrame { id, .. }) => {
                let e = ProtoError::new(ErrorCode::Unauthorized, "send `hello` first");
                app.metrics.error(e.code);
                encode(&ServerFrame::error(id.as_ref(), &e))
            }
        };
        send_direct(sink, &reply).await?;
    }
}

/// Handles frames until the connection should end, and says why.
async fn read_loop(conn: &mut Conn, stream: &mut Stream, app: &Service) -> CloseReason {
    let session = conn.handle().clone();
    let closed = session.closed().clone();
    loop {
        let incoming = tokio::select! {
            biased;
            _ = closed.cancelled() => return session.close_reason().unwrap_or(CloseReason::Shutdown),
            _ = app.lifecycle.stop_reading.cancelled() => return CloseReason::Shutdown,
            rooms = session.admitted() => {
                Box::pin(conn.join_admitted(rooms)).await;
                continue;
            }
            incoming = next_frame(stream) => incoming,
        };
        session.heard(now_ms());
        match incoming {
            // Boxed: a frame's handling lives only while it runs.
            Ok(Incoming::Text(text)) => Box::pin(conn.frame(&text)).await,
            Ok(Incoming::Binary) => conn.reply_error(None, &binary_error()),
            Ok(Incoming::Other) => {}
            Err(reason) => return reason,
        }
    }
}

enum Incoming {
    Text(axum::extract::ws::Utf8Bytes),
    Binary,
    /// Ping, pong: liveness only (tungstenite answers pings itself).
    Other,
}

/// The next data frame, or why the connection is over.
async fn next_frame(stream: &mut Stream) -> Result<Incoming, CloseReason> {
    match stream.next().await {
        Some(Ok(Message::Text(t))) => Ok(Incoming::Text(t)),
        Some(Ok(Message::Binary(_))) => Ok(Incoming::Binary),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(Incoming::Other),
        Some(Ok(Message::Close(_))) | None => Err(CloseReason::Normal),
        Some(Err(e)) => Err(e.into_inner().downcast_ref::<tungstenite::Error>().map_or(CloseReason::Normal, why)),
    }
}

/// The close code for a read error: the peer's fault gets its code (1009,
/// 1002, 1007); a connection that broke or ended gets none.
fn why(e: &tungstenite::Error) -> CloseReason {
    use tungstenite::error::ProtocolError as P;
    match e {
        tungstenite::Error::Capacity(_) => CloseReason::TooBig,
        tungstenite::Error::Utf8(_) => CloseReason::InvalidPayload,
        tungstenite::Error::Protocol(P::ResetWithoutClosingHandshake | P::SendAfterClosing) => CloseReason::Normal,
        tungstenite::Error::Protocol(_) => CloseReason::Protocol,
        _ => CloseReason::Normal,
    }
}

fn binary_error() -> ProtoError {
    ProtoError::bad_frame("binary frames are not accepted: send JSON in text frames")
}

async fn send_direct(sink: &mut Sink, frame: &Frame) -> Result<(), CloseReason> {
    sink.send(Message::Text(frame.text())).await.map_err(|_| CloseReason::Normal)
}

async fn send_close(sink: &mut Sink, reason: CloseReason) {
    if reason == CloseReason::Shutdown {
        let notice = encode(&ServerFrame::Notice {
            code: "shutdown",
            message: "the server is restarting; reconnect and resume with join … since",
        });
        let _ = sink.feed(Message::Text(notice.text())).await;
    }
    let frame = CloseFrame { code: reason.code(), reason: reason.text().into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// The writer task: drains the session's queue, many frames per flush;
/// pings; checks the peer's silence; and sends the close frame.
async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    session: Arc<SessionHandle>,
    (ping_interval, idle_timeout): (Duration, Duration),
) {
    let closed = session.closed().clone();
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let idle_ms = idle_timeout.as_millis() as i64;
    loop {
        // A fresh Vec per wake-up: an idle connection then holds no batch
        // buffer (one allocation per batch, not per frame).
        let mut batch = Vec::new();
        tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    break;
                }
                let bytes: usize = batch.iter().map(|f| f.len()).sum();
                let write = async {
                    for frame in batch.drain(..) {
                        sink.feed(Message::Text(frame.text())).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    biased;
                    _ = closed.cancelled() => break,
                    r = write => if r.is_err() {
                        session.close(CloseReason::Normal);
                        return;
                    },
                }
                // Written: these bytes no longer count against the budget.
                session.unqueued(bytes);
            }
            _ = ping.tick() => {
                if session.silent_for(now_ms()) > idle_ms {
                    session.close(CloseReason::Idle);
                } else if sink.send(Message::Ping(Default::default())).await.is_err() {
                    session.close(CloseReason::Normal);
                    return;
                }
            }
        }
    }
    // Closed by someone. Nobody set a reason only when the whole server is
    // closing (its token is this session's parent).
    let reason = session.close_reason().unwrap_or(CloseReason::Shutdown);
    let deliver_queued = matches!(reason, CloseReason::Shutdown | CloseReason::Normal);
    let wait = if deliver_queued {
        CLOSE_WAIT
    } else {
        // The close frame goes past everything still queued (dropped here,
        // which frees it at once); only what the socket already took is
        // ahead of it. A slow reader still gets to read it, if it reads.
        rx.close();
        while rx.try_recv().is_ok() {}
        session.unqueued(usize::MAX);
        CLOSE_WAIT_SLOW
    };
    let _ = tokio::time::timeout(
        wait,
        Box::pin(async {
            if deliver_queued {
                // Deliver what was queued before the close (acks of messages
                // that were stored), then close.
                while let Ok(frame) = rx.try_recv() {
                    if sink.feed(Message::Text(frame.text())).await.is_err() {
                        return;
                    }
                }
            }
            if reason != CloseReason::Normal {
                send_close(&mut sink, reason).await;
            }
            let _ = sink.close().await;
        }),
    )
    .await;
}

#[cfg(test)]
mod sizes {
    /// The size of the future an async fn returns, from its type alone.
    fn ret4<A, B, C, D, Fut, F: FnOnce(A, B, C, D) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Each connection keeps its reader and writer futures for its whole
    /// life: their size is memory per connection. Keep them small (rarely
    /// used, large states belong in a Box).
    #[test]
    fn connection_futures_are_small() {
        let serve = ret4(&super::serve::<crate::http::conns::ConnPermit>);
        let write = ret4(&super::write_loop);
        eprintln!("serve future: {serve} bytes; write_loop future: {write} bytes");
        eprintln!(
            "Conn {} Identity {} limiter {} Sink {} Stream {} WebSocket {} Message {}",
            std::mem::size_of::<super::Conn>(),
            std::mem::size_of::<crate::model::Identity>(),
            std::mem::size_of::<governor::DefaultDirectRateLimiter>(),
            std::mem::size_of::<super::Sink>(),
            std::mem::size_of::<super::Stream>(),
            std::mem::size_of::<axum::extract::ws::WebSocket>(),
            std::mem::size_of::<axum::extract::ws::Message>(),
        );
        assert!(serve < 2048 && write < 1024, "serve {serve}, write_loop {write}");
    }
}
