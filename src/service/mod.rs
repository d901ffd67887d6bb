//! The rules, once. Every door (the WebSocket gateway, the HTTP API, the
//! IRC door, and the Socket.IO door to come) parses its input into typed
//! arguments and calls this floor; what it gets back is a typed result or a
//! [`ProtoError`] (a code and a message for the client). Nothing above this
//! floor touches the store, the hub or the bus: [`Service`] keeps them
//! private.
//!
//! - [`access`]: who may enter, read, say in, change what — each rule one
//!   function ([`access::may_say`] decides whether a user may say something
//!   in a room).
//! - [`session`]: a connected user ([`Session`]): `hello`, `welcome`, the end.
//! - [`rooms`], [`messages`], [`signals`]: what a session does, and the
//!   HTTP API's operations on rooms and messages, with a [`Caller`].
//! - [`accounts`]: registration, login, profiles.
//! - [`uploads`]: files sent to the chat ([`images`] cleans pictures), the
//!   attachments of messages, and the sweep.
//! - [`hook`]: the embedding site's authorization hook.
//!
//! Errors: the store's and the bus's errors become `unavailable` here, by
//! `From`, logged once (see [`errors`]).

pub(crate) mod access;
pub(crate) mod accounts;
mod avatars;
mod errors;
mod hook;
mod images;
pub(crate) mod mentions;
pub(crate) mod messages;
pub(crate) mod modes;
pub(crate) mod notify;
mod page;
pub(crate) mod rooms;
pub(crate) mod session;
mod signals;
pub(crate) mod social;
pub(crate) mod uploads;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, LoginThrottle};
use crate::cluster::Bus;
use crate::config::Config;
use crate::hub::Hub;
/// A session's outbound queue and close signal, and why it closed: what a
/// door's writer needs of the hub.
pub(crate) use crate::hub::{CloseReason, Outbound, SessionHandle};
use crate::metrics::Metrics;
use crate::model::Identity;
use crate::protocol::server::LimitsView;
use crate::protocol::{Name, ProtoError, now_ms};
use crate::store::Store;
use crate::store::files::Files;
use hook::Hook;
pub(crate) use session::{Hello, Session};

/// Who calls the HTTP API: a server-side caller with an API key, or a user
/// with a session token (from login, or a guest's `welcome.token`) or a
/// site token. A connected user calls through its [`Session`].
pub(crate) enum Caller {
    ApiKey,
    User(Identity),
}

impl Caller {
    pub(crate) fn is_api_key(&self) -> bool {
        matches!(self, Caller::ApiKey)
    }
}

/// A user named by a nick: the nick as shown, and the id of the user who
/// holds it now (online) or owns it (an account, a site user).
#[derive(Clone, Debug)]
pub(crate) struct UserRef {
    pub(crate) nick: Arc<str>,
    pub(crate) id: Arc<str>,
}

/// The server's lifecycle signals, shared by every door.
pub(crate) struct Lifecycle {
    /// Cancelled first at shutdown: connections stop reading frames.
    pub(crate) stop_reading: CancellationToken,
    /// Cancelled once in-flight messages are delivered: every session's
    /// writer sends the shutdown notice and closes (each session's close
    /// token is a child of this one).
    pub(crate) close_all: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Connections in their reading phase: shutdown waits for each to finish
    /// the frame in hand before it flushes, so what they publish is acked.
    pub(crate) readers: TaskTracker,
}

/// The rules and the state they need: one per server, shared (`Arc`).
pub(crate) struct Service {
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) node: String,
    pub(crate) limits_view: LimitsView,
    pub(crate) lifecycle: Lifecycle,
    hub: Arc<Hub>,
    bus: Bus,
    store: Store,
    files: Files,
    hook: Option<Hook>,
    login_throttle: LoginThrottle,
    /// The VAPID key pair (Web Push), when `notify.push` is on.
    vapid: Option<Arc<notify::push::Vapid>>,
    /// Changes of one room's settings on this node run one at a time (by
    /// a hash of the room's key: a few rooms share a lock).
    settings_locks: Box<[tokio::sync::Mutex<()>]>,
}

impl Service {
    /// Opens the store, and joins the cluster when `cluster.redis_url` is
    /// set. On one node, also returns the batching writer's task (it ends
    /// once the service is dropped and its queue is drained).
    pub(crate) async fn start(config: Config) -> anyhow::Result<(Service, Option<JoinHandle<()>>)> {
        use anyhow::Context;
        // The error's text names the (redacted) url and carries every cause
        // already: as a chain, `{:#}` would print each cause twice.
        let store = Store::open(&config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let files = Files::open(&config.uploads).await.map_err(|e| anyhow::anyhow!("uploads.dir: {e}"))?;
        let clustered = !config.cluster.redis_url.is_empty();
        let (decide, decisions) = if notify::enabled(&config.notify) {
            let (tx, queue) = notify::queue(&config.notify);
            (Some(tx), Some(queue))
        } else {
            (None, None)
        };
        let hub = Arc::new(
            Hub::new(config.limits.outbound_queue, !clustered)
                .with_metrics(Metrics::new())
                .with_outbound_bytes(config.limits.outbound_bytes),
        );
        let (bus, writer) = if clustered {
            let bus = Bus::redis(&config.cluster, config.node_id(), store.clone(), hub.clone(), decide)
                .await
                .context("cannot join the cluster")?;
            (bus, None)
        } else {
            // Guests connected when this server last stopped are gone: their
            // identities end after the grace period, not a day later.
            let until = now_ms() + config.auth.guest_grace.as_millis() as i64;
            // A database that refuses writes now (read-only) does not stop
            // the start: the tokens then live out their day.
            if let Err(e) = store.end_guest_sessions(until).await {
                tracing::warn!(error = %e, "could not end the guest tokens of the last run");
            }
            let (bus, writer) = Bus::local(store.clone(), hub.clone(), config.database.batch_max, decide);
            (bus, Some(writer))
        };
        // A database that refuses writes now (read-only) does not stop the
        // start: without a kept VAPID key, Web Push is off for this run.
        let vapid = match config.notify.push {
            true => match notify::push::Vapid::load(&config.notify, &store).await {
                Ok(v) => Some(Arc::new(v)),
                Err(e) if config.notify.vapid_private_key.is_empty() => {
                    tracing::warn!(error = %e, "no VAPID key could be kept: Web Push is off until the next start");
                    None
                }
                Err(e) => return Err(e.context("web push")),
            },
            false => None,
        };
        let l = &config.limits;
        let limits_view = LimitsView {
            max_text: l.max_text,
            max_frame_bytes: l.max_frame_bytes,
            rate_per_sec: l.rate_per_sec,
            burst: l.burst,
            allow_everyone: config.chat.allow_everyone,
        };
        let service = Service {
            login_throttle: LoginThrottle::new(
                config.auth.login_per_nick_per_minute,
                config.auth.login_per_ip_per_minute,
                config.auth.login_failures_per_nick_per_minute,
            ),
            hook: Hook::new(&config.auth),
            metrics: hub.metrics().clone(),
            node: config.node_id(),
            limits_view,
            lifecycle: Lifecycle {
                stop_reading: CancellationToken::new(),
                close_all: CancellationToken::new(),
                tracker: TaskTracker::new(),
                readers: TaskTracker::new(),
            },
            hub,
            bus,
            store,
            files,
            vapid,
            settings_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            config,
        };
        if let Some(rx) = decisions {
            notify::start(
                &service.config.notify,
                notify::Names { node: service.node.clone(), host: service.host() },
                service.store.clone(),
                service.bus.clone(),
                rx,
                service.vapid.clone(),
                service.lifecycle.close_all.clone(),
            );
        }
        uploads::spawn_sweep(
            service.store.clone(),
            service.files.clone(),
            service.config.uploads.clone(),
            service.lifecycle.close_all.clone(),
        );
        Ok((service, writer))
    }

    /// The caller behind a bearer token (an API key, a session token, a
    /// site token), or `unauthorized`.
    pub(crate) async fn caller(&self, token: &str) -> Result<Caller, ProtoError> {
        if auth::is_api_key(&self.config.auth.api_keys, token) {
            return Ok(Caller::ApiKey);
        }
        Ok(Caller::User(auth::from_token(&self.store, &self.config.auth, token).await?))
    }

    /// Who `nick` names: its holder if online, else the account or site
    /// user that owns it, else a guest that left within its grace period
    /// (it may come back with its token); `None` for a nick only guests
    /// used that are gone: nobody inherits what they had.
    pub(crate) async fn user_of(&self, nick: &Name) -> Result<Option<UserRef>, ProtoError> {
        if let Some(online) = self.bus.online(nick.key()).await? {
            return Ok(Some(UserRef { nick: online.nick, id: online.id }));
        }
        let account = self.store.account(nick.key()).await?;
        if let Some(a) = account.as_ref().filter(|a| a.owner.is_some()) {
            return Ok(Some(UserRef {
                id: a.owner.as_deref().unwrap_or_default().into(),
                nick: a.nick.as_str().into(),
            }));
        }
        let guest = self.store.guest_holder(nick.key(), now_ms()).await?;
        let shown = account.map_or_else(|| nick.shown().clone(), |a| a.nick.into());
        Ok(guest.map(|id| UserRef { nick: shown, id: id.into() }))
    }

    // ---- health and the server's life ------------------------------------------

    /// Ready to serve: the cluster's Redis answers (if any), and the
    /// database takes writes (a read would pass on a read-only database).
    pub(crate) async fn ready(&self) -> Result<(), &'static str> {
        if !self.bus.ready().await {
            return Err("redis is unreachable");
        }
        self.store.probe_write().await.map_err(|e| {
            tracing::warn!(error = %e, "readiness check failed");
            "storage is unreachable or refuses writes"
        })
    }

    /// What a metrics scrape shows beside the counters.
    pub(crate) async fn snapshot(&self) -> crate::metrics::Snapshot {
        crate::metrics::Snapshot {
            sessions: self.hub.session_count(),
            rooms: self.hub.live_rooms().len(),
            cluster: self.bus.metrics_snapshot().await,
        }
    }

    /// Shutdown, first step: sessions leave without telling everyone.
    pub(crate) fn hush(&self) {
        self.hub.hush();
    }

    /// Shutdown: connections stop reading frames. Those that wait on their
    /// session's wake-up rather than on `lifecycle.stop_reading` (the
    /// WebSocket door's) are woken to see it.
    pub(crate) fn stop_reading(&self) {
        self.lifecycle.stop_reading.cancel();
        self.hub.wake_all();
    }

    /// Tells one slice of the sessions that their ping is due (see
    /// [`crate::hub::Hub::nudge`]).
    pub(crate) fn nudge_sessions(&self, slice: u64, slices: u64) {
        self.hub.nudge(slice, slices);
    }

    /// Waits until every message accepted so far is stored and delivered.
    pub(crate) async fn flush(&self) {
        self.bus.flush().await;
    }

    /// Leaves the cluster (a no-op on one node): this node's users quit
    /// everywhere; `abort` stops the bus at once if that takes too long.
    pub(crate) async fn leave_cluster(&self) {
        self.bus.shutdown().await;
    }

    pub(crate) fn abort_cluster(&self) {
        self.bus.abort();
    }
}
