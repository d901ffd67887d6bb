//! `chat bench fanout`: rooms of members, publishers saying into them, and
//! the delivery rate and latency the members see.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::flow::Shared;
use super::net::{Target, await_setup};
use super::publisher::{PubParams, PubResult, publish};
use super::receiver::{RecvResult, receive};
use super::report::{Cpu, Totals, report};
use super::sys::{check_fd_limit, cpu_secs, on_own_runtime, rss_kib};

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Server WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Number of rooms (`fanout-<r>`).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Receiving members per room (publishers not included).
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Publisher connections, round-robin over rooms (default: one per room).
    #[arg(long)]
    pub publishers: Option<usize>,
    /// Total messages per second over all publishers; 0 = as fast as the
    /// window allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of publishing before measuring starts.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// With --rate 0: messages per publisher sent but not yet received by
    /// every member of its room.
    #[arg(long, default_value_t = 64)]
    pub window: u32,
    /// Spread connections over source addresses 127.0.0.1..=127.0.0.K.
    #[arg(long, default_value_t = 50)]
    pub source_ips: u32,
    /// Members are `<prefix><i>`, publishers `<prefix>p<j>`.
    #[arg(long, default_value = "f")]
    pub nick_prefix: String,
    /// Length of each message's text in bytes (padded with `x`).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Connection attempts in flight during set-up.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Most seconds to wait after publishing for outstanding deliveries.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Runtime threads for the bench (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Read buffer per connection in bytes (bigger batches more frames per read).
    #[arg(long, default_value_t = 16 * 1024)]
    pub read_buffer: usize,
    /// Server pid: report its CPU use over the measured window and its RSS.
    #[arg(long)]
    pub pid: Option<u32>,
}

pub async fn run(args: FanoutArgs) -> Result<()> {
    let publishers = args.publishers.unwrap_or(args.rooms);
    if args.rooms == 0 || publishers == 0 {
        bail!("need at least one room and one publisher");
    }
    if args.rate == 0.0 && args.window == 0 {
        bail!("--window must be at least 1 with --rate 0");
    }
    check_fd_limit(args.rooms * args.members + publishers + 64);
    let threads = args.threads;
    on_own_runtime(threads, move || run_inner(args, publishers)).await
}

async fn run_inner(args: FanoutArgs, publishers: usize) -> Result<()> {
    let target = Arc::new(Target::resolve(&args.url, args.source_ips, args.read_buffer).await?);
    let receivers = args.rooms * args.members;
    let pub_rooms: Vec<usize> = (0..publishers).map(|p| p % args.rooms).collect();
    let window = if args.rate > 0.0 { 0 } else { args.window };
    let shared = Arc::new(Shared::new(args.rooms, receivers, &pub_rooms, window));
    let room_name = |r: usize| format!("fanout-{r}");
    eprintln!(
        "fanout: {} rooms x {} members, {publishers} publishers, {} -> {}",
        args.rooms,
        args.members,
        if args.rate > 0.0 { format!("{} msgs/s", args.rate) } else { format!("window {window}") },
        target.addr
    );

    // Set-up: every member and publisher connects, says hello and joins
    // before anything is published, so every member can see every message.
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(false);
    let setup_start = Instant::now();

    let mut recv_stops = Vec::with_capacity(receivers);
    let mut recv_tasks: Vec<JoinHandle<Option<RecvResult>>> = Vec::with_capacity(receivers);
    for i in 0..receivers {
        let room = i / args.members;
        let (stop_tx, stop_rx) = oneshot::channel();
        recv_stops.push(stop_tx);
        let (target, permits, setup_tx, shared) = (target.clone(), permits.clone(), setup_tx.clone(), shared.clone());
        let (nick, name) = (format!("{}{i}", args.nick_prefix), room_name(room));
        recv_tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.ok()?;
            let res = target.session(i, &nick, Some(&name)).await;
            drop(permit);
            match res {
                Ok(ws) => {
                    shared.room_live[room].fetch_add(1, Relaxed);
                    let _ = setup_tx.send(Ok(()));
                    Some(receive(ws, shared, i, room, stop_rx).await)
                }
                Err(e) => {
                    let _ = setup_tx.send(Err(format!("member {nick}: {e:#}")));
                    None
                }
            }
        }));
    }

    let start_us = Arc::new(std::sync::OnceLock::<(u64, u64)>::new());
    let per_pub_rate = args.rate / publishers as f64;
    let mut pub_stops = Vec::with_capacity(publishers);
    let mut pub_tasks: Vec<JoinHandle<Option<PubResult>>> = Vec::with_capacity(publishers);
    for (p, &room) in pub_rooms.iter().enumerate() {
        let (stop_tx, stop_rx) = oneshot::channel();
        pub_stops.push(stop_tx);
        let (target, permits, setup_tx, shared) = (target.clone(), permits.clone(), setup_tx.clone(), shared.clone());
        let (mut go, times) = (go_rx.clone(), start_us.clone());
        let (nick, name) = (format!("{}p{p}", args.nick_prefix), room_name(room));
        let size = args.size;
        pub_tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.ok()?;
            let res = target.session(receivers + p, &nick, Some(&name)).await;
            drop(permit);
            let ws = match res {
                Ok(ws) => ws,
                Err(e) => {
                    let _ = setup_tx.send(Err(format!("publisher {nick}: {e:#}")));
                    return None;
                }
            };
            let _ = setup_tx.send(Ok(()));
            go.wait_for(|&g| g).await.ok()?;
            let &(start_us, end_us) = times.get()?;
            let params = PubParams {
                idx: p,
                room: name,
                size,
                rate: per_pub_rate,
                // Stagger fixed-rate publishers over one interval so their
                // messages do not all leave at the same instant.
                start_us: start_us
                    + (p as f64 / publishers as f64 * 1e6 / per_pub_rate.max(1e-9)) as u64
                        * u64::from(per_pub_rate > 0.0),
                end_us,
            };
            Some(publish(ws, shared, params, stop_rx).await)
        }));
    }
    drop(setup_tx);

    let setup = await_setup(&mut setup_rx, receivers + publishers, setup_start).await;
    let joined: Vec<u64> = shared.room_live.iter().map(|n| u64::from(n.load(Relaxed))).collect();
    eprintln!("set-up done in {:.2}s: {} connected, {} failed", setup.secs, setup.ok, setup.failed);
    let publishers_ok = setup.ok - joined.iter().sum::<u64>() as usize;
    if publishers_ok == 0 {
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
    let _ = start_us.set((start, end));
    let _ = go_tx.send(true);

    let delivered = || shared.progress.iter().map(|s| s.0.load(Relaxed)).sum::<u64>();
    let sum = |f: fn(&super::flow::PubFlow) -> u64| shared.pubs.iter().map(f).sum::<u64>();
    let cpu_now = || {
        let server = args.pid.and_then(|p| cpu_secs(Some(p)));
        (cpu_secs(None).unwrap_or(0.0), server.unwrap_or(0.0))
    };
    let mut cpu_start = None;
    let mut last = (delivered(), Instant::now());
    while shared.now_us() < end {
        let mut wake = shared.at(end).min(tokio::time::Instant::now() + Duration::from_secs(1));
        if cpu_start.is_none() {
            wake = wake.min(shared.at(measure_start));
        }
        tokio::time::sleep_until(wake).await;
        if cpu_start.is_none() && shared.now_us() >= measure_start {
            cpu_start = Some(cpu_now());
        }
        let (d, t) = (delivered(), Instant::now());
        let phase = if shared.now_us() < measure_start { "warm-up" } else { "measure" };
        eprintln!(
            "  {phase}: sent {} acked {} delivered {d} ({:.0}/s)",
            sum(|p| p.sent.0.load(Relaxed)),
            sum(|p| p.acked.0.load(Relaxed)),
            (d - last.0) as f64 / t.duration_since(last.1).as_secs_f64()
        );
        last = (d, t);
    }
    let (b1, s1) = cpu_now();
    let (b0, s0) = cpu_start.unwrap_or((b1, s1));
    let cpu = Cpu { bench: b1 - b0, server: s1 - s0 };
    let server_rss = args.pid.and_then(|p| rss_kib(p).ok()).unwrap_or(0);

    // Drain: wait for outstanding acks and deliveries, at most --drain s.
    let expected = || -> u64 { shared.pubs.iter().map(|p| p.acked.0.load(Relaxed) * joined[p.room]).sum() };
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    while Instant::now() < drain_deadline {
        let pending =
            sum(|p| p.sent.0.load(Relaxed)).saturating_sub(sum(|p| p.acked.0.load(Relaxed) + p.failed.0.load(Relaxed)));
        if pending == 0 && delivered() >= expected() {
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

    // Totals from the shared counters: they survive an aborted publisher.
    let totals = Totals {
        sent: sum(|p| p.sent.0.load(Relaxed)),
        acked: sum(|p| p.acked.0.load(Relaxed)),
        failed: sum(|p| p.failed.0.load(Relaxed)),
        expected: expected(),
    };
    report(&args, publishers, &setup, totals, &recv, &pubs, cpu, server_rss);
    Ok(())
}
