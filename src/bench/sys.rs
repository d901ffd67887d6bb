//! Process facts from /proc and the bench's own runtime.

use anyhow::{Context, Result, anyhow};

/// VmRSS of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// Warns when this process cannot open `needed` sockets. Raising the limit
/// needs `setrlimit` (libc + unsafe, which the crate forbids), so the user
/// runs `ulimit -n` instead.
pub(crate) fn check_fd_limit(needed: usize) {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok())
    });
    if let Some(soft) = soft
        && soft < needed
    {
        eprintln!(
            "warning: open-file limit is {soft} but this run needs about {needed}; \
             run `ulimit -n {needed}` (up to the hard limit, `ulimit -Hn`) first"
        );
    }
}

/// Runs `make()`'s future on a runtime of its own in a new thread, so the
/// bench controls its threading whatever runtime the caller uses:
/// 1 = current-thread runtime (no cross-thread wake-ups), N = N workers.
pub(crate) async fn on_own_runtime<F, Fut, T>(threads: usize, make: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("bench".into()).spawn(move || {
        let rt = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
        };
        let res = match rt {
            Ok(rt) => rt.block_on(make()),
            Err(e) => Err(e.into()),
        };
        let _ = tx.send(res);
    })?;
    rx.await.map_err(|_| anyhow!("bench thread panicked"))?
}

/// CPU time (user + system) of `pid` (`None` = this process) in seconds.
/// Assumes the usual 100 clock ticks per second (sysconf needs libc).
pub(crate) fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name: state is field 3, so
    // utime (14) and stime (15) are the 12th and 13th after it.
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}
