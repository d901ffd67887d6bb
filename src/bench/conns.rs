//! `chat bench conns`: open many idle sessions and measure the server's
//! memory per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::net::{Target, Ws, await_setup};
use super::stats::JsonLine;
use super::sys::{check_fd_limit, on_own_runtime, rss_kib};

#[derive(clap::Args, Debug, Clone)]
pub struct ConnsArgs {
    /// Server WebSocket URL; give it several times to spread the
    /// connections (connection i goes to url[i % n]). A Socket.IO URL
    /// (`ws://host:port/socket.io/?EIO=4&transport=websocket`) opens
    /// Socket.IO sessions instead.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws", num_args = 1)]
    pub(crate) url: Vec<String>,
    /// Also append the result's JSON line to this file (JSON Lines: a
    /// record of runs to compare later).
    #[arg(long)]
    pub(crate) json_out: Option<std::path::PathBuf>,
    /// Number of connections.
    #[arg(short = 'n', long = "conns", default_value_t = 1000)]
    pub(crate) conns: usize,
    /// Connection i joins room `bench-<i / room-size>`; 0 joins nothing.
    #[arg(long, default_value_t = 50)]
    pub(crate) room_size: usize,
    /// Spread connections over source addresses 127.0.0.1..=127.0.0.K.
    #[arg(long, default_value_t = 50)]
    pub(crate) source_ips: u32,
    /// Connection attempts (connect + hello + join) in flight at once.
    #[arg(long, default_value_t = 200)]
    pub(crate) concurrency: usize,
    /// Seconds to keep all connections open once they are connected.
    #[arg(long, default_value_t = 10)]
    pub(crate) hold: u64,
    /// Seconds to wait after the last join before sampling the server's RSS
    /// (part of --hold).
    #[arg(long, default_value_t = 2)]
    pub(crate) settle: u64,
    /// Server pid: its VmRSS is read before and after, to report bytes per
    /// connection. Several: their RSS is summed.
    #[arg(long)]
    pub(crate) pid: Vec<u32>,
    /// Nicks are `<prefix><i>`.
    #[arg(long, default_value = "b")]
    pub(crate) nick_prefix: String,
    /// Runtime threads for the bench (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
}

/// What one connection task saw.
enum Outcome {
    Held,
    /// Server closed during the hold (close code, 0 if none).
    Dropped(u16),
}

pub(crate) async fn run(args: ConnsArgs) -> Result<()> {
    if args.url.is_empty() {
        bail!("need at least one --url");
    }
    check_fd_limit(args.conns + 64);
    let threads = args.threads;
    on_own_runtime(threads, move || run_inner(args)).await
}

async fn run_inner(args: ConnsArgs) -> Result<()> {
    // Idle connections only see small frames; a small read buffer keeps the
    // bench's own memory modest at 20k connections.
    let mut targets = Vec::with_capacity(args.url.len());
    for url in &args.url {
        targets.push(Arc::new(Target::resolve(url, args.source_ips, 4096).await?));
    }
    let rss_before = rss_sum(&args.pid)?;
    let addrs: Vec<String> = targets.iter().map(|t| t.addr.to_string()).collect();
    eprintln!(
        "conns: {} connections to {} ({} source ips, concurrency {})",
        args.conns,
        addrs.join(", "),
        targets[0].source_ips,
        args.concurrency
    );

    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let target = targets[i % targets.len()].clone();
        let (permits, setup_tx, stop_rx) = (permits.clone(), setup_tx.clone(), stop_rx.clone());
        let nick = format!("{}{i}", args.nick_prefix);
        let room = (args.room_size > 0).then(|| format!("bench-{}", i / args.room_size));
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await.ok()?;
            let res = target.session(i, &nick, room.as_deref()).await;
            drop(permit);
            match res {
                Ok(ws) => {
                    let _ = setup_tx.send(Ok(()));
                    Some(hold(ws, stop_rx).await)
                }
                Err(e) => {
                    let _ = setup_tx.send(Err(format!("{e:#}")));
                    None
                }
            }
        }));
    }
    drop(setup_tx);

    let setup = await_setup(&mut setup_rx, args.conns, start).await;
    let (ok, failed, errors) = (setup.ok, setup.failed, setup.errors);
    let connect_secs = setup.secs;
    eprintln!("all set up after {connect_secs:.2}s; settling {}s", args.settle);

    let settle = Duration::from_secs(args.settle.min(args.hold));
    tokio::time::sleep(settle).await;
    let rss_after = rss_sum(&args.pid)?;
    tokio::time::sleep(Duration::from_secs(args.hold) - settle).await;
    let rss_end = rss_sum(&args.pid)?;
    let bench_rss = rss_kib(std::process::id()).unwrap_or(0);

    let _ = stop_tx.send(true);
    let (mut held, mut dropped, mut close_codes) = (0usize, 0usize, Vec::<u16>::new());
    for t in tasks {
        match t.await {
            Ok(Some(Outcome::Held)) => held += 1,
            Ok(Some(Outcome::Dropped(code))) => {
                dropped += 1;
                if !close_codes.contains(&code) {
                    close_codes.push(code);
                }
            }
            _ => {}
        }
    }

    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ok > 0 => (a.saturating_sub(b) * 1024) as f64 / ok as f64,
        _ => 0.0,
    };
    println!("connections:   {ok} ok, {failed} failed (of {})", args.conns);
    for e in &errors {
        println!("  error: {e}");
    }
    println!("connect time:  {connect_secs:.2}s ({:.0} conns/s)", ok as f64 / connect_secs);
    println!("held:          {held} open to the end, {dropped} closed by the server {close_codes:?}");
    if let (Some(b), Some(a), Some(e)) = (rss_before, rss_after, rss_end) {
        println!("server RSS:    before {b} KiB, after {a} KiB, at end {e} KiB -> {per_conn:.0} bytes/conn");
    }
    println!("bench RSS:     {bench_rss} KiB");
    JsonLine::new("conns")
        .int("conns", args.conns as u64)
        .int("room_size", args.room_size as u64)
        .int("connected", ok as u64)
        .int("failed", failed as u64)
        .int("dropped", dropped as u64)
        .float("connect_secs", connect_secs)
        .float("conns_per_sec", ok as f64 / connect_secs)
        .int("rss_before_kib", rss_before.unwrap_or(0))
        .int("rss_after_kib", rss_after.unwrap_or(0))
        .int("rss_end_kib", rss_end.unwrap_or(0))
        .int("bench_rss_kib", bench_rss)
        .float("rss_per_conn_bytes", per_conn)
        .emit(args.json_out.as_deref());
    Ok(())
}

/// The summed VmRSS of `pids` (None without any).
fn rss_sum(pids: &[u32]) -> Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for &p in pids {
        sum += rss_kib(p)?;
    }
    Ok(Some(sum))
}

/// Keeps reading (and dropping) frames so tungstenite answers the server's
/// pings (and, on Socket.IO, Engine.IO's `2` with `3`), until told to stop
/// or the server closes.
async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>) -> Outcome {
    loop {
        tokio::select! {
            _ = stop.changed() => return Outcome::Held,
            m = ws.next() => match m {
                Some(Ok(Message::Close(f))) => {
                    return Outcome::Dropped(f.map_or(0, |f| u16::from(f.code)));
                }
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    let _ = futures_util::SinkExt::send(&mut ws, Message::text("3")).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Outcome::Dropped(0),
            },
        }
    }
}
