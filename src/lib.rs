//! chat: a real-time chat server.
//!
//! Layout (one concern per module):
//!
//! Floors, top down; an import only points down (DESIGN.md, "The shape"):
//!
//! - doors, one codec each and no rules: [`http`] (the axum router: static
//!   files, the WebSocket upgrade, `/api/*`, `/metrics`) and [`gateway`]
//!   (WebSocket connections: reader and writer tasks, frame dispatch; IRC
//!   connections: `irc.listen`, `irc.tls_listen`).
//! - [`service`]: the rules, once — who may do what, the hook, building a
//!   message, history, rooms, accounts. Every door calls it.
//! - [`cluster`]: the Bus: one node (the store's batching writer) or Redis.
//! - [`hub`]: the in-process registry of sessions, users, rooms and
//!   watchers, and the one delivery sink. No I/O.
//! - [`store`]: where messages, rooms and users are kept (sqlx), and the
//!   batching writer (the durable step). [`auth`]: passwords and tokens.
//! - [`model`], [`protocol`]: plain data and the wire types, the ground
//!   floor; [`config`] and [`metrics`] beside them.
//! - [`bench`], [`client`]: the load generator and the console client;
//!   they speak the protocol and import no server code.
//!
//! [`Server::start`] runs a server and returns a [`RunningServer`] handle: its
//! address and a shutdown trigger. Tests start real servers this way on
//! `127.0.0.1:0`.

pub mod auth;
pub mod bench;
pub mod client;
mod cluster;
pub mod config;
mod gateway;
mod http;
mod hub;
mod metrics;
mod model;
pub mod protocol;
mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use http::App;
use service::Service;

pub struct Server;

/// A running server: where it listens, and how to stop it.
pub struct RunningServer {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    irc_addrs: [Option<SocketAddr>; 2],
    trigger: CancellationToken,
    done: JoinHandle<()>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `GET /metrics` answers when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where IRC answers when `irc.listen` is set.
    pub fn irc_addr(&self) -> Option<SocketAddr> {
        self.irc_addrs[0]
    }

    /// Where IRC over TLS answers when `irc.tls_listen` is set.
    pub fn irc_tls_addr(&self) -> Option<SocketAddr> {
        self.irc_addrs[1]
    }

    /// `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Starts a graceful shutdown (as SIGTERM does) without waiting.
    pub fn trigger_shutdown(&self) {
        self.trigger.cancel();
    }

    /// Shuts down gracefully and waits until it is done.
    pub async fn stop(self) {
        self.trigger.cancel();
        let _ = self.done.await;
    }

    /// Waits until the server has stopped (after a trigger).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// The IRC door's listeners (`irc.listen`, `irc.tls_listen` with its TLS
/// settings), bound before anything starts so that a bad address or
/// certificate stops the start.
async fn irc_listeners(
    config: &Config,
) -> anyhow::Result<[(Option<TcpListener>, Option<tokio_rustls::TlsAcceptor>); 2]> {
    let irc = &config.irc;
    let bind = |key: &'static str, at: String| async move {
        if at.is_empty() {
            return Ok(None);
        }
        TcpListener::bind(&at).await.map(Some).with_context(|| format!("{key}: cannot listen on {at}"))
    };
    let plain = bind("irc.listen", irc.listen.clone()).await?;
    let tls_listener = bind("irc.tls_listen", irc.tls_listen.clone()).await?;
    let tls = match tls_listener {
        Some(_) => Some(gateway::irc::tls_acceptor(&irc.tls_cert, &irc.tls_key)?),
        None => None,
    };
    Ok([(plain, None), (tls_listener, tls)])
}

impl Server {
    /// Binds `config.server.listen` and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        Self::start_on(config, listener).await
    }

    /// Starts serving on an already bound listener.
    pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<RunningServer> {
        let addr = listener.local_addr()?;
        let metrics_listener = match config.metrics.listen.as_str() {
            "" => None,
            listen => Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("metrics.listen: cannot listen on {listen}"))?,
            ),
        };
        let irc = irc_listeners(&config).await?;
        let grace = config.server.shutdown_grace;
        let (service, writer) = Service::start(config).await?;
        let app = Arc::new(App::new(Arc::new(service)));
        let trigger = CancellationToken::new();
        tokio::spawn(app.metrics.clone().upkeep(trigger.clone()));
        // The WebSocket door's pings (one timer for all its connections).
        app.lifecycle.tracker.spawn(gateway::ws::pinger(app.service().clone()));

        let router = http::router(app.clone());
        let http = tokio::spawn(http::serve::serve(app.clone(), listener, router, trigger.clone()));
        tracing::info!(%addr, node = %app.node, "listening");
        let mut metrics_addr = None;
        let mut metrics_http = None;
        if let Some(listener) = metrics_listener {
            let at = listener.local_addr()?;
            metrics_addr = Some(at);
            let router = http::metrics_router(app.clone());
            let stop = trigger.clone().cancelled_owned();
            metrics_http = Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                    tracing::error!(error = %e, "metrics server failed");
                }
            }));
            tracing::info!(addr = %at, "metrics listening");
        }
        let mut irc_addrs = [None, None];
        let directory = Arc::new(gateway::irc::Directory::new(app.service().config.irc.whowas));
        for (i, (listener, tls)) in irc.into_iter().enumerate() {
            let Some(listener) = listener else { continue };
            let at = listener.local_addr()?;
            irc_addrs[i] = Some(at);
            let conns = app.conns.clone();
            let acquire = move |ip| conns.acquire(ip).ok();
            tokio::spawn(gateway::irc::listen(app.service().clone(), listener, tls, directory.clone(), acquire));
            tracing::info!(addr = %at, tls = i == 1, "irc listening");
        }

        let shutdown = trigger.clone();
        let done = tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down");
            // 1. Stop reading frames; sessions leave without telling
            //    everyone (the listener stops accepting meanwhile).
            let life = &app.lifecycle;
            app.hush();
            app.stop_reading();
            // 2. Messages already accepted are stored, delivered and acked:
            //    first every reader finishes the frame in hand (it may be
            //    about to publish), then the bus is flushed.
            life.readers.close();
            if tokio::time::timeout(grace, life.readers.wait()).await.is_err() {
                tracing::warn!("readers still busy after the grace period");
            }
            if tokio::time::timeout(grace, app.flush()).await.is_err() {
                tracing::warn!("in-flight messages not flushed within the grace period");
            }
            // In a cluster, this node's users quit everywhere at once.
            if tokio::time::timeout(grace, app.leave_cluster()).await.is_err() {
                tracing::warn!("could not leave the cluster within the grace period");
                app.abort_cluster();
            }
            // 3. Every session gets the notice and close 1001.
            life.close_all.cancel();
            life.tracker.close();
            if tokio::time::timeout(grace, life.tracker.wait()).await.is_err() {
                tracing::warn!(left = life.tracker.len(), "connections still open after the grace period");
            }
            let _ = tokio::time::timeout(grace, http).await;
            if let Some(metrics_http) = metrics_http {
                // A scraper's idle keep-alive connection must not hold the
                // server (and its store) open.
                let abort = metrics_http.abort_handle();
                if tokio::time::timeout(grace, metrics_http).await.is_err() {
                    tracing::warn!("metrics connections still open after the grace period");
                    abort.abort();
                }
            }
            drop(app);
            if let Some(writer) = writer {
                let _ = writer.await;
            }
            tracing::info!("stopped");
        });
        Ok(RunningServer { addr, metrics_addr, irc_addrs, trigger, done })
    }
}
