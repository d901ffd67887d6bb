//! The archiver: moves buffered messages from Redis into the database, on
//! every node, every `cluster.sync_interval`. The nodes share the log
//! stream through one consumer group, so each entry goes to one node; an
//! entry is acknowledged (and deleted) only after its batch is committed,
//! and the insert ignores a `msg_id` already stored. So two nodes syncing at
//! once store nothing twice, and a node dying mid-batch loses nothing: its
//! unacknowledged entries are claimed by another node once they have been
//! idle for `cluster.node_timeout`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};
use tokio::sync::{mpsc, oneshot};

use super::RedisBus;
use super::buffer;
use crate::protocol::ProtoError;
use crate::protocol::server::StoredMessage;

const GROUP: &str = "archivers";

/// The log stream (`P:logb`): one entry per published batch (see
/// publish.lua).
pub(super) const LOG: &str = "logb";
/// The log of nodes from before batches had an entry of their own: one
/// message per entry. Still archived, so that a cluster upgraded one node
/// at a time loses nothing (older nodes never read [`LOG`], whose entries
/// they would take for one message each).
const LEGACY_LOG: &str = "log";

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
            && match archive_logs(&bus, claim_all).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(messages = n, "taken off the log (archived, dead-lettered or destroyed)");
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

/// Archives what both logs hold for this node (the legacy one only if it
/// holds entries: only older nodes write it).
async fn archive_logs(bus: &RedisBus, claim_all: bool) -> Result<usize, String> {
    let mut n = pass(bus, claim_all, &bus.key(LOG)).await?;
    let legacy = bus.key(LEGACY_LOG);
    let mut conn = bus.conn().map_err(|e: ProtoError| e.message)?;
    // An empty one costs this one XLEN: it is left alone (an older node's
    // pass makes it, empty, with its group, and then reads it).
    let there: u64 = conn.xlen(&legacy).await.map_err(|e| bus.failed(&e).message)?;
    if there > 0 {
        n += pass(bus, claim_all, &legacy).await?;
        // Emptied: gone. In one step with the check (an older node may be
        // adding to it); if one adds to it later, its group is made again
        // at 0 (by the next pass here, or an older node's). An older node
        // in the middle of a pass then fails that pass once ("NOGROUP",
        // logged) and archives on its next.
        let _: i64 = redis::Script::new(DROP_IF_EMPTY)
            .key(&legacy)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| bus.failed(&e).message)?;
    }
    Ok(n)
}

/// Deletes a stream (with its consumer groups) if it holds no entry.
const DROP_IF_EMPTY: &str = "if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end return 0";

/// Archives until the log `log` has nothing more for this node.
/// `claim_all`: also take entries other nodes hold, however recently (a
/// settle).
async fn pass(bus: &RedisBus, claim_all: bool, log: &str) -> Result<usize, String> {
    let mut conn = bus.conn().map_err(|e: ProtoError| e.message)?;
    let created: Result<(), _> = conn.xgroup_create_mkstream(log, GROUP, "0").await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(bus.failed(&e).message);
    }
    let batch = bus.config.sync_batch;
    let min_idle = if claim_all { Duration::ZERO } else { bus.config.node_timeout };
    // A settling pass takes what was there when it began, not what keeps
    // coming (it would never end under steady traffic).
    let until: Option<String> = if claim_all {
        let newest: redis::streams::StreamRangeReply =
            conn.xrevrange_count(log, "+", "-", 1).await.map_err(|e| bus.failed(&e).message)?;
        newest.ids.first().map(|e| e.id.clone())
    } else {
        None
    };
    // Messages taken off the log (archived, dead-lettered or of destroyed rooms).
    let mut taken = 0;
    // Entries per read: a log entry holds a batch of messages (see
    // publish.lua), so reads are sized by how many the last one held, to
    // take about `sync_batch` messages each time; the first assumes full
    // batches. A read never asks for more than twice the entries of the
    // one before, and the entries past about `sync_batch` messages are left
    // pending for the next read (they are this node's, read first): so a
    // pass never holds more than about one `sync_batch` of messages at once.
    let mut count = batch.div_ceil(bus.config.publish_batch.max(1));
    loop {
        // This node's own unfinished entries first (a failed commit), then
        // entries a dead (or, when settling, any) node left, then new ones.
        let mut entries = read(bus, &mut conn, log, "0", count).await?;
        if entries.is_empty() {
            let opts = StreamAutoClaimOptions::default().count(count);
            let claimed: redis::streams::StreamAutoClaimReply = conn
                .xautoclaim_options(log, GROUP, &bus.node, min_idle.as_millis() as u64, "0-0", opts)
                .await
                .map_err(|e| bus.failed(&e).message)?;
            entries = claimed.claimed;
        }
        if entries.is_empty() {
            entries = read(bus, &mut conn, log, ">", count).await?;
        }
        if entries.is_empty() {
            return Ok(taken);
        }
        let got = entries.len();
        let sizes: Vec<usize> = entries.iter().map(buffer::log_len).collect();
        entries.truncate(within(&sizes, batch));
        let n = entries.len();
        let past_start =
            claim_all && until.as_deref().is_none_or(|u| entries.iter().any(|e| stream_id(&e.id) > stream_id(u)));
        let mut messages: Vec<StoredMessage> = Vec::with_capacity(n);
        let mut dead: Vec<(&str, String)> = Vec::new();
        for e in &entries {
            for (frame, conv, sender) in buffer::log_messages(e) {
                match buffer::decode(&frame, conv.as_deref(), sender.as_deref()) {
                    Some(m) => messages.push(m),
                    None => dead.push((e.id.as_str(), frame)),
                }
            }
        }
        let held = messages.len() + dead.len();
        drop_destroyed(bus, &mut conn, &mut messages).await?;
        // At most `sync_batch` messages per transaction.
        let mut archived = Vec::with_capacity(messages.len());
        let mut rest = messages;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(batch));
            let chunk = std::mem::replace(&mut rest, tail);
            archived.extend(archive(bus, &mut conn, &entries, chunk, &mut dead).await?);
        }
        let messages = archived;
        if !dead.is_empty() {
            let mut pipe = redis::pipe();
            for (id, frame) in &dead {
                tracing::error!(id, "a buffered entry cannot be archived; kept in the dead-letter stream");
                pipe.xadd(bus.key("dead"), "*", &[("id", *id), ("m", frame.as_str())]);
            }
            let _: () = pipe.query_async(&mut conn).await.map_err(|e| bus.failed(&e).message)?;
        }
        // Notifications are decided (written to the outbox) before the
        // entries are acknowledged: a node dying in between leaves them to
        // another node, which decides again (the outbox keeps each event once).
        if let Some(decide) = &bus.decide
            && !messages.is_empty()
        {
            let (done, decided) = oneshot::channel();
            let sent = decide.tx.send((messages.clone(), Some(done))).await.is_ok();
            if sent && decided.await != Ok(true) {
                return Err("the notification decision failed; the messages stay buffered".into());
            }
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        // Each conversation's archived entries leave its stream in one XDEL.
        let mut streams: HashMap<String, Vec<String>> = HashMap::new();
        for m in &messages {
            streams.entry(m.conv.storage_key()).or_default().push(format!("{}-1", m.seq));
        }
        let mut pipe = redis::pipe();
        pipe.atomic().xack(log, GROUP, &ids).xdel(log, &ids);
        for (conv, seqs) in &streams {
            pipe.xdel(bus.key(&format!("h:{conv}")), seqs);
        }
        let _: () = pipe.query_async(&mut conn).await.map_err(|e| bus.failed(&e).message)?;
        taken += held;
        let asked = count;
        count = next_count(asked, batch, held, n);
        if n < got {
            continue; // the rest of the read is pending here: read first
        }
        if n < asked && !claim_all || past_start {
            return Ok(taken);
        }
    }
}

/// How many of a read's entries, holding `sizes` messages each, make about
/// `batch` messages: as many as fit, and always the first.
fn within(sizes: &[usize], batch: usize) -> usize {
    let mut sum = 0;
    let fit = sizes.iter().take_while(|&&k| {
        sum += k;
        sum <= batch
    });
    fit.count().max(1).min(sizes.len())
}

/// The entries to ask for next, after a read of `asked` that took `n`
/// entries holding `held` messages: about `batch` messages at that many per
/// entry, but at most twice as many entries as asked.
fn next_count(asked: usize, batch: usize, held: usize, n: usize) -> usize {
    (batch / held.div_ceil(n.max(1)).max(1)).clamp(1, asked.max(1) * 2)
}

/// Stores one transaction's worth of messages; if the database refuses
/// them, one by one, moving those it refuses to `dead` (and out of their
/// conversation's stream). Returns the stored ones.
async fn archive<'e>(
    bus: &RedisBus,
    conn: &mut redis::aio::MultiplexedConnection,
    entries: &'e [StreamId],
    messages: Vec<StoredMessage>,
    dead: &mut Vec<(&'e str, String)>,
) -> Result<Vec<StoredMessage>, String> {
    let Err(e) = bus.store.archive(&messages).await else { return Ok(messages) };
    // One bad row must not hold up the rest forever: find it, if the
    // database is there at all.
    bus.store.ping().await.map_err(|_| e.to_string())?;
    let mut good = Vec::with_capacity(messages.len());
    for m in messages {
        match bus.store.archive(std::slice::from_ref(&m)).await {
            Ok(()) => good.push(m),
            Err(e) => {
                tracing::error!(msg_id = %m.msg_id, error = %e, "the database refuses a message; moved to the dead-letter stream");
                if let Some(found) = frame_of(entries, m.msg_id) {
                    dead.push(found);
                }
                let _: redis::RedisResult<()> =
                    conn.xdel(bus.key(&format!("h:{}", m.conv.storage_key())), &[format!("{}-1", m.seq)]).await;
            }
        }
    }
    Ok(good)
}

/// The log entry (its id) and the frame of the message `msg_id`, by the
/// frame's own `msg_id` (a text may quote another message's id).
fn frame_of(entries: &[StreamId], msg_id: ulid::Ulid) -> Option<(&str, String)> {
    entries.iter().find_map(|x| {
        let frame =
            buffer::log_messages(x).into_iter().map(|(f, ..)| f).find(|f| buffer::msg_id_of(f) == Some(msg_id))?;
        Some((x.id.as_str(), frame))
    })
}

/// A stream entry id as (ms, seq), for comparisons.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Drops messages of destroyed rooms (at or below the room's `gone` mark,
/// see destroy.lua): their rows were deleted, they must not come back.
async fn drop_destroyed(
    bus: &RedisBus,
    conn: &mut redis::aio::MultiplexedConnection,
    messages: &mut Vec<StoredMessage>,
) -> Result<(), String> {
    let mut convs: Vec<String> = messages.iter().map(|m| m.conv.storage_key()).collect();
    convs.sort();
    convs.dedup();
    if convs.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = convs.iter().map(|c| bus.key(&format!("gone:{c}"))).collect();
    let marks: Vec<Option<u64>> =
        redis::cmd("MGET").arg(&keys).query_async(conn).await.map_err(|e| bus.failed(&e).message)?;
    if marks.iter().all(Option::is_none) {
        return Ok(());
    }
    messages.retain(|m| {
        let i = convs.binary_search(&m.conv.storage_key()).unwrap_or(0);
        marks[i].is_none_or(|gone| m.seq > gone)
    });
    Ok(())
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

/// Log entries (batches of messages: counting the messages would mean
/// reading them all) not yet archived, and the age of the oldest of them
/// (for the metrics); None when Redis does not answer.
pub(crate) async fn backlog(bus: &RedisBus) -> Option<(u64, Duration)> {
    let mut conn = bus.conn().ok()?;
    let (mut len, mut age) = (0, Duration::ZERO);
    for log in [bus.key(LOG), bus.key(LEGACY_LOG)] {
        len += conn.xlen::<_, u64>(&log).await.ok()?;
        let oldest: redis::streams::StreamRangeReply = conn.xrange_count(&log, "-", "+", 1).await.ok()?;
        if let Some(e) = oldest.ids.first() {
            let (ms, _) = stream_id(&e.id);
            age = age.max(Duration::from_millis((crate::protocol::now_ms() as u64).saturating_sub(ms)));
        }
    }
    Some((len, age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_takes_about_one_sync_batch() {
        assert_eq!(within(&[256, 256, 256, 256], 500), 1);
        assert_eq!(within(&[100, 200, 200, 1], 500), 3);
        assert_eq!(within(&[1000], 500), 1, "an entry larger than a batch is still taken");
        assert_eq!(within(&[1, 1], 500), 2);
        assert_eq!(within(&[0, 0, 3], 2), 2, "deleted entries hold nothing");
    }

    #[test]
    fn reads_grow_at_most_twofold() {
        // 4 entries of one message each: not 1000 entries (of up to a
        // publish_batch each) next, but 8.
        assert_eq!(next_count(4, 1000, 4, 4), 8);
        assert_eq!(next_count(1000, 1000, 1000, 4), 4, "full entries: fewer at once");
        assert_eq!(next_count(4, 1000, 0, 0), 8);
        assert_eq!(next_count(1, 1, 5, 1), 1);
    }

    #[test]
    fn a_refused_message_is_found_by_its_own_id_not_a_text_quoting_it() {
        let (a, b) = (ulid::Ulid::from_parts(1, 1), ulid::Ulid::from_parts(1, 2));
        let frame = |id: ulid::Ulid, text: &str| format!(r#"{{"type":"message","msg_id":"{id}","text":"{text}"}}"#);
        let field = |k: &str, v: &str| (k.to_owned(), redis::Value::BulkString(v.as_bytes().to_vec()));
        let mut entry = StreamId { id: "7-0".into(), ..Default::default() };
        entry.map = [field("m", &frame(a, &format!("see {b}"))), field("m1", &frame(b, "hi"))].into_iter().collect();
        let entries = [entry];
        assert_eq!(frame_of(&entries, b), Some(("7-0", frame(b, "hi"))));
        assert_eq!(frame_of(&entries, a).map(|(_, f)| f), Some(frame(a, &format!("see {b}"))));
        assert_eq!(frame_of(&entries, ulid::Ulid::nil()), None);
    }
}
