//! The IRC door (`irc.listen`, `irc.tls_listen`): any IRC client is a chat
//! client, on the same users, rooms and history (docs/irc.md). A codec over
//! [`crate::service`] with no rules of its own:
//!
//! - [`line`]: the byte stream into lines (512 bytes, 8,191 more of tags,
//!   else 417), one line into a command, replies into lines;
//! - [`register`]: CAP, PASS, SASL PLAIN, NICK and USER, the welcome;
//! - [`conn`]: the connection's state and each command, as service calls,
//!   with the RFC numerics for refusals;
//! - [`bridge`]: the frames the hub queues for the session, as IRC lines.
//!
//! One task per connection, as for WebSockets: it reads lines (flood
//! control delays them: over the budget, the socket is not read until the
//! bucket refills; nothing is dropped), writes replies and the session's
//! queue, PINGs and drops a silent peer, and ends the session.

mod bridge;
mod conn;
mod line;
mod register;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::protocol::now_ms;
use crate::protocol::server::Frame;
use crate::service::{CloseReason, Outbound, Service};
use conn::{Ending, Irc};
use line::Next;

/// How long one write may wait for a peer that does not read: then it is
/// dropped (the hub never waits for it: its queue is bounded).
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Room made for each read (an idle connection keeps this buffer).
const READ_CHUNK: usize = 2048;

/// The TLS acceptor for `irc.tls_cert`/`irc.tls_key` (PEM), with the
/// process's crypto provider (aws-lc-rs, as reqwest's).
pub(crate) fn tls_acceptor(cert: &str, key: &str) -> anyhow::Result<TlsAcceptor> {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("irc.tls_cert: cannot read {cert}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("irc.tls_cert: {cert} is not a PEM certificate chain"))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("irc.tls_key: cannot read a PEM key from {key}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("irc TLS: protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("irc.tls_cert/irc.tls_key: the key does not fit the certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What IRC clients on this node said of themselves that the service does
/// not keep: the USER name and real name (WHOIS), the AWAY message (301).
/// By case-folded nick; an entry lives as long as its connection. Then it
/// goes to the WHOWAS list: the latest `irc.whowas` users who left.
pub(crate) struct Directory {
    live: dashmap::DashMap<Arc<str>, Entry>,
    gone: std::sync::Mutex<std::collections::VecDeque<Gone>>,
    gone_max: usize,
}

/// A user who left, for WHOWAS.
#[derive(Clone)]
pub(super) struct Gone {
    pub(super) nick: String,
    pub(super) user: String,
    pub(super) real: String,
}

#[derive(Clone, Default)]
pub(super) struct Entry {
    pub(super) user: String,
    pub(super) real: String,
    pub(super) away: Option<String>,
}

impl Directory {
    pub(crate) fn new(whowas: usize) -> Directory {
        Directory { live: Default::default(), gone: Default::default(), gone_max: whowas }
    }
    pub(super) fn get(&self, nick_key: &str) -> Option<Entry> {
        self.live.get(nick_key).map(|e| e.clone())
    }
    pub(super) fn set(&self, nick_key: Arc<str>, entry: Entry) {
        self.live.insert(nick_key, entry);
    }
    pub(super) fn set_away(&self, nick_key: &str, away: Option<String>) {
        if let Some(mut e) = self.live.get_mut(nick_key) {
            e.away = away;
        }
    }
    /// The user `nick` left: remembered for WHOWAS.
    pub(super) fn remove(&self, nick: &str, nick_key: &str) {
        let Some((_, e)) = self.live.remove(nick_key) else { return };
        if self.gone_max == 0 {
            return;
        }
        let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        if gone.len() >= self.gone_max {
            gone.pop_back();
        }
        gone.push_front(Gone { nick: nick.to_owned(), user: e.user, real: e.real });
    }
    /// WHOWAS: the latest `count` (0 = all) users who held `nick`, newest first.
    pub(super) fn whowas(&self, nick: &str, count: usize) -> Vec<Gone> {
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        let found = gone.iter().filter(|g| g.nick.eq_ignore_ascii_case(nick)).cloned();
        if count == 0 { found.collect() } else { found.take(count).collect() }
    }
}

/// Accepts IRC connections on `listener` until shutdown. `acquire` takes a
/// place under the connection caps (shared with the WebSocket door) or
/// refuses; a refused client gets an ERROR line.
pub(crate) async fn listen<P, F>(
    svc: Arc<Service>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    directory: Arc<Directory>,
    acquire: F,
) where
    P: Send + 'static,
    F: Fn(IpAddr) -> Option<P>,
{
    let stop = svc.lifecycle.stop_reading.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "irc: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let permit = acquire(peer.ip().to_canonical());
        let svc2 = svc.clone();
        let tls = tls.clone();
        let directory = directory.clone();
        svc.lifecycle.tracker.spawn(async move {
            let Some(permit) = permit else {
                tracing::warn!(%peer, "irc connection refused: cap reached");
                let mut tcp = tcp;
                let _ = tokio::time::timeout(WRITE_WAIT, tcp.write_all(b"ERROR :Too many connections\r\n")).await;
                return;
            };
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(svc2.config.limits.hello_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve(svc2, directory, stream, peer, permit).await,
                        _ => tracing::debug!(%peer, "irc: TLS handshake failed"),
                    }
                }
                None => serve(svc2, directory, tcp, peer, permit).await,
            }
        });
    }
}

/// The life of one connection.
async fn serve<S, P>(svc: Arc<Service>, directory: Arc<Directory>, stream: S, peer: SocketAddr, _permit: P)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _open = svc.metrics.connection_opened();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut irc = Irc::new(svc.clone(), directory, peer.ip().to_canonical());
    let reading = svc.lifecycle.readers.token();
    let reason = Box::pin(run(&mut irc, &mut reader, &mut writer)).await;
    drop(reading);
    // The goodbye: what is queued, then the session ends (its nick is
    // free before the client reads ERROR), then ERROR.
    if let Some(rx) = irc.rx.as_mut() {
        let rest = rx.close();
        irc.frames(rest);
    }
    if let Some(session) = irc.session.take() {
        let handle = session.handle().clone();
        if irc.registered {
            irc.directory.remove(handle.nick().as_str(), handle.nick().key());
        }
        tracing::info!(session = handle.id, nick = %handle.nick(), %peer, "irc: disconnected");
        Box::pin(session.end(reason)).await;
    }
    let text = match (&irc.ending, reason) {
        (Some(Ending::Quit(msg)), _) => format!("Closing Link: {} (Quit: {msg})", irc.host),
        (Some(Ending::Error(msg)), _) => format!("Closing Link: {msg}"),
        (None, CloseReason::Idle) => "Closing Link: Ping timeout".to_owned(),
        (None, CloseReason::Policy) => "Closing Link: Registration timeout".to_owned(),
        (None, CloseReason::SlowConsumer) => "Closing Link: SendQ exceeded".to_owned(),
        (None, CloseReason::Shutdown) => "Closing Link: Server shutting down".to_owned(),
        (None, r) => format!("Closing Link: {}", r.text()),
    };
    let host = irc.host.clone();
    line::push(&mut irc.out, None, &host, "ERROR", &[&text]);
    let out = std::mem::take(&mut irc.out);
    let _ = tokio::time::timeout(WRITE_WAIT, async {
        writer.write_all(out.as_bytes()).await?;
        writer.shutdown().await
    })
    .await;
}

/// Waits for the close signal, or forever when there is none yet.
async fn cancelled(token: Option<CancellationToken>) {
    match token {
        Some(t) => t.cancelled_owned().await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: Option<&mut Outbound>) -> Vec<Frame> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn admitted(handle: Option<Arc<crate::service::SessionHandle>>) -> Vec<Arc<str>> {
    match handle {
        Some(h) => h.admitted().await,
        None => std::future::pending().await,
    }
}

/// Reads, handles and writes until the connection should end; says why.
async fn run<R, W>(irc: &mut Irc, reader: &mut R, writer: &mut W) -> CloseReason
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let svc = irc.svc.clone();
    let limits = &svc.config.limits;
    let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    let flood = RateLimiter::direct(
        Quota::per_second(nz(svc.config.irc.flood_per_sec)).allow_burst(nz(svc.config.irc.flood_burst)),
    );
    let mut ping = tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let register_by = Instant::now() + limits.hello_timeout;
    let idle_ms = limits.idle_timeout.as_millis() as i64;
    let mut last_heard = now_ms();
    let mut input: Vec<u8> = Vec::new();
    let mut discarding = false;
    let mut delay: Option<Instant> = None;
    loop {
        // Lines in hand, as the flood budget allows.
        let mut line_waiting = false;
        while irc.ending.is_none() {
            if delay.is_some_and(|d| d > Instant::now()) {
                line_waiting = true;
                break;
            }
            delay = None;
            let text = match line::next_line(&mut input, &mut discarding) {
                Next::Partial => break,
                Next::TooLong => {
                    irc.num("417", &["Input line was too long"]);
                    continue;
                }
                Next::Line(l) => l,
            };
            // A message to several targets costs one per target, so the
            // budget caps messages as well as lines.
            let cost = nz(line::flood_cost(&text));
            let checked = match flood.check_n(cost) {
                Ok(checked) => checked,
                Err(_) => flood.check(), // a cost above the burst: one line's
            };
            if let Err(not_until) = checked {
                // Over budget: this line waits (it is put back), and so does the socket.
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let mut back = text;
                back.push(b'\n');
                back.append(&mut input);
                input = back;
                delay = Some(Instant::now() + wait);
                line_waiting = true;
                break;
            }
            match std::str::from_utf8(&text) {
                Ok(t) if t.contains('\0') => {
                    irc.server_line("FAIL", &["*", "INVALID_UTF8", "NUL bytes are not allowed"])
                }
                Ok(t) => {
                    Box::pin(irc.line(t)).await;
                    // What handling the line queued (JOIN's, TOPIC's lines)
                    // goes out before the replies to the next line.
                    if irc.registered
                        && let Some(batch) = irc.rx.as_mut().and_then(|rx| rx.recv().now_or_never())
                    {
                        irc.frames(batch);
                    }
                }
                Err(_) => irc.server_line("FAIL", &["*", "INVALID_UTF8", "Lines must be UTF-8"]),
            }
        }
        if !irc.to_watch.is_empty() {
            Box::pin(irc.watch_members()).await;
        }
        if !irc.out.is_empty() {
            let out = std::mem::take(&mut irc.out);
            match tokio::time::timeout(WRITE_WAIT, writer.write_all(out.as_bytes())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return CloseReason::Normal,
                Err(_) => return CloseReason::SlowConsumer,
            }
            irc.out = out;
            irc.out.clear();
        }
        if irc.ending.is_some() {
            return CloseReason::Normal;
        }
        let handle = irc.session.as_ref().map(|s| s.handle().clone());
        let closed = handle.as_ref().map(|h| h.closed().clone());
        let registered = irc.registered;
        if !line_waiting {
            input.reserve(READ_CHUNK);
        }
        let rx = if registered { irc.rx.as_mut() } else { None };
        tokio::select! {
            biased;
            _ = cancelled(closed) => {
                return handle.and_then(|h| h.close_reason()).unwrap_or(CloseReason::Shutdown);
            }
            _ = svc.lifecycle.stop_reading.cancelled() => return CloseReason::Shutdown,
            _ = tokio::time::sleep_until(register_by), if !registered => return CloseReason::Policy,
            batch = recv(rx) => irc.frames(batch),
            rooms = admitted(handle.clone().filter(|_| registered)) => {
                let rooms: Vec<_> = rooms.iter().filter_map(|r| crate::protocol::Name::room(r).ok()).collect();
                if let Some(s) = irc.session.as_mut() {
                    for e in s.join_all(&rooms, true).await {
                        irc.svc.metrics.error(e.code);
                    }
                }
            }
            _ = ping.tick() => {
                if now_ms() - last_heard > idle_ms {
                    return CloseReason::Idle;
                }
                let host = irc.host.clone();
                irc.server_line("PING", &[&host]);
            }
            _ = tokio::time::sleep_until(delay.unwrap_or_else(Instant::now)), if line_waiting => {}
            read = reader.read_buf(&mut input), if !line_waiting => match read {
                Ok(0) | Err(_) => return CloseReason::Normal,
                Ok(_) => {
                    last_heard = now_ms();
                    if let Some(h) = &handle {
                        h.heard(last_heard);
                    }
                }
            },
        }
    }
}
