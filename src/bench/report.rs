//! The fanout bench's report: human-readable lines and the JSON line.

use std::collections::{BTreeMap, HashMap};

use super::net::SetupSummary;
use super::plan::{FanoutArgs, Targets};
use super::publisher::PubResult;
use super::receiver::RecvResult;
use super::stats::{Histogram, JsonLine};

/// Messages over all publishers; `expected` = Σ acked × members joined.
pub(crate) struct Totals {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) failed: u64,
    pub(crate) expected: u64,
}

/// CPU seconds used by the bench and by each `--pid` in the measured window.
#[derive(Clone)]
pub(crate) struct Cpu {
    pub(crate) bench: f64,
    pub(crate) server: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
    args: &FanoutArgs,
    targets: &Targets,
    publishers: usize,
    setup: &SetupSummary,
    totals: Totals,
    recv: &[RecvResult],
    pubs: &[PubResult],
    cpu: Cpu,
    server_rss: &[u64],
) {
    let mut hist = Histogram::new();
    // With several nodes: latency of members on their publisher's node
    // (`same`) and on another (`cross`).
    let split = targets.split();
    let (mut same, mut cross) = (Histogram::new(), Histogram::new());
    let (mut delivered, mut in_window, mut other) = (0u64, 0u64, 0u64);
    let mut closes: BTreeMap<u16, u64> = BTreeMap::new();
    for r in recv {
        hist.merge(&r.hist);
        if let Some(c) = &r.cross {
            hist.merge(c);
            same.merge(&r.hist);
            cross.merge(c);
        }
        delivered += r.deliveries;
        in_window += r.in_window;
        other += r.other;
        if let Some(c) = r.closed {
            *closes.entry(c).or_default() += 1;
        }
    }
    let Totals { sent, acked, failed: failed_msgs, expected } = totals;
    let (mut acked_win, mut stalls) = (0, 0);
    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut pub_closes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut write_errors = Vec::new();
    for p in pubs {
        acked_win += p.acked_in_window;
        stalls += p.stalls;
        for (k, v) in &p.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        if let Some(c) = p.closed {
            *pub_closes.entry(c).or_default() += 1;
        }
        if let Some(e) = &p.write_error {
            write_errors.push(e.clone());
        }
    }
    let secs = args.duration.max(1) as f64;
    // Sent but neither acked nor refused: the publisher's connection died
    // (or the drain ran out). Its delivered messages then make loss < 0.
    let unacked = sent.saturating_sub(acked + failed_msgs);
    let loss = expected as i64 - delivered as i64;
    let (dps, mps) = (in_window as f64 / secs, acked_win as f64 / secs);
    let q = |x| hist.quantile_ms(x);

    println!(
        "setup:       {} connections ok, {} failed in {:.2}s ({} rooms x {} members + {publishers} publishers)",
        setup.ok, setup.failed, setup.secs, args.rooms, args.members
    );
    for e in &setup.errors {
        println!("  set-up error: {e}");
    }
    println!(
        "messages:    sent {sent}, acked {acked}, errors {failed_msgs} {errors:?}, unanswered {unacked}, window stalls {stalls}"
    );
    println!("deliveries:  received {delivered}, expected {expected}, loss {loss}, other frames {other}");
    println!("throughput:  {dps:.0} deliveries/s, {mps:.0} msgs/s (over the {secs:.0}s measured)");
    println!(
        "latency ms:  p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}  ({} samples)",
        q(0.5),
        q(0.99),
        q(0.999),
        hist.max_ms(),
        hist.mean_ms(),
        hist.count()
    );
    if split {
        for (what, h) in [("same node", &same), ("cross-node", &cross)] {
            println!(
                "  {what:<10}: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} samples)",
                h.quantile_ms(0.5),
                h.quantile_ms(0.99),
                h.quantile_ms(0.999),
                h.max_ms(),
                h.count()
            );
        }
    }
    println!("closes:      members {closes:?}, publishers {pub_closes:?}");
    for e in write_errors.iter().take(3) {
        println!("  publisher write error: {e}");
    }
    let bench_pct = cpu.bench / secs * 100.0;
    let ns_per_delivery = if in_window > 0 { cpu.bench * 1e9 / in_window as f64 } else { 0.0 };
    let pid_pct: Vec<f64> = cpu.server.iter().map(|c| c / secs * 100.0).collect();
    let (server_pct, rss_sum) = (pid_pct.iter().sum::<f64>(), server_rss.iter().sum::<u64>());
    print!("cpu:         bench {bench_pct:.0}% of a core ({ns_per_delivery:.0} ns/delivery)");
    match args.pid.len() {
        0 => {}
        1 => print!(", server {server_pct:.0}%, server RSS {rss_sum} KiB"),
        _ => {
            print!(", servers {server_pct:.0}% in total (");
            for (k, pid) in args.pid.iter().enumerate() {
                let sep = if k > 0 { ", " } else { "" };
                print!("{sep}pid {pid}: {:.0}%, RSS {} KiB", pid_pct[k], server_rss.get(k).unwrap_or(&0));
            }
            print!(")");
        }
    }
    println!();
    if bench_pct > 90.0 * args.threads.max(1) as f64 {
        println!("warning:     the bench was CPU-bound; rates are a lower bound for the server");
    }
    let close_count = |m: &BTreeMap<u16, u64>, code| m.get(&code).copied().unwrap_or(0);
    let mut json = JsonLine::new("fanout")
        .int("rooms", args.rooms as u64)
        .int("members", args.members as u64)
        .int("publishers", publishers as u64)
        .float("rate", args.rate)
        .int("window", if args.rate > 0.0 { 0 } else { args.window })
        .int("duration_secs", args.duration)
        .int("connected", setup.ok as u64)
        .int("failed_connections", setup.failed as u64)
        .int("sent", sent)
        .int("acked", acked)
        .int("errors", failed_msgs)
        .int("unanswered", unacked)
        .int("rate_limited", errors.get("rate_limited").copied().unwrap_or(0))
        .int("delivered", delivered)
        .int("expected", expected)
        .float("loss", loss as f64)
        .float("deliveries_per_sec", dps)
        .float("msgs_per_sec", mps)
        .float("p50_ms", q(0.5))
        .float("p99_ms", q(0.99))
        .float("p999_ms", q(0.999))
        .float("max_ms", hist.max_ms())
        .float("mean_ms", hist.mean_ms())
        .int("closes", closes.values().sum::<u64>() + pub_closes.values().sum::<u64>())
        .int("closes_1013", close_count(&closes, 1013) + close_count(&pub_closes, 1013))
        .int("window_stalls", stalls)
        .float("bench_cpu_pct", bench_pct)
        .float("bench_ns_per_delivery", ns_per_delivery)
        .float("server_cpu_pct", server_pct)
        .int("server_rss_kib", rss_sum)
        .int("urls", targets.members.len() as u64)
        .int("publish_url", u64::from(targets.publish.is_some()));
    if split {
        for (what, h) in [("same", &same), ("cross", &cross)] {
            json = json
                .int(&format!("{what}_samples"), h.count())
                .float(&format!("{what}_p50_ms"), h.quantile_ms(0.5))
                .float(&format!("{what}_p99_ms"), h.quantile_ms(0.99))
                .float(&format!("{what}_max_ms"), h.max_ms());
        }
    }
    if args.pid.len() > 1 {
        for (k, pct) in pid_pct.iter().enumerate() {
            json = json
                .float(&format!("pid{k}_cpu_pct"), *pct)
                .int(&format!("pid{k}_rss_kib"), server_rss.get(k).copied().unwrap_or(0));
        }
    }
    json.emit(args.json_out.as_deref());
}
