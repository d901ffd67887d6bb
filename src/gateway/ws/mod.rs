//! One WebSocket connection (after `http`'s handshake), served by one task:
//! the `hello` phase, then one loop that reads frames (parse, rate-limit,
//! call the service, see [`dispatch`]) and writes the session's outbound
//! queue (in batches, one vectored write per batch, see [`outbox`]), pings
//! and checks the peer's silence; then the close. Whoever decides to close —
//! the loop, the hub, the idle check or shutdown — says so through the
//! session's single close signal, and this task sends the close frame.
//!
//! One task rather than a reader and a writer: an idle connection keeps one
//! future and one task cell instead of two, and the socket is not split (no
//! lock between halves). While a frame is handled the queue waits (handling
//! never awaits the queue itself: fan-out is `try_send`); while a batch is
//! being written nothing is read (a peer that does not read is not read).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

pub(crate) mod dispatch;
pub(crate) mod handshake;
mod outbox;

use crate::protocol::client::ParseError;
use crate::protocol::server::Frame;
use crate::protocol::{ClientFrame, ErrorCode, ProtoError, Request, ServerFrame, encode, now_ms};
use crate::service::{CloseReason, Hello, Outbound, Service, SessionHandle};
use dispatch::Conn;
use outbox::Outbox;

/// The upgraded connection.
type Socket = WebSocketStream<outbox::Gate>;

/// How long closing may take against a peer that does not read.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a close frame that ends the connection for the peer's fault
/// (a slow reader, a protocol error) may take to get through: what the
/// socket already took is ahead of it.
const CLOSE_WAIT_SLOW: Duration = Duration::from_secs(10);

/// The life of one connection, from the handshake's answer to the close.
/// `permit` is its place under the connection caps, held until the end.
///
/// Not an `async fn`: that would keep each argument twice in the future
/// (as given, and moved into the body), and the connection keeps its
/// future for its whole life.
#[allow(clippy::manual_async_fn)] // see above: on purpose
pub(crate) fn serve<P: Send>(
    app: Arc<Service>,
    upgrade: hyper::upgrade::OnUpgrade,
    addr: SocketAddr,
    permit: P,
) -> impl Future<Output = ()> + Send {
    async move {
        let _open = app.metrics.connection_opened();
        let mut socket = match upgrade.await {
            Ok(upgraded) => {
                let gate = outbox::Gate::new(TokioIo::new(upgraded));
                let l = &app.config.limits;
                let config = WebSocketConfig::default()
                    .read_buffer_size(l.ws_read_buffer)
                    .write_buffer_size(l.ws_write_buffer)
                    .max_message_size(Some(l.max_frame_bytes))
                    .max_frame_size(Some(l.max_frame_bytes));
                // Boxed: setting the stream up is a future as large as the
                // stream itself.
                Box::pin(WebSocketStream::from_raw_socket(gate, Role::Server, Some(config))).await
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "upgrade failed");
                return;
            }
        };
        // Boxed: the hello phase (its timer included) is short.
        let Some((mut conn, mut rx)) = Box::pin(hello(&app, addr, &mut socket)).await else { return };
        let session = conn.handle().clone();
        let reading = app.lifecycle.readers.token();
        let mut outbox = Outbox::default();
        let (reason, socket_done) = match run(&mut conn, &mut socket, &mut rx, &mut outbox, &app).await {
            Ok(reason) => (reason, false),
            Err(reason) => (reason, true),
        };
        drop(reading);
        Box::pin(conn.session.end(reason)).await;
        let reason = session.close_reason().unwrap_or(reason);
        tracing::info!(session = session.id, nick = %session.nick(), reason = reason.text(), "disconnected");
        Box::pin(close(socket, rx, outbox, &session, socket_done)).await;
        drop(permit);
    }
}

/// The hello phase: the session identified (within
/// `limits.hello_timeout`) and welcomed; or the connection closed.
async fn hello(app: &Arc<Service>, addr: SocketAddr, socket: &mut Socket) -> Option<(Conn, Outbound)> {
    let identified = tokio::select! {
        r = identify(app, addr.ip(), socket) => r,
        _ = tokio::time::sleep(app.config.limits.hello_timeout) => Err(CloseReason::Policy),
        _ = app.lifecycle.stop_reading.cancelled() => Err(CloseReason::Shutdown),
    };
    let (mut conn, rx, hello_id) = match identified {
        Ok(ok) => ok,
        Err(reason) => {
            if reason == CloseReason::Policy {
                tracing::info!(%addr, "closed: no hello within limits.hello_timeout (1008)");
            } else {
                tracing::debug!(%addr, reason = reason.text(), "closed before hello");
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, send_close(socket, reason)).await;
            return None;
        }
    };
    let session = conn.handle();
    tracing::info!(session = session.id, nick = %session.nick(), %addr, "connected");
    conn.welcome(hello_id.as_ref()).await;
    Some((conn, rx))
}

/// What the socket did.
enum Io {
    /// A frame came in (or the connection ended, and why).
    Read(Result<Incoming, CloseReason>),
    /// The outbox was written (its payload bytes), or the socket failed.
    Wrote(std::io::Result<usize>),
}

/// The socket's next event: the outbox written (if it holds a batch), or a
/// frame read (reading goes on while a batch waits for the peer).
async fn io(socket: &mut Socket, outbox: &mut Outbox) -> Io {
    std::future::poll_fn(|cx| {
        if !outbox.is_empty()
            && let Poll::Ready(wrote) = outbox.poll_write(socket, cx)
        {
            return Poll::Ready(Io::Wrote(wrote));
        }
        socket.poll_next_unpin(cx).map(|m| Io::Read(incoming(m)))
    })
    .await
}

/// Reads and writes until the connection should end, and says why: `Ok`
/// when this side decided, `Err` when the socket is done (the peer closed
/// it or it broke), so that nothing more is written to it but the close.
async fn run(
    conn: &mut Conn,
    socket: &mut Socket,
    rx: &mut Outbound,
    outbox: &mut Outbox,
    app: &Service,
) -> Result<CloseReason, CloseReason> {
    let session = conn.handle().clone();
    let limits = &app.config.limits;
    let idle_ms = limits.idle_timeout.as_millis() as i64;
    // A ping at each nudge (once per `limits.ping_interval`, at a point of
    // the interval that depends on the session), the first one at the
    // first nudge: within an interval of the start, as with a timer of its
    // own. Not twice within half an interval (a nudge handled late must
    // not make the next one skip its ping: that would leave two intervals
    // without one, which an `idle_timeout` under two intervals would close).
    let ping_ms = (limits.ping_interval / 2).as_millis() as i64;
    let mut pinged = now_ms() - ping_ms;
    loop {
        // Signals are state, read when woken (see `SessionHandle::wake`):
        // a close, the server's stop, admitted rooms, a ping due.
        if session.closed().is_cancelled() {
            return Ok(session.close_reason().unwrap_or(CloseReason::Shutdown));
        }
        if app.lifecycle.stop_reading.is_cancelled() {
            return Ok(CloseReason::Shutdown);
        }
        let rooms = session.take_admitted();
        if !rooms.is_empty() {
            Box::pin(conn.join_admitted(rooms)).await;
            continue;
        }
        let idle = outbox.is_empty();
        if session.take_ping_due() {
            let now = now_ms();
            if session.silent_for(now) > idle_ms {
                return Ok(CloseReason::Idle);
            }
            // Not while a batch is half written: the ping would land
            // inside a frame. Nothing is read while it is written: a
            // peer that takes nothing for `limits.idle_timeout` is gone.
            if idle && now - pinged >= ping_ms {
                pinged = now;
                // Boxed: its timer and the frame live only while it is sent.
                let ping = socket.send(Message::Ping(Default::default()));
                match Box::pin(tokio::time::timeout(limits.idle_timeout, ping)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(CloseReason::Normal),
                    Err(_) => return Err(CloseReason::Idle),
                }
            }
        }
        let incoming = tokio::select! {
            biased;
            () = session.woken() => continue,
            // Everything queued becomes the next batch (the queue's Vec
            // itself: an idle connection then holds no buffer).
            batch = rx.recv(), if idle => {
                outbox.fill(batch);
                continue;
            }
            io = io(socket, outbox) => match io {
                Io::Read(incoming) => incoming,
                Io::Wrote(Ok(bytes)) => {
                    // Written: these bytes no longer count against the budget.
                    session.unqueued(bytes);
                    continue;
                }
                Io::Wrote(Err(_)) => return Err(CloseReason::Normal),
            },
        };
        session.heard(now_ms());
        match incoming {
            // Boxed: a frame's handling lives only while it runs.
            Ok(Incoming::Text(text)) => Box::pin(conn.frame(&text)).await,
            Ok(Incoming::Binary) => conn.reply_error(None, &binary_error()),
            Ok(Incoming::Other) => {}
            // The peer closed, or the connection broke.
            Err(CloseReason::Normal) => return Err(CloseReason::Normal),
            // The peer's fault: this side closes, with its code.
            Err(reason) => return Ok(reason),
        }
    }
}

/// Slices of the sessions the pinger nudges in turn, one per tick.
const PING_SLICES: u32 = 16;

fn pinger_tick(ping_interval: Duration) -> Duration {
    (ping_interval / PING_SLICES).max(Duration::from_millis(1))
}

/// The server's one ping timer (instead of one per connection): every
/// `limits.ping_interval`, each session is nudged once, in slices spread
/// over the interval, and its connection pings and checks the peer's
/// silence. Ends when the server stops reading.
pub(crate) async fn pinger(app: Arc<Service>) {
    let tick = pinger_tick(app.config.limits.ping_interval);
    let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for slice in (0..u64::from(PING_SLICES)).cycle() {
        tokio::select! {
            _ = app.lifecycle.stop_reading.cancelled() => return,
            _ = ticks.tick() => app.nudge_sessions(slice, PING_SLICES.into()),
        }
    }
}

/// After the session ended: keeps delivering until it is closed (at
/// shutdown, the acks of messages that were in flight come now), reading
/// and dropping whatever the peer still sends; then the queued frames (or
/// not: see below), the close frame, and a brief wait for the peer's close
/// reply. A socket closed with unread input is reset, and the reset can
/// destroy the close frame before the peer reads it.
async fn close(mut socket: Socket, mut rx: Outbound, mut outbox: Outbox, session: &SessionHandle, socket_done: bool) {
    let closed = session.closed().clone();
    let mut peer_gone = socket_done;
    while !peer_gone {
        let idle = outbox.is_empty();
        tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            batch = rx.recv(), if idle => outbox.fill(batch),
            io = io(&mut socket, &mut outbox) => match io {
                Io::Read(Ok(_)) => {}
                Io::Read(Err(_)) | Io::Wrote(Err(_)) => peer_gone = true,
                Io::Wrote(Ok(bytes)) => session.unqueued(bytes),
            },
        }
    }
    // Closed by someone. Nobody set a reason only when the whole server is
    // closing (its token is this session's parent).
    let reason = session.close_reason().unwrap_or(CloseReason::Shutdown);
    let wait = if matches!(reason, CloseReason::Shutdown | CloseReason::Normal) {
        // Deliver what was queued before the close (acks of messages that
        // were stored), then close.
        outbox.extend(rx.close());
        CLOSE_WAIT
    } else {
        // The close frame goes past everything still queued (dropped here,
        // which frees it at once); only what the socket already took, and
        // a frame it took in part, are ahead of it. A slow reader still
        // gets to read it, if it reads.
        drop(rx.close());
        outbox.keep_started();
        session.unqueued(usize::MAX);
        CLOSE_WAIT_SLOW
    };
    if peer_gone {
        // Only tungstenite's own reply to the peer's close, if any (not
        // after a frame cut short: the socket is broken then).
        if outbox.is_empty() {
            let _ = tokio::time::timeout(CLOSE_WAIT, socket.close(None)).await;
        }
        return;
    }
    let sent = tokio::time::timeout(wait, async {
        if outbox.write(&mut socket).await.is_err() {
            return false;
        }
        if reason != CloseReason::Normal {
            send_close(&mut socket, reason).await;
        }
        socket.flush().await.is_ok()
    })
    .await;
    if sent == Ok(true) {
        // The peer's close reply (or the end of its input), briefly.
        let drained = async { while let Some(Ok(_)) = socket.next().await {} };
        let _ = tokio::time::timeout(CLOSE_WAIT, drained).await;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, socket.close(None)).await;
}

/// Reads frames until a valid `hello` registers the session. Everything
/// else gets its error reply and the connection stays open.
async fn identify(
    app: &Arc<Service>,
    ip: std::net::IpAddr,
    socket: &mut Socket,
) -> Result<(Conn, Outbound, Option<crate::protocol::FrameId>), CloseReason> {
    loop {
        let text = match next_frame(socket).await? {
            Incoming::Text(t) => t,
            Incoming::Binary => {
                let e = binary_error();
                app.metrics.error(e.code);
                send_direct(socket, &encode(&ServerFrame::error(None, &e))).await?;
                continue;
            }
            Incoming::Other => continue,
        };
        let reply = match ClientFrame::parse(&text) {
            Err(ParseError { id, error }) => {
                app.metrics.error(error.code);
                encode(&ServerFrame::error(id.as_ref(), &error))
            }
            Ok(ClientFrame { id, request: Request::Hello { nick, password, token, member_roles } }) => {
                match app.open(Hello { nick, password, token }, ip).await {
                    Ok((mut session, rx)) => {
                        if member_roles {
                            session.show_member_roles();
                        }
                        return Ok((Conn::new(session), rx, id));
                    }
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
        send_direct(socket, &reply).await?;
    }
}

enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// Ping, pong: liveness only (tungstenite answers pings itself).
    Other,
}

/// The next data frame, or why the connection is over.
async fn next_frame(socket: &mut Socket) -> Result<Incoming, CloseReason> {
    incoming(socket.next().await)
}

fn incoming(message: Option<Result<Message, tungstenite::Error>>) -> Result<Incoming, CloseReason> {
    match message {
        Some(Ok(Message::Text(t))) => Ok(Incoming::Text(t)),
        Some(Ok(Message::Binary(_))) => Ok(Incoming::Binary),
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(Incoming::Other),
        Some(Ok(Message::Close(_))) | None => Err(CloseReason::Normal),
        Some(Err(e)) => Err(why(&e)),
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

async fn send_direct(socket: &mut Socket, frame: &Frame) -> Result<(), CloseReason> {
    socket.send(outbox::text(frame)).await.map_err(|_| CloseReason::Normal)
}

async fn send_close(socket: &mut Socket, reason: CloseReason) {
    if reason == CloseReason::Shutdown {
        let notice = encode(&ServerFrame::Notice {
            code: "shutdown",
            message: "the server is restarting; reconnect and resume with join … since",
        });
        let _ = socket.feed(outbox::text(&notice)).await;
    }
    let frame = CloseFrame { code: reason.code().into(), reason: reason.text().into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

#[cfg(test)]
mod sizes {
    /// The size of the future an async fn returns, from its type alone.
    fn ret4<A, B, C, D, Fut, F: FnOnce(A, B, C, D) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    fn ret5<A, B, C, D, E, Fut, F: FnOnce(A, B, C, D, E) -> Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Each connection keeps its one future for its whole life: its size
    /// is memory per connection. Keep it small (rarely used, large states
    /// belong in a Box; so do the futures of rare or short steps, whose
    /// room the connection's future would otherwise keep).
    #[test]
    fn connection_future_is_small() {
        let serve = ret4(&super::serve::<crate::http::conns::ConnPermit>);
        eprintln!(
            "serve future {serve} (run {}), Conn {} Identity {} Socket {} Outbox {} SessionHandle {} UserState {}",
            ret5(&super::run),
            std::mem::size_of::<super::Conn>(),
            std::mem::size_of::<crate::model::Identity>(),
            std::mem::size_of::<super::Socket>(),
            std::mem::size_of::<super::Outbox>(),
            std::mem::size_of::<crate::hub::SessionHandle>(),
            std::mem::size_of::<crate::hub::UserState>(),
        );
        // The task cell is the future and ~100 bytes of tokio's, rounded up
        // to 128 bytes: under 1,152 it fits jemalloc's 1,280-byte class
        // (it was 2,560 before issue 13's fourth pass: docs/performance.md).
        assert!(serve < 1152, "serve future: {serve} bytes");
    }
}
