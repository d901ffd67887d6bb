//! What a fanout run was asked for: its flags ([`FanoutArgs`]) and the
//! servers they name ([`Targets`]). Both the run ([`super::fanout`]) and its
//! report ([`super::report`]) read them; neither imports the other.

use anyhow::Result;

use super::net::Target;

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Server WebSocket URL. Give it once per cluster node to spread the
    /// members: member i of every room connects to url[i % n].
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws", num_args = 1)]
    pub(crate) url: Vec<String>,
    /// Where every publisher connects (default: publisher p to url[p % n]).
    #[arg(long)]
    pub(crate) publish_url: Option<String>,
    /// Number of rooms (`fanout-<r>`).
    #[arg(long, default_value_t = 100)]
    pub(crate) rooms: usize,
    /// Receiving members per room (publishers not included).
    #[arg(long, default_value_t = 10)]
    pub(crate) members: usize,
    /// Publisher connections, round-robin over rooms (default: one per room).
    #[arg(long)]
    pub(crate) publishers: Option<usize>,
    /// Total messages per second over all publishers; 0 = as fast as the
    /// window allows.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Seconds of publishing before measuring starts.
    #[arg(long, default_value_t = 1)]
    pub(crate) warmup: u64,
    /// With --rate 0: messages per publisher sent but not yet received by
    /// every member of its room.
    #[arg(long, default_value_t = 64)]
    pub(crate) window: u32,
    /// Spread connections over source addresses 127.0.0.1..=127.0.0.K.
    #[arg(long, default_value_t = 50)]
    pub(crate) source_ips: u32,
    /// Members are `<prefix><i>`, publishers `<prefix>p<j>`.
    #[arg(long, default_value = "f")]
    pub(crate) nick_prefix: String,
    /// Length of each message's text in bytes (padded with `x`).
    #[arg(long, default_value_t = 32)]
    pub(crate) size: usize,
    /// Connection attempts in flight during set-up.
    #[arg(long, default_value_t = 200)]
    pub(crate) concurrency: usize,
    /// Most seconds to wait after publishing for outstanding deliveries.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) drain: f64,
    /// Runtime threads for the bench (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Read buffer per connection in bytes (bigger batches more frames per read).
    #[arg(long, default_value_t = 16 * 1024)]
    pub(crate) read_buffer: usize,
    /// Server pid: report its CPU use over the measured window and its RSS.
    /// Give it once per process to watch (each node, Redis): each is
    /// reported, and `server_cpu_pct`/`server_rss_kib` are their sums.
    #[arg(long)]
    pub(crate) pid: Vec<u32>,
    /// Also append the result's JSON line to this file (JSON Lines: a
    /// record of runs to compare later).
    #[arg(long)]
    pub(crate) json_out: Option<std::path::PathBuf>,
}

/// The servers to connect to: members round-robin over `members` (by their
/// index in the room), publishers to `publish` or round-robin too.
pub(crate) struct Targets {
    pub(crate) members: Vec<Target>,
    pub(crate) publish: Option<Target>,
}

impl Targets {
    pub(crate) async fn resolve(args: &FanoutArgs) -> Result<Self> {
        let mut members = Vec::with_capacity(args.url.len());
        for url in &args.url {
            members.push(Target::resolve(url, args.source_ips, args.read_buffer).await?);
        }
        let publish = match &args.publish_url {
            Some(url) => Some(Target::resolve(url, args.source_ips, args.read_buffer).await?),
            None => None,
        };
        Ok(Self { members, publish })
    }

    /// Which of `members` the room's `k`-th member connects to.
    pub(crate) fn member_idx(&self, k: usize) -> usize {
        k % self.members.len()
    }

    pub(crate) fn publisher(&self, p: usize) -> &Target {
        self.publish.as_ref().unwrap_or(&self.members[p % self.members.len()])
    }

    /// Index into `members` of publisher `p`'s server (`usize::MAX` when
    /// `--publish-url` is none of the `--url`s; compared by address).
    pub(crate) fn publisher_node(&self, p: usize) -> usize {
        match &self.publish {
            Some(t) => self.members.iter().position(|m| m.addr == t.addr).unwrap_or(usize::MAX),
            None => p % self.members.len(),
        }
    }

    /// Whether some publisher and member may be on different nodes, so
    /// latency is split into same-node and cross-node.
    pub(crate) fn split(&self) -> bool {
        self.members.len() > 1 || self.publish.is_some()
    }

    pub(crate) fn describe(&self) -> String {
        let addrs: Vec<String> = self.members.iter().map(|t| t.addr.to_string()).collect();
        match &self.publish {
            Some(p) => format!("members -> {}, publishers -> {}", addrs.join(", "), p.addr),
            None => format!("-> {}", addrs.join(", ")),
        }
    }
}
