//! chat: a real-time chat server.
//!
//! Layout (one concern per module):
//!
//! - [`config`]: the layered configuration (`config/default.toml` < file < env < flags).
//! - [`protocol`]: the wire format: validated names, client frames, server frames.
//! - [`hub`]: the in-process registry of sessions, users, rooms and watchers; fan-out.
//!   No I/O.
//! - [`gateway`]: WebSocket connections: reader and writer tasks, request handlers, caps.
//! - [`cluster`]: the Bus a stored message travels on to its recipients (local for now).
//! - [`store`]: where messages are kept, and the batching writer (the durable step).
//! - [`http`]: the axum router: static files, `/ws`, health.
//! - [`bench`]: the load generator behind `chat bench`.
//! - [`client`]: the console client behind `chat client`.
//!
//! [`Server::start`] runs a server and returns a [`RunningServer`] handle: its
//! address and a shutdown trigger. Tests start real servers this way on
//! `127.0.0.1:0`.

pub mod app;
pub mod auth;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod protocol;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use app::App;
use cluster::Bus;
pub use config::Config;
use hub::Hub;
use metrics::Metrics;
use store::Store;

pub struct Server;

/// A running server: where it listens, and how to stop it.
pub struct RunningServer {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
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
        // The error's text names the (redacted) url and carries every cause
        // already: as a chain, `{:#}` would print each cause twice.
        let store = Store::open(&config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let clustered = !config.cluster.redis_url.is_empty();
        let hub = Arc::new(
            Hub::new(config.limits.outbound_queue, !clustered)
                .with_metrics(Metrics::new())
                .with_outbound_bytes(config.limits.outbound_bytes),
        );
        let (bus, writer) = if clustered {
            let bus = Bus::redis(&config.cluster, config.node_id(), store.clone(), hub.clone())
                .await
                .context("cannot join the cluster")?;
            (bus, None)
        } else {
            // Guests connected when this server last stopped are gone: their
            // identities end after the grace period, not a day later.
            let until = protocol::now_ms() + config.auth.guest_grace.as_millis() as i64;
            // A database that refuses writes now (read-only) does not stop
            // the start: the tokens then live out their day.
            if let Err(e) = store.end_guest_sessions(until).await {
                tracing::warn!(error = %e, "could not end the guest tokens of the last run");
            }
            let (bus, writer) = Bus::local(store.clone(), hub.clone(), config.database.batch_max);
            (bus, Some(writer))
        };
        let grace = config.server.shutdown_grace;
        let app = Arc::new(App::new(config, hub, bus, store));
        let trigger = CancellationToken::new();

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

        let shutdown = trigger.clone();
        let done = tokio::spawn(async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down");
            // 1. Stop reading frames; sessions leave without telling
            //    everyone (the listener stops accepting meanwhile).
            app.hub.hush();
            app.stop_reading.cancel();
            // 2. Messages already accepted are stored, delivered and acked:
            //    first every reader finishes the frame in hand (it may be
            //    about to publish), then the bus is flushed.
            app.readers.close();
            if tokio::time::timeout(grace, app.readers.wait()).await.is_err() {
                tracing::warn!("readers still busy after the grace period");
            }
            if tokio::time::timeout(grace, app.bus.flush()).await.is_err() {
                tracing::warn!("in-flight messages not flushed within the grace period");
            }
            // In a cluster, this node's users quit everywhere at once.
            if tokio::time::timeout(grace, app.bus.shutdown()).await.is_err() {
                tracing::warn!("could not leave the cluster within the grace period");
                app.bus.abort();
            }
            // 3. Every session gets the notice and close 1001.
            app.close_all.cancel();
            app.tracker.close();
            if tokio::time::timeout(grace, app.tracker.wait()).await.is_err() {
                tracing::warn!(left = app.tracker.len(), "connections still open after the grace period");
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
        Ok(RunningServer { addr, metrics_addr, trigger, done })
    }
}
