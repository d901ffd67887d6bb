//! The site webhook's worker: posts the outbox's webhook events, oldest
//! first, in batches of at most `notify.webhook_batch`, signed with
//! `X-Chat-Signature: sha256=<hex HMAC-SHA256 of the body>`. A batch that
//! is not answered 2xx within `notify.webhook_timeout` (a refused
//! connection, a 503, a receiver that hangs) is sent again, whole, after a
//! backoff doubling from `notify.retry_base` up to `notify.retry_max`, and
//! nothing newer is sent before it: events reach the site in the order
//! they were written (each conversation's messages in `seq` order). The
//! answer's body is never read. In a cluster one node at a time holds the
//! lease to send.

use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::NotifyConfig;
use crate::protocol::now_ms;
use crate::store::Store;

const LEASE: &str = "lease:webhook";

/// `sha256=<hex>` of `body` keyed with `secret`.
pub(crate) fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub(super) async fn run(
    config: NotifyConfig,
    node: String,
    clustered: bool,
    store: Store,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(config.webhook_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the webhook's HTTP client; no webhook events are sent");
            return;
        }
    };
    let lease_for = config.poll_interval * 3 + config.webhook_timeout;
    let mut failures = 0u32;
    loop {
        let now = now_ms();
        // One node needs no lease (and must not wait, after a crash, for
        // the lease of its previous run to lapse).
        let holder =
            if clustered { store.lease(LEASE, &node, now, now + lease_for.as_millis() as i64).await } else { Ok(true) };
        let rows = match holder {
            Ok(true) => store.outbox_due("webhook", i64::MAX, config.webhook_batch).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the webhook outbox");
                Vec::new()
            }),
            Ok(false) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the webhook lease");
                Vec::new()
            }
        };
        if !rows.is_empty() {
            let mut body = String::from("{\"events\":[");
            for (i, r) in rows.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&r.body);
            }
            body.push_str("]}");
            let ns: Vec<i64> = rows.iter().map(|r| r.n).collect();
            match post(&client, &config, body).await {
                Ok(()) => {
                    failures = 0;
                    metrics::counter!("chat_notify_webhook_events_total").increment(ns.len() as u64);
                    if let Err(e) = store.outbox_done(&ns).await {
                        // They will be sent again: at least once.
                        tracing::warn!(error = %e, "cannot remove delivered webhook events");
                    }
                    continue;
                }
                Err(why) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!("chat_notify_webhook_failures_total").increment(1);
                    let delay = super::backoff(config.retry_base, config.retry_max, failures);
                    tracing::warn!(error = %why, events = ns.len(), retry_in = ?delay, "webhook call failed");
                    let due = now_ms() + delay.as_millis() as i64;
                    for n in &ns {
                        let _ = store.outbox_retry(*n, due, &why).await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One signed call; `Err` says why it did not succeed (no secrets).
async fn post(client: &reqwest::Client, config: &NotifyConfig, body: String) -> Result<(), String> {
    let signature = signature(config.webhook_secret.expose().as_bytes(), body.as_bytes());
    let sent = client
        .post(&config.webhook_url)
        .header("content-type", "application/json")
        .header("x-chat-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        // The body is not read: a receiver's answer cannot hold us up.
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {:?}", config.webhook_timeout)),
        Err(e) if e.is_connect() => Err("connection failed".into()),
        Err(_) => Err("request failed".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
