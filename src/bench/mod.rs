//! `chat bench`: a load generator that talks to a running server over the
//! public WebSocket protocol (`/ws`), as real clients do.
//!
//! # `chat bench conns`: idle connections and memory
//!
//! Opens `-n` sessions (`hello`, then `join` of room `bench-<i / room-size>`),
//! `--concurrency` attempts at a time, spread over source addresses
//! 127.0.0.1..=127.0.0.K (`--source-ips`) so more connections fit than one
//! address has ephemeral ports; with `--url` given several times,
//! connection i goes to url[i % n]. Once all are set up it waits `--settle`
//! seconds, reads the server's VmRSS (`--pid`; given several times, the
//! sum) and keeps every connection open (reading, so pings are answered)
//! until `--hold` seconds have passed.
//! Reports: connected/failed (first errors), time to connect all, server RSS
//! before/after and the difference per connection, and how many the server
//! closed during the hold.
//!
//! # `chat bench fanout`: delivery rate and latency
//!
//! `--rooms` rooms (`fanout-<r>`) of `--members` receiving members each, plus
//! `--publishers` publishers (round-robin over the rooms, also joined). When
//! everyone has joined, the publishers `say` for `--warmup` + `--duration`
//! seconds, either at `--rate` messages/s in total or, with `--rate 0`, as
//! fast as possible with at most `--window` messages per publisher not yet
//! received by all of its room's members (flow control: the run measures the
//! server, not a queue growing without bound). Each text is
//! `"<publisher> <counter> <sent_us> <padding>"`, `sent_us` being microseconds
//! on a monotonic clock shared by the whole bench process, so a member's
//! latency is its receive time minus `sent_us`: server queueing, fan-out and
//! both processes' scheduling included.
//!
//! Several nodes (a cluster sharing one Redis): give `--url` once per node.
//! Member k of every room connects to url[k % n], so each room has members
//! on every node; publisher p connects to url[p % n], or with
//! `--publish-url` every publisher connects there (e.g. publishers on node 1
//! and `--url` node 2 alone: every delivery crosses nodes). Which node a
//! publisher is on is decided by address, so use the same spelling in
//! `--publish-url` as in `--url`. The JSON line says `urls` (how many) and
//! `publish_url` (1 if given).
//!
//! Reading the report:
//! - `deliveries/s` and `msgs/s` count deliveries and acks that arrived in
//!   the measured `--duration` window (after the warm-up).
//! - latency percentiles cover messages sent after the warm-up; buckets are
//!   within 0.8 %, the max is exact. With `--rate 0` the window is always
//!   full, so latency ≈ window / msgs-per-second (Little's law): compare
//!   latencies from fixed-rate runs, throughput from `--rate 0` runs.
//! - `expected` = acked messages × members that joined their room;
//!   `loss` = expected − received after waiting up to `--drain` seconds for
//!   stragglers. Non-zero loss comes with `closes` (1013 = the server dropped
//!   a slow consumer) or a server bug. `unanswered` messages got neither ack
//!   nor error (the publisher's connection died): those that were delivered
//!   anyway push loss below 0.
//! - `errors` are error frames the publishers got (e.g. `rate_limited`: raise
//!   the server's `limits.rate_per_sec`/`limits.burst` for benchmarks).
//! - `window stalls`: a full window that saw no progress for 1 s; its oldest
//!   message was given up on. Should be 0.
//! - with several nodes (several `--url`, or `--publish-url`): the latency
//!   split into `same node` (member on its publisher's node) and
//!   `cross-node` (JSON `same_*`/`cross_*`: samples, p50, p99, max).
//! - `cpu`: the bench's own CPU in the measured window (and the server's,
//!   with `--pid`). `--pid` may be given once per process to watch (each
//!   node, and `redis-server`, which is part of a cluster's message path):
//!   each is reported (JSON `pid<k>_cpu_pct`, `pid<k>_rss_kib`, k in the
//!   order given) and `server_cpu_pct`/`server_rss_kib` are their sums. A
//!   bench near 100 % of its `--threads` cores is the bottleneck, and the
//!   rates are a lower bound for the server.
//!
//! The server must let the bench in: `limits.rate_per_sec`/`limits.burst`
//! high (`CHAT_LIMITS__RATE_PER_SEC=1000000 CHAT_LIMITS__BURST=1000000`),
//! `rooms.auto_join` empty (`CHAT_ROOMS__AUTO_JOIN='[]'`, else every session
//! also lands in `lobby` and gets its presence traffic), and any per-IP
//! connection cap above the connections per source address.
//!
//! Both benches print human-readable lines and then exactly one line of JSON
//! (numbers only besides `"bench"`) on stdout; progress goes to stderr. They
//! run on their own runtime (`--threads`, default 1: a current-thread runtime,
//! which spends the least CPU per delivery, no cross-thread wake-ups, and
//! leaves the other core to the server on a two-core machine).

mod conns;
mod fanout;
mod flow;
mod net;
mod parse;
mod plan;
mod publisher;
mod receiver;
mod report;
mod stats;
mod sys;

pub use conns::ConnsArgs;
pub use plan::FanoutArgs;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Open many idle connections and report the server's memory per connection.
    Conns(ConnsArgs),
    /// Publish into rooms and report deliveries/s and latency.
    Fanout(FanoutArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Conns(args) => conns::run(args).await,
        BenchCommand::Fanout(args) => fanout::run(args).await,
    }
}
