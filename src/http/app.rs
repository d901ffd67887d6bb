//! The HTTP side's shared state: the service (every rule, behind one
//! handle), and what only this door needs — the connection caps and the
//! trusted proxies. `App` derefs to the [`Service`], so a handler calls
//! `app.room_status(…)` and reads `app.config`.

use std::ops::Deref;
use std::sync::Arc;

use super::conns::ConnLimits;
use super::edge::TrustedProxies;
use crate::service::Service;

pub(crate) struct App {
    svc: Arc<Service>,
    pub(crate) conns: Arc<ConnLimits>,
    /// `server.trusted_proxies`, parsed.
    pub(crate) trusted_proxies: TrustedProxies,
}

impl App {
    pub(crate) fn new(svc: Arc<Service>) -> App {
        let l = &svc.config.limits;
        App {
            conns: ConnLimits::new(l.max_connections, l.max_connections_per_ip),
            trusted_proxies: TrustedProxies::new(&svc.config.server.trusted_proxies),
            svc,
        }
    }

    /// The service itself, for a connection that outlives the request.
    pub(crate) fn service(&self) -> &Arc<Service> {
        &self.svc
    }
}

impl Deref for App {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.svc
    }
}
