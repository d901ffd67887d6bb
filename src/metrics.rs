//! What `GET /metrics` shows, in Prometheus text format.
//!
//! Each server owns its recorder (a `metrics_exporter_prometheus`
//! `PrometheusRecorder` that is never installed as the process's global
//! one), so several servers in one process — the tests start many — keep
//! their numbers apart. Every series with a fixed set of labels is
//! registered once, here, and kept as a handle: counting on a hot path is
//! one atomic add, with no lookup and no allocation. Series whose labels
//! are only known later (errors by code, HTTP requests by route and status)
//! are looked up when they happen; neither is on the fan-out path. Gauges
//! (connections, sessions, rooms, Redis) are read when scraped.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

use crate::protocol::ErrorCode;
use crate::protocol::server::Conv;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

const DURABLE_STEP: &str = "chat_durable_step_seconds";
/// Seconds: a SQLite commit takes about a millisecond, a slow disk or a
/// remote database tens of them; above a second something is wrong.
const DURABLE_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// How often histogram samples are folded into their buckets (see
/// [`Metrics::upkeep`]).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A server's metrics: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    s: Series,
}

/// The series with fixed labels, registered once.
struct Series {
    ws_connections_opened: Counter,
    ws_connections_open: Gauge,
    sio_connections_opened: Counter,
    sio_connections_open: Gauge,
    sessions: Gauge,
    rooms: Gauge,
    stored_room: Counter,
    stored_dm: Counter,
    stored_everyone: Counter,
    deliveries: Counter,
    durable_step: Histogram,
    durable_failures: Counter,
    slow_consumer_closes: Counter,
    redis_up: Gauge,
    archiver_backlog: Gauge,
    archiver_lag: Gauge,
}

/// An open WebSocket connection, for the `chat_connections` gauge.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What a scrape reads from the running server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub sessions: usize,
    pub rooms: usize,
    /// In a cluster only.
    pub cluster: Option<ClusterSnapshot>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterSnapshot {
    pub redis_up: bool,
    /// Buffer log entries (batches of messages) not yet in the database,
    /// and the age of the oldest of them (None when Redis did not answer).
    pub archiver: Option<(u64, Duration)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURABLE_STEP.into()), &DURABLE_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let s = metrics::with_local_recorder(&recorder, || {
            describe();
            Series {
                ws_connections_opened: metrics::counter!("chat_connections_opened_total", "transport" => "websocket"),
                ws_connections_open: metrics::gauge!("chat_connections", "transport" => "websocket"),
                sio_connections_opened: metrics::counter!("chat_connections_opened_total", "transport" => "socketio"),
                sio_connections_open: metrics::gauge!("chat_connections", "transport" => "socketio"),
                sessions: metrics::gauge!("chat_sessions"),
                rooms: metrics::gauge!("chat_rooms"),
                stored_room: metrics::counter!("chat_messages_stored_total", "kind" => "room"),
                stored_dm: metrics::counter!("chat_messages_stored_total", "kind" => "dm"),
                stored_everyone: metrics::counter!("chat_messages_stored_total", "kind" => "everyone"),
                deliveries: metrics::counter!("chat_deliveries_total"),
                durable_step: metrics::histogram!(DURABLE_STEP),
                durable_failures: metrics::counter!("chat_durable_step_failures_total"),
                slow_consumer_closes: metrics::counter!("chat_slow_consumer_closes_total"),
                redis_up: metrics::gauge!("chat_redis_up"),
                archiver_backlog: metrics::gauge!("chat_archiver_backlog_entries"),
                archiver_lag: metrics::gauge!("chat_archiver_lag_seconds"),
            }
        });
        Metrics(Arc::new(Inner { recorder, handle, s }))
    }

    /// A WebSocket connection was accepted (upgraded); it counts as open
    /// until the guard is dropped. (Not the edge's TCP count: a scrape is a
    /// connection too.)
    pub fn connection_opened(&self) -> OpenConnection {
        self.0.s.ws_connections_opened.increment(1);
        self.0.s.ws_connections_open.increment(1.0);
        OpenConnection(self.0.s.ws_connections_open.clone())
    }

    /// A Socket.IO (Engine.IO) connection was opened; it counts as open
    /// until the guard is dropped.
    pub fn socketio_connection_opened(&self) -> OpenConnection {
        self.0.s.sio_connections_opened.increment(1);
        self.0.s.sio_connections_open.increment(1.0);
        OpenConnection(self.0.s.sio_connections_open.clone())
    }

    /// Messages that passed the durable step, by kind.
    pub fn stored<'a>(&self, convs: impl IntoIterator<Item = &'a Conv>) {
        let (mut room, mut dm, mut everyone) = (0, 0, 0);
        for conv in convs {
            match conv {
                Conv::Room(_) => room += 1,
                Conv::Dm(..) => dm += 1,
                Conv::Everyone => everyone += 1,
            }
        }
        for (counter, n) in
            [(&self.0.s.stored_room, room), (&self.0.s.stored_dm, dm), (&self.0.s.stored_everyone, everyone)]
        {
            if n > 0 {
                counter.increment(n);
            }
        }
    }

    /// Stored messages handed to this node's sessions for fan-out: one per
    /// message (or per batch of frames about one), never per recipient.
    pub fn delivered(&self, n: u64) {
        self.0.s.deliveries.increment(n);
    }

    /// How long one durable step (a commit of a batch, or a Redis append)
    /// took, and whether it stored anything.
    pub fn durable_step(&self, took: Duration, ok: bool) {
        self.0.s.durable_step.record(took.as_secs_f64());
        if !ok {
            self.0.s.durable_failures.increment(1);
        }
    }

    /// Folds the histograms' samples into their buckets every few seconds
    /// until `stop`. The recorder keeps each sample (one per durable step)
    /// until then; a scrape does it too, but a server nobody scrapes would
    /// keep them all: 24 bytes a batch, 170 MB an hour at 2,000 commits a
    /// second.
    pub(crate) async fn upkeep(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.0.handle.run_upkeep(),
            }
        }
    }

    /// A session was closed because it did not read its frames (1013).
    pub fn slow_consumer_closed(&self) {
        self.0.s.slow_consumer_closes.increment(1);
    }

    /// An `error` frame sent to a client.
    pub fn error(&self, code: ErrorCode) {
        let code = error_label(code);
        metrics::with_local_recorder(&self.0.recorder, || {
            metrics::counter!("chat_errors_total", "code" => code).increment(1);
        });
    }

    /// An HTTP request answered: `route` is the matched route pattern
    /// (never the raw path, which would make a series per URL).
    pub fn http_request(&self, route: &str, status: u16) {
        let route = route.to_string();
        let status = status.to_string();
        metrics::with_local_recorder(&self.0.recorder, || {
            metrics::counter!("chat_http_requests_total", "route" => route, "status" => status).increment(1);
        });
    }

    /// The exposition text, with the gauges read from `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        let i = &self.0.s;
        i.sessions.set(now.sessions as f64);
        i.rooms.set(now.rooms as f64);
        if let Some(c) = &now.cluster {
            i.redis_up.set(if c.redis_up { 1.0 } else { 0.0 });
            if let Some((backlog, lag)) = c.archiver {
                i.archiver_backlog.set(backlog as f64);
                i.archiver_lag.set(lag.as_secs_f64());
            }
        }
        self.0.handle.run_upkeep();
        let text = self.0.handle.render();
        if now.cluster.is_some() {
            return text;
        }
        // On one node the cluster's series mean nothing: leave them out.
        drop_series(&text, &["chat_redis_up", "chat_archiver_backlog_entries", "chat_archiver_lag_seconds"])
    }
}

/// The wire name of an error code (`rate_limited`, ...).
fn error_label(code: ErrorCode) -> String {
    code.as_str().to_owned()
}

/// `text` without the lines (samples and comments) of the named series.
fn drop_series(text: &str, names: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line)
            .split([' ', '{'])
            .next()
            .unwrap_or("");
        if !names.contains(&name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("chat_connections_opened_total", "Connections accepted, by transport.");
    describe_gauge!("chat_connections", "Open connections, by transport.");
    describe_gauge!("chat_sessions", "Identified sessions on this node.");
    describe_gauge!("chat_rooms", "Rooms with members on this node.");
    describe_counter!(
        "chat_messages_stored_total",
        "Messages that passed the durable step, by kind (room, dm, everyone)."
    );
    describe_counter!("chat_deliveries_total", "Stored messages fanned out to this node's sessions (one per message).");
    describe_histogram!(DURABLE_STEP, Unit::Seconds, "Time one durable step took (a batch commit, or a Redis append).");
    describe_counter!("chat_durable_step_failures_total", "Durable steps that failed (senders got `unavailable`).");
    describe_counter!("chat_slow_consumer_closes_total", "Sessions closed with 1013 because they did not read.");
    describe_counter!("chat_errors_total", "Error frames sent to clients, by code.");
    describe_counter!("chat_http_requests_total", "HTTP requests, by route and status.");
    describe_gauge!("chat_redis_up", "1 when the cluster's Redis answers a ping, else 0.");
    describe_gauge!(
        "chat_archiver_backlog_entries",
        "Redis log entries (one per published batch: many messages each under load) not yet in the database."
    );
    describe_gauge!("chat_archiver_lag_seconds", "Age of the oldest log entry not yet in the database.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_keep_their_numbers_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.delivered(3);
        a.error(ErrorCode::RateLimited);
        a.stored([&Conv::Everyone]);
        a.durable_step(Duration::from_millis(2), true);
        let text = a.render(&Snapshot { sessions: 2, ..Default::default() });
        assert!(text.contains("chat_deliveries_total 3"), "{text}");
        assert!(text.contains("chat_errors_total{code=\"rate_limited\"} 1"), "{text}");
        assert!(text.contains("chat_messages_stored_total{kind=\"everyone\"} 1"), "{text}");
        assert!(text.contains("chat_durable_step_seconds_bucket{le=\"0.0025\"} 1"), "{text}");
        assert!(text.contains("chat_sessions 2"), "{text}");
        assert!(!text.contains("chat_redis_up"), "{text}");
        let text = b.render(&Snapshot::default());
        assert!(text.contains("chat_deliveries_total 0"), "{text}");
        assert!(!text.contains("rate_limited"), "{text}");
    }
}
