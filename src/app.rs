//! The shared state every request handler and connection sees: one
//! cloneable handle (`Arc<App>`) over the hub, the bus, the store and the
//! server's lifecycle signals.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Hook, LoginThrottle};
use crate::cluster::Bus;
use crate::config::Config;
use crate::gateway::limits::ConnLimits;
use crate::http::edge::TrustedProxies;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::protocol::server::LimitsView;
use crate::protocol::{Name, ProtoError};
use crate::store::Store;

pub struct App {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub bus: Bus,
    pub store: Store,
    pub conns: Arc<ConnLimits>,
    /// Cancelled first at shutdown: connections stop reading frames.
    pub stop_reading: CancellationToken,
    /// Cancelled once in-flight messages are delivered: every session's
    /// writer sends the shutdown notice and closes (each session's close
    /// token is a child of this one).
    pub close_all: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Connections in their reading phase: shutdown waits for each to finish
    /// the frame in hand before it flushes, so what they publish is acked.
    pub readers: TaskTracker,
    pub node: String,
    pub limits_view: LimitsView,
    pub login_throttle: LoginThrottle,
    pub hook: Option<Hook>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: TrustedProxies,
    /// What `GET /metrics` shows (the hub's, shared).
    pub metrics: Metrics,
}

/// A user named by a nick: the nick as shown, and the id of the user who
/// holds it now (online) or owns it (an account, a site user).
#[derive(Clone, Debug)]
pub struct UserRef {
    pub nick: Arc<str>,
    pub id: Arc<str>,
}

impl App {
    /// Who `nick` names: its holder if online, else the account or site
    /// user that owns it, else a guest that left within its grace period
    /// (it may come back with its token); `None` for a nick only guests
    /// used that are gone: nobody inherits what they had.
    pub async fn user_of(&self, nick: &Name) -> Result<Option<UserRef>, ProtoError> {
        if let Some(online) = self.bus.online(nick.key()).await? {
            return Ok(Some(UserRef { nick: online.nick, id: online.id }));
        }
        let failed = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "storage error");
            ProtoError::unavailable()
        };
        let account = self.store.account(nick.key()).await.map_err(failed)?;
        if let Some(a) = account.as_ref().filter(|a| a.owner.is_some()) {
            return Ok(Some(UserRef {
                id: a.owner.as_deref().unwrap_or_default().into(),
                nick: a.nick.as_str().into(),
            }));
        }
        let guest = self.store.guest_holder(nick.key(), crate::protocol::now_ms()).await.map_err(failed)?;
        let shown = account.map_or_else(|| nick.shown().clone(), |a| a.nick.into());
        Ok(guest.map(|id| UserRef { nick: shown, id: id.into() }))
    }

    pub fn new(config: Config, hub: Arc<Hub>, bus: Bus, store: Store) -> App {
        let l = &config.limits;
        let limits_view = LimitsView {
            max_text: l.max_text,
            max_frame_bytes: l.max_frame_bytes,
            rate_per_sec: l.rate_per_sec,
            burst: l.burst,
        };
        App {
            login_throttle: LoginThrottle::new(
                config.auth.login_per_nick_per_minute,
                config.auth.login_per_ip_per_minute,
                config.auth.login_failures_per_nick_per_minute,
            ),
            trusted_proxies: TrustedProxies::new(&config.server.trusted_proxies),
            hook: Hook::new(&config.auth),
            metrics: hub.metrics().clone(),
            conns: ConnLimits::new(l.max_connections, l.max_connections_per_ip),
            node: config.node_id(),
            limits_view,
            hub,
            bus,
            store,
            stop_reading: CancellationToken::new(),
            close_all: CancellationToken::new(),
            tracker: TaskTracker::new(),
            readers: TaskTracker::new(),
            config,
        }
    }
}
