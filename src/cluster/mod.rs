//! The Bus: where a message goes after the hub accepts it, until every node
//! that hosts its recipients has fanned it out. `Local` (one node): the
//! store's batching writer is the durable step, and committed batches go
//! straight to this process's hub. The Redis implementation (several
//! nodes) plugs in here as another variant.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::hub::{Hub, Route};
use crate::protocol::ProtoError;
use crate::protocol::server::StoredMessage;
use crate::store::{CommitSink, NewMessage, Store, StoreError, Writer};

#[derive(Clone)]
pub enum Bus {
    Local(Writer<Route>),
}

impl Bus {
    /// A single-node bus: store, then deliver through `hub`.
    pub fn local(store: Store, hub: Arc<Hub>, batch_max: usize) -> (Bus, JoinHandle<()>) {
        let (writer, task) = Writer::start(store, batch_max, HubSink(hub));
        (Bus::Local(writer), task)
    }

    /// Hands a message to the durable step. Its route later gets the `ack`
    /// (stored and delivered) or `unavailable` (not stored, not delivered).
    /// Fails, returning the route, only while shutting down.
    pub async fn publish(&self, msg: NewMessage, route: Route) -> Result<(), Route> {
        match self {
            Bus::Local(w) => w.submit(msg, route).await,
        }
    }

    /// Waits until everything published so far is delivered or failed.
    pub async fn flush(&self) {
        match self {
            Bus::Local(w) => w.flush().await,
        }
    }
}

/// Delivers committed batches to the local hub, in commit order.
struct HubSink(Arc<Hub>);

impl CommitSink<Route> for HubSink {
    fn committed(&self, batch: Vec<(StoredMessage, Route)>) {
        for (msg, route) in batch {
            self.0.deliver(&msg, route);
        }
    }

    fn failed(&self, batch: Vec<Route>, _error: &StoreError) {
        let error = ProtoError::unavailable();
        for route in batch {
            self.0.fail(route, &error);
        }
    }
}
