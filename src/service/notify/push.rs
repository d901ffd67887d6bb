//! Web Push (RFC 8030): each push is one `POST` to the subscription's
//! endpoint, its payload encrypted for the browser (RFC 8291,
//! `aes128gcm`) and the request signed for the push service (RFC 8292,
//! VAPID: an ES256 JWT). RustCrypto's P-256 (ECDH, ECDSA), HKDF-SHA-256
//! and AES-128-GCM; our own reqwest client.
//!
//! Endpoints are checked twice against SSRF: when subscribed (`https://`
//! only; a host that resolves to a loopback, private, link-local or
//! otherwise non-public address is refused) and again when sent, on the
//! addresses resolved then, which the call is pinned to — unless
//! `notify.allow_insecure_push`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit as _};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::NotifyConfig;
use crate::protocol::now_ms;
use crate::store::{OutboxRow, PushSubscription, Store};

const LEASE: &str = "lease:push";
/// Where a generated VAPID key is kept.
const VAPID_KEY: &str = "vapid_private_key";
/// Longest endpoint URL accepted.
pub(crate) const MAX_ENDPOINT: usize = 2048;
/// Pushes sent in one pass of the worker.
const PASS: usize = 50;
/// Pushes in flight at once (of one pass of [`PASS`] rows).
const PUSH_CONCURRENCY: usize = 16;

/// The server's VAPID key pair.
pub(crate) struct Vapid {
    key: SecretKey,
    /// The public key as `GET /api/push/key` and the `k=` parameter show it:
    /// base64url of the uncompressed point.
    pub(crate) public: String,
}

fn random_key() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source");
        if let Ok(k) = SecretKey::from_slice(&bytes) {
            return k;
        }
    }
}

impl Vapid {
    /// `notify.vapid_private_key`, or the key kept in the database (made
    /// and kept there, once for the whole cluster, on first use).
    pub(crate) async fn load(config: &NotifyConfig, store: &Store) -> anyhow::Result<Vapid> {
        let encoded = if config.vapid_private_key.is_empty() {
            match store.notify_state(VAPID_KEY).await? {
                Some((kept, _)) => kept,
                None => store.notify_state_once(VAPID_KEY, &B64.encode(random_key().to_bytes())).await?,
            }
        } else {
            config.vapid_private_key.expose().to_owned()
        };
        let bytes = B64
            .decode(encoded.trim().trim_end_matches('='))
            .map_err(|_| anyhow::anyhow!("notify.vapid_private_key: not base64url"))?;
        let key = SecretKey::from_slice(&bytes)
            .map_err(|_| anyhow::anyhow!("notify.vapid_private_key: not a P-256 private key (32 bytes)"))?;
        let public = B64.encode(key.public_key().to_encoded_point(false).as_bytes());
        Ok(Vapid { key, public })
    }

    /// `vapid t=<JWT>, k=<public key>` for a push service at `origin`.
    fn authorization(&self, origin: &str, subject: &str) -> String {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let exp = now_ms() / 1000 + 12 * 3600;
        let claims = B64.encode(serde_json::json!({"aud": origin, "exp": exp, "sub": subject}).to_string());
        let signing_input = format!("{header}.{claims}");
        let signer = p256::ecdsa::SigningKey::from(&self.key);
        let signature: p256::ecdsa::Signature = signer.sign(signing_input.as_bytes());
        format!("vapid t={signing_input}.{}, k={}", B64.encode(signature.to_bytes()), self.public)
    }
}

/// A subscription's keys, decoded and checked.
pub(crate) struct Keys {
    ua_public: PublicKey,
    auth: [u8; 16],
}

impl Keys {
    pub(crate) fn parse(p256dh: &str, auth: &str) -> Result<Keys, String> {
        let point = B64.decode(p256dh.trim_end_matches('=')).map_err(|_| "`keys.p256dh` is not base64url")?;
        if point.len() != 65 {
            return Err("`keys.p256dh` must be an uncompressed P-256 point (65 bytes)".into());
        }
        let ua_public = PublicKey::from_sec1_bytes(&point).map_err(|_| "`keys.p256dh` is not a point on P-256")?;
        let auth = B64.decode(auth.trim_end_matches('=')).map_err(|_| "`keys.auth` is not base64url")?;
        let auth: [u8; 16] = auth.try_into().map_err(|_| "`keys.auth` must be 16 bytes")?;
        Ok(Keys { ua_public, auth })
    }
}

/// The `aes128gcm` body (RFC 8188 header, one record) carrying `plaintext`
/// to the browser that holds `keys` (RFC 8291).
pub(crate) fn encrypt(plaintext: &[u8], keys: &Keys) -> Result<Vec<u8>, String> {
    let as_secret = random_key();
    let as_public = as_secret.public_key().to_encoded_point(false);
    let ua_public = keys.ua_public.to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), keys.ua_public.as_affine());
    // IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" 0x00 ua_public as_public, 32)
    let mut info = Vec::with_capacity(14 + 65 + 65);
    info.extend_from_slice(b"WebPush: info\0");
    info.extend_from_slice(ua_public.as_bytes());
    info.extend_from_slice(as_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&keys.auth), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .map_err(|_| "hkdf".to_string())?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| "no random source".to_string())?;
    let prk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).map_err(|_| "hkdf".to_string())?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|_| "hkdf".to_string())?;
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(2); // the last (and only) record's delimiter
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| "aes".to_string())?;
    let sealed = cipher.encrypt(Nonce::from_slice(&nonce), record.as_slice()).map_err(|_| "aes".to_string())?;
    let rs: u32 = 4096;
    let mut body = Vec::with_capacity(16 + 4 + 1 + 65 + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&rs.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_public.as_bytes());
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// Whether an address is one a push service may have: not loopback,
/// private, link-local, unspecified, multicast, documentation, CGNAT or
/// unique-local.
fn public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                // IETF protocol assignments, benchmarking, reserved.
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                // Prefixes that carry or reach an IPv4 address (NAT64,
                // 6to4, Teredo, IPv4-compatible) are refused whole, as are
                // unique-local, link-local and site-local.
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (s[0] & 0xfe00) == 0xfc00
                    || (s[0] & 0xffc0) == 0xfe80
                    || (s[0] & 0xffc0) == 0xfec0
                    || (s[0] == 0x64 && s[1] == 0xff9b)
                    || s[0] == 0x2002
                    || (s[0] == 0x2001 && s[1] == 0)
                    || s[..6].iter().all(|&x| x == 0))
            }
        },
    }
}

/// Checks an endpoint URL; returns it and the addresses its host resolves
/// to now (all public unless `insecure`).
pub(crate) async fn check_endpoint(endpoint: &str, insecure: bool) -> Result<(reqwest::Url, Vec<SocketAddr>), String> {
    if endpoint.len() > MAX_ENDPOINT {
        return Err(format!("`endpoint` is longer than {MAX_ENDPOINT} characters"));
    }
    let url = reqwest::Url::parse(endpoint).map_err(|_| "`endpoint` is not a URL".to_string())?;
    match url.scheme() {
        "https" => {}
        "http" if insecure => {}
        "http" => return Err("`endpoint` must be https:// (notify.allow_insecure_push is off)".into()),
        _ => return Err("`endpoint` must be an https:// URL".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("`endpoint` must not carry credentials".into());
    }
    let host = url.host_str().ok_or("`endpoint` has no host")?.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| "`endpoint`: its host did not resolve in time".to_string())?
        .map_err(|_| "`endpoint`: its host does not resolve".to_string())?;
    let addrs: Vec<SocketAddr> = resolved.collect();
    if addrs.is_empty() {
        return Err("`endpoint`: its host does not resolve".into());
    }
    if !insecure && addrs.iter().any(|a| !public_ip(a.ip())) {
        return Err("`endpoint` resolves to a loopback or private address (notify.allow_insecure_push is off)".into());
    }
    Ok((url, addrs))
}

/// What one push came to.
enum Outcome {
    Sent,
    /// 404/410: the subscription is gone.
    Gone,
    Failed(String),
}

async fn send(config: &NotifyConfig, vapid: &Vapid, sub: &PushSubscription, payload: &str) -> Outcome {
    let (url, addrs) = match check_endpoint(&sub.endpoint, config.allow_insecure_push).await {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(e),
    };
    let keys = match Keys::parse(&sub.p256dh, &sub.auth) {
        Ok(k) => k,
        Err(e) => return Outcome::Failed(e),
    };
    let body = match encrypt(payload.as_bytes(), &keys) {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(e),
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    // Pinned to the addresses just checked (no second, different answer).
    let client = reqwest::Client::builder()
        .timeout(config.push_timeout)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the host itself, past the check above.
        .no_proxy()
        .resolve_to_addrs(&host, &addrs)
        .build();
    let Ok(client) = client else { return Outcome::Failed("cannot make an HTTP client".into()) };
    let origin = url.origin().ascii_serialization();
    let sent = client
        .post(url)
        .header("ttl", config.push_ttl.as_secs().to_string())
        .header("content-encoding", "aes128gcm")
        .header("content-type", "application/octet-stream")
        .header("urgency", "normal")
        .header("authorization", vapid.authorization(&origin, &config.vapid_subject))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Sent,
        Ok(r) if matches!(r.status().as_u16(), 404 | 410) => Outcome::Gone,
        Ok(r) => Outcome::Failed(format!("answered {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Outcome::Failed("no answer in time".into()),
        Err(_) => Outcome::Failed("request failed".into()),
    }
}

/// Sends one due push and records the outcome (sent, gone, or retried
/// with backoff; dropped after `notify.push_max_attempts`).
async fn push_one(
    config: &NotifyConfig,
    node: &str,
    clustered: bool,
    lease_for: std::time::Duration,
    store: &Store,
    vapid: &Vapid,
    row: OutboxRow,
) {
    if clustered {
        let now = now_ms();
        if !matches!(store.lease(LEASE, node, now, now + lease_for.as_millis() as i64).await, Ok(true)) {
            return;
        }
    }
    let sub = match store.subscription(&row.target).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let _ = store.outbox_done(&[row.n]).await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a push subscription");
            return;
        }
    };
    match send(config, vapid, &sub, &row.body).await {
        Outcome::Sent => {
            metrics::counter!("chat_notify_pushes_total").increment(1);
            let _ = store.outbox_done(&[row.n]).await;
        }
        Outcome::Gone => {
            tracing::info!(subscription = %sub.id, "the push service says the subscription is gone; removed");
            let _ = store.remove_subscription(&sub.id).await;
        }
        Outcome::Failed(why) => {
            metrics::counter!("chat_notify_push_failures_total").increment(1);
            let attempts = row.attempts.saturating_add(1);
            if attempts >= i64::from(config.push_max_attempts) {
                tracing::warn!(error = %why, event = %row.id, attempts, "push failed; dropped");
                let _ = store.outbox_done(&[row.n]).await;
            } else {
                let delay = super::backoff(config.retry_base, config.retry_max, attempts as u32);
                tracing::debug!(error = %why, event = %row.id, retry_in = ?delay, "push failed");
                let _ = store.outbox_retry(row.n, now_ms() + delay.as_millis() as i64, &why).await;
            }
        }
    }
}

/// The push worker: due rows oldest first; a failed push is retried on its
/// own with backoff, and dropped after `notify.push_max_attempts`.
pub(super) async fn run(
    config: NotifyConfig,
    node: String,
    clustered: bool,
    store: Store,
    vapid: Arc<Vapid>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    // Renewed before each push: a node that dies holds up the others for
    // at most this long.
    let lease_for = config.poll_interval * 3 + config.push_timeout * 2;
    loop {
        let now = now_ms();
        let holder =
            if clustered { store.lease(LEASE, &node, now, now + lease_for.as_millis() as i64).await } else { Ok(true) };
        let rows = match holder {
            Ok(true) => store.outbox_due("push", now, PASS).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the push outbox");
                Vec::new()
            }),
            _ => Vec::new(),
        };
        let busy = rows.len() == PASS;
        // Several at once: one slow or silent push service (up to
        // `push_timeout` a call, retried) holds up only its own pushes.
        let pushes =
            futures_util::StreamExt::for_each_concurrent(futures_util::stream::iter(rows), PUSH_CONCURRENCY, |row| {
                push_one(&config, &node, clustered, lease_for, &store, &vapid, row)
            });
        tokio::select! {
            () = pushes => {}
            _ = stop.cancelled() => return,
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::public_ip;

    #[test]
    fn only_public_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001:0:4136:e378::1",
            "fec0::1",
            "::a00:1",
        ] {
            assert!(!public_ip(bad.parse().unwrap()), "{bad}");
        }
        for good in ["8.8.8.8", "2001:4860:4860::8888", "2606:4700::1111", "1.1.1.1"] {
            assert!(public_ip(good.parse().unwrap()), "{good}");
        }
    }
}
