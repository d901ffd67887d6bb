//! The archiver: moves buffered messages from Redis into the database, on
//! every node, every `cluster.sync_interval`. The nodes share the log
//! stream through one consumer group, so each entry goes to one node; an
//! entry is acknowledged (and deleted) only after its batch is committed,
//! and the insert ignores a `msg_id` already stored. So two nodes syncing at
//! once store nothing twice, and a node dying mid-batch loses nothing: its
//! unacknowledged entries are claimed by another node once they have been
//! idle for `cluster.node_timeout`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use tokio::sync::{mpsc, oneshot};

use super::buffer;
use super::redis::RedisBus;
use crate::protocol::ProtoError;
use crate::protocol::server::StoredMessage;

const GROUP: &str = "archivers";

pub(super) async fn run(bus: Arc<RedisBus>, mut requests: mpsc::UnboundedReceiver<oneshot::Sender<bool>>) {
    let mut tick = tokio::time::interval(bus.config.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    loop {
        let claim_all = tokio::select! {
            _ = tick.tick() => false,
            r = requests.recv() => match r {
                Some(done) => { waiting.push(done); true }
                None => return,
            },
            _ = bus.stop.cancelled() => return,
        };
        while let Ok(done) = requests.try_recv() {
            waiting.push(done);
        }
        let ok = bus.up.load(Ordering::Acquire)
            && match pass(&bus, claim_all).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(messages = n, "archived");
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "archiving failed; the messages stay buffered");
                    false
                }
            };
        for done in waiting.drain(..) {
            let _ = done.send(ok);
        }
    }
}

/// Archives until the log has nothing more for this node. `claim_all`:
/// also take entries other nodes hold, however recently (a settle).
async fn pass(bus: &RedisBus, claim_all: bool) -> Result<usize, String> {
    let mut conn = bus.conn().map_err(|e: ProtoError| e.message)?;
    let log = bus.key("log");
    let created: Result<(), _> = conn.xgroup_create_mkstream(&log, GROUP, "0").await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(bus.failed(&e).message);
    }
    let batch = bus.config.sync_batch;
    let min_idle = if claim_all { Duration::ZERO } else { bus.config.node_timeout };
    let mut total = 0;
    loop {
        // This node's own unfinished entries first (a failed commit), then
        // entries a dead (or, when settling, any) node left, then new ones.
        let mut entries = read(bus, &mut conn, &log, "0", batch).await?;
        if entries.is_empty() {
            let opts = StreamAutoClaimOptions::default().count(batch);
            let claimed: redis::streams::StreamAutoClaimReply = conn
                .xautoclaim_options(&log, GROUP, &bus.node, min_idle.as_millis() as u64, "0-0", opts)
                .await
                .map_err(|e| bus.failed(&e).message)?;
            entries = claimed.claimed;
        }
        if entries.is_empty() {
            entries = read(bus, &mut conn, &log, ">", batch).await?;
        }
        if entries.is_empty() {
            return Ok(total);
        }
        let n = entries.len();
        let mut messages: Vec<StoredMessage> = Vec::with_capacity(n);
        for e in &entries {
            match e.get::<String>("m").as_deref().and_then(buffer::decode) {
                Some(m) => messages.push(m),
                // Deleted from the log (or not a message): nothing to store.
                None => tracing::debug!(id = %e.id, "skipping a log entry that holds no message"),
            }
        }
        bus.store.archive(&messages).await.map_err(|e| e.to_string())?;
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let mut pipe = redis::pipe();
        pipe.atomic().xack(&log, GROUP, &ids).xdel(&log, &ids);
        for m in &messages {
            pipe.xdel(bus.key(&format!("h:{}", m.conv.storage_key())), &[format!("{}-1", m.seq)]);
        }
        let _: () = pipe.query_async(&mut conn).await.map_err(|e| bus.failed(&e).message)?;
        total += n;
        if n < batch && !claim_all {
            return Ok(total);
        }
    }
}

async fn read(
    bus: &RedisBus,
    conn: &mut redis::aio::MultiplexedConnection,
    log: &str,
    from: &str,
    count: usize,
) -> Result<Vec<StreamId>, String> {
    let opts = StreamReadOptions::default().group(GROUP, &bus.node).count(count);
    let reply: Option<StreamReadReply> =
        conn.xread_options(&[log], &[from], &opts).await.map_err(|e| bus.failed(&e).message)?;
    Ok(reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect())
}
