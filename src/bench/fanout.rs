//! `chat bench fanout`: rooms of members, publishers saying into them, and
//! the delivery rate and latency the members see.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::flow::{PubFlow, Shared};
use super::net::{Target, Ws, await_setup};
use super::plan::{FanoutArgs, Targets};
use super::publisher::{PubParams, PubResult, publish};
use super::receiver::{RecvResult, receive};
use super::report::{Cpu, Totals, report};
use super::sys::{check_fd_limit, cpu_secs, on_own_runtime, rss_kib};

pub(crate) async fn run(args: FanoutArgs) -> Result<()> {
    let publishers = args.publishers.unwrap_or(args.rooms);
    if args.rooms == 0 || publishers == 0 {
        bail!("need at least one room and one publisher");
    }
    if args.url.is_empty() {
        bail!("need at least one --url");
    }
    if args.rate == 0.0 && args.window == 0 {
        bail!("--window must be at least 1 with --rate 0");
    }
    check_fd_limit(args.rooms * args.members + publishers + 64);
    let threads = args.threads;
    on_own_runtime(threads, move || run_inner(args, publishers)).await
}

/// What every connection task needs for its set-up.
#[derive(Clone)]
struct Ctx {
    targets: Arc<Targets>,
    permits: Arc<Semaphore>,
    setup_tx: mpsc::UnboundedSender<Result<(), String>>,
    shared: Arc<Shared>,
}

impl Ctx {
    /// Connect, hello and join (at most `--concurrency` at once), reporting
    /// the outcome to the set-up collector.
    async fn session(&self, target: &Target, i: usize, nick: &str, room: &str) -> Option<Ws> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let res = target.session(i, nick, Some(room)).await;
        drop(permit);
        let _ = self.setup_tx.send(match &res {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{nick}: {e:#}")),
        });
        res.ok()
    }
}

fn room_name(r: usize) -> String {
    format!("fanout-{r}")
}

async fn run_inner(args: FanoutArgs, publishers: usize) -> Result<()> {
    let targets = Arc::new(Targets::resolve(&args).await?);
    let receivers = args.rooms * args.members;
    let pub_rooms: Vec<usize> = (0..publishers).map(|p| p % args.rooms).collect();
    let window = if args.rate > 0.0 { 0 } else { args.window };
    let mut shared = Shared::new(args.rooms, receivers, &pub_rooms, window);
    if targets.split() {
        shared.pub_node = (0..publishers).map(|p| targets.publisher_node(p)).collect();
    }
    let shared = Arc::new(shared);
    let mode = if args.rate > 0.0 { format!("{} msgs/s", args.rate) } else { format!("window {window}") };
    eprintln!(
        "fanout: {} rooms x {} members, {publishers} publishers, {mode} {}",
        args.rooms,
        args.members,
        targets.describe()
    );

    // Set-up: every member and publisher connects, says hello and joins
    // before anything is published, so every member can see every message.
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        targets: targets.clone(),
        permits: Arc::new(Semaphore::new(args.concurrency.max(1))),
        setup_tx,
        shared: shared.clone(),
    };
    let setup_start = Instant::now();
    let (go_tx, go_rx) = watch::channel(None);
    let (recv_stops, recv_tasks) = spawn_receivers(&args, &ctx);
    let (pub_stops, pub_tasks) = spawn_publishers(&args, &ctx, &pub_rooms, go_rx);
    drop(ctx);

    let setup = await_setup(&mut setup_rx, receivers + publishers, setup_start).await;
    let joined: Vec<u64> = shared.room_live.iter().map(|n| u64::from(n.load(Relaxed))).collect();
    eprintln!("set-up done in {:.2}s: {} connected, {} failed", setup.secs, setup.ok, setup.failed);
    if setup.ok == joined.iter().sum::<u64>() as usize {
        bail!(
            "no publisher could connect and join (first error: {})",
            setup.errors.first().map_or("none", String::as_str)
        );
    }

    // Publish from start to end; measure from start + warmup.
    let start = shared.now_us() + 100_000;
    let measure_start = start + args.warmup * 1_000_000;
    let end = measure_start + args.duration * 1_000_000;
    shared.measure_start_us.store(measure_start, Relaxed);
    shared.measure_end_us.store(end, Relaxed);
    let _ = go_tx.send(Some((start, end)));
    let cpu = watch_progress(&shared, &args.pid, measure_start, end).await;
    let server_rss: Vec<u64> = args.pid.iter().map(|&p| rss_kib(p).unwrap_or(0)).collect();

    // Drain: wait for outstanding acks and deliveries, at most --drain s.
    let expected = || -> u64 {
        let acked = |p: &PubFlow| p.acked.0.load(Relaxed);
        shared.pubs.iter().map(|p| acked(p) * joined[p.room]).sum()
    };
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    while Instant::now() < drain_deadline {
        let (sent, acked, failed) = shared.pub_totals();
        if sent == acked + failed && shared.delivered() >= expected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for s in recv_stops.into_iter().chain(pub_stops) {
        let _ = s.send(());
    }
    let mut recv = Vec::with_capacity(receivers);
    for t in recv_tasks {
        if let Ok(Some(r)) = t.await {
            recv.push(r);
        }
    }
    let mut pubs = Vec::with_capacity(publishers);
    // A writer blocked on a full socket would never finish: abort it (its
    // counts are in `shared`, so the totals stay right).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(2);
    for t in pub_tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(give_up, t).await {
            Ok(Ok(Some(r))) => pubs.push(r),
            Ok(_) => {}
            Err(_) => abort.abort(),
        }
    }

    let (sent, acked, failed) = shared.pub_totals();
    let totals = Totals { sent, acked, failed, expected: expected() };
    report(&args, &targets, publishers, &setup, totals, &recv, &pubs, cpu, &server_rss);
    Ok(())
}

type Stops = Vec<oneshot::Sender<()>>;

/// Member `i` joins room `i / members` on server `member_idx(i % members)`
/// and then receives until stopped.
fn spawn_receivers(args: &FanoutArgs, ctx: &Ctx) -> (Stops, Vec<JoinHandle<Option<RecvResult>>>) {
    let receivers = args.rooms * args.members;
    let (mut stops, mut tasks) = (Vec::with_capacity(receivers), Vec::with_capacity(receivers));
    for i in 0..receivers {
        let room = i / args.members;
        let (stop_tx, stop) = oneshot::channel();
        stops.push(stop_tx);
        let (ctx, nick) = (ctx.clone(), format!("{}{i}", args.nick_prefix));
        let node = ctx.targets.member_idx(i % args.members);
        tasks.push(tokio::spawn(async move {
            let ws = ctx.session(&ctx.targets.members[node], i, &nick, &room_name(room)).await?;
            ctx.shared.room_live[room].fetch_add(1, Relaxed);
            Some(receive(ws, ctx.shared, i, room, node, stop).await)
        }));
    }
    (stops, tasks)
}

/// Publisher `p` joins room `pub_rooms[p]` (on `--publish-url`, or
/// round-robin over `--url`), waits for the go signal (the
/// publishing start and end, µs since the epoch), then publishes.
fn spawn_publishers(
    args: &FanoutArgs,
    ctx: &Ctx,
    pub_rooms: &[usize],
    go: watch::Receiver<Option<(u64, u64)>>,
) -> (Stops, Vec<JoinHandle<Option<PubResult>>>) {
    let publishers = pub_rooms.len();
    let rate = args.rate / publishers as f64;
    let (mut stops, mut tasks) = (Vec::with_capacity(publishers), Vec::with_capacity(publishers));
    for (p, &room) in pub_rooms.iter().enumerate() {
        let (stop_tx, stop) = oneshot::channel();
        stops.push(stop_tx);
        let (ctx, mut go, nick) = (ctx.clone(), go.clone(), format!("{}p{p}", args.nick_prefix));
        // Stagger fixed-rate publishers over one interval so their messages
        // do not all leave at the same instant.
        let offset_us = if rate > 0.0 { (p as f64 / publishers as f64 * 1e6 / rate) as u64 } else { 0 };
        let size = args.size;
        tasks.push(tokio::spawn(async move {
            let name = room_name(room);
            let target = ctx.targets.publisher(p);
            let ws = ctx.session(target, ctx.shared.progress.len() + p, &nick, &name).await?;
            let (start_us, end_us) = (*go.wait_for(Option::is_some).await.ok()?)?;
            let params = PubParams { idx: p, room: name, size, rate, start_us: start_us + offset_us, end_us };
            Some(publish(ws, ctx.shared, params, stop).await)
        }));
    }
    (stops, tasks)
}

/// Prints progress every second until `end`; returns the CPU the bench
/// (and each of `pids`) used between `measure_start` and `end`.
async fn watch_progress(shared: &Shared, pids: &[u32], measure_start: u64, end: u64) -> Cpu {
    let cpu_now = || Cpu {
        bench: cpu_secs(None).unwrap_or(0.0),
        server: pids.iter().map(|&p| cpu_secs(Some(p)).unwrap_or(0.0)).collect(),
    };
    let mut cpu_start = None;
    let mut last = (shared.delivered(), Instant::now());
    while shared.now_us() < end {
        let mut wake = shared.at(end).min(tokio::time::Instant::now() + Duration::from_secs(1));
        if cpu_start.is_none() {
            wake = wake.min(shared.at(measure_start));
        }
        tokio::time::sleep_until(wake).await;
        let now = shared.now_us();
        if cpu_start.is_none() && now >= measure_start {
            cpu_start = Some(cpu_now());
        }
        let (d, t) = (shared.delivered(), Instant::now());
        let (sent, acked, _) = shared.pub_totals();
        let phase = if now < measure_start { "warm-up" } else { "measure" };
        let rate = (d - last.0) as f64 / t.duration_since(last.1).as_secs_f64();
        eprintln!("  {phase}: sent {sent} acked {acked} delivered {d} ({rate:.0}/s)");
        last = (d, t);
    }
    let end = cpu_now();
    let start = cpu_start.unwrap_or_else(|| end.clone());
    Cpu { bench: end.bench - start.bench, server: end.server.iter().zip(&start.server).map(|(e, s)| e - s).collect() }
}
