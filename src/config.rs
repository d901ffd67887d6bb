//! One `Config`, read in layers: `config/default.toml` (compiled in, so it
//! documents every default truthfully) < `--config FILE` < `CHAT_*`
//! environment variables (`__` between section and key) < flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The defaults, and their documentation.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub cluster: ClusterConfig,
    pub limits: Limits,
    pub rooms: RoomsConfig,
    pub chat: ChatConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub uploads: UploadsConfig,
    pub reactions: ReactionsConfig,
    pub search: SearchConfig,
    pub notify: NotifyConfig,
    pub irc: IrcConfig,
    pub socketio: SocketIoConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub name: String,
    pub node: String,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Reverse proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For`
    /// is believed: for a connection from one of them, the client address
    /// is the right-most forwarded address that is not itself trusted.
    /// Empty (the default): the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Host names (optionally `name:port`) requests must name in `Host`;
    /// others get 421 (against DNS rebinding). Empty (the default): any.
    /// `/healthz` and `/readyz` answer whatever the `Host`.
    pub allowed_hosts: Vec<String>,
    /// Time a connection has to send a whole request line and headers,
    /// counted from connecting or from the previous response: a silent or
    /// dripping client is disconnected after it.
    #[serde(with = "humantime_serde")]
    pub request_head_timeout: Duration,
    /// Time a request has to send its whole body once its headers are in;
    /// then 408 and the connection is closed.
    #[serde(with = "humantime_serde")]
    pub request_body_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    pub sqlite_full_sync: bool,
    pub batch_max: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// Every Redis key and channel starts with `<prefix>:` (several
    /// deployments, or test runs, may share one Redis).
    pub prefix: String,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    pub sync_batch: usize,
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Most messages the node hands Redis in one script call (its
    /// publishing task takes everything queued, up to this many).
    pub publish_batch: usize,
    /// Messages waiting for the publishing task; past this, a new message
    /// is refused with `unavailable`.
    pub publish_queue: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_text: usize,
    pub rate_per_sec: u32,
    pub burst: u32,
    pub requests_per_sec: u32,
    pub requests_burst: u32,
    pub max_rooms_per_session: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub outbound_queue: usize,
    /// Bytes queued for one session (frames not yet written to its socket)
    /// before it counts as a slow consumer and is closed with 1013.
    pub outbound_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub history_default: usize,
    pub history_max: usize,
    /// Most bytes of messages (as JSON) in one history page (`join`
    /// history, `history`, the API): a longer page is cut, with `more`.
    pub history_max_bytes: usize,
    pub max_watch: usize,
    pub max_event_bytes: usize,
    pub max_topic: usize,
    pub ws_read_buffer: usize,
    pub ws_write_buffer: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    pub auto_join: Vec<String>,
    pub create_on_join: bool,
    /// Most ban masks a room keeps.
    pub max_bans: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    pub allow_everyone: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub guests: bool,
    pub api_keys: Vec<Secret>,
    pub token_secret: Secret,
    #[serde(with = "humantime_serde")]
    pub token_leeway: Duration,
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    pub login_per_nick_per_minute: u32,
    pub login_per_ip_per_minute: u32,
    /// Failed password attempts on one nick per minute, from all addresses
    /// together, before that nick is closed to the addresses that failed on
    /// it (addresses that have not failed may still log in).
    pub login_failures_per_nick_per_minute: u32,
    pub allowed_origins: Vec<String>,
    pub hook_url: String,
    #[serde(with = "humantime_serde")]
    pub hook_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub hook_cache: Duration,
    pub hook_fail_open: bool,
    /// Whether anyone may create an account over `POST /api/register`.
    pub registration: Registration,
    /// Nicks nobody may take, besides [`crate::auth::RESERVED_NICKS`].
    pub reserved_nicks: Vec<String>,
    /// How long a guest identity (its nick and `welcome.token`) outlives its
    /// last session, so that a reload or a reconnect is the same guest.
    #[serde(with = "humantime_serde")]
    pub guest_grace: Duration,
}

/// Whether anyone may create an account over `POST /api/register`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

impl AuthConfig {
    pub fn registration_open(&self) -> bool {
        self.registration == Registration::Open
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    /// `text` (one readable line per event) or `json` (one JSON object per
    /// line, for log collectors). Neither has colour codes unless stderr is
    /// a terminal (text only).
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` answers: empty = on `server.listen` (the main
    /// port); an address (`127.0.0.1:9100`) = only there, on its own
    /// listener, and not on the main port.
    pub listen: String,
}

/// Reactions to messages (`react`). See docs/protocol.md.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionsConfig {
    /// Most distinct emoji on one message; a new one past it gets `too_large`.
    pub max_emoji_per_message: usize,
}

/// Full-text search (`search`, `GET /api/search`). See docs/search.md.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// Results per page when `limit` is not given.
    pub default_limit: usize,
    /// Most results per page; a larger `limit` is cut to it.
    pub max_limit: usize,
    /// Longest query, in characters; longer gets `invalid`.
    pub max_query_chars: usize,
    /// Most words of a query that count; the rest are ignored.
    pub max_words: usize,
    /// MySQL/MariaDB: the server's `innodb_ft_min_token_size`; shorter
    /// words are left out of a query (they are not in the index).
    pub mysql_min_word_chars: usize,
}

/// Files sent to the chat (`POST /api/uploads`): limits, where they are
/// kept, and when unused ones are removed. See `docs/uploads.md`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// Largest file accepted, in bytes; larger gets 413 `too_large`.
    pub max_bytes: u64,
    /// Where files are kept with `storage = "local"`; with `"s3"` only
    /// uploads in progress are spooled here (under `tmp/`).
    pub dir: String,
    /// `local` (a directory, `dir`) or `s3` (an S3-compatible object store).
    pub storage: StorageKind,
    /// Most pixels (width × height) of an image; more is refused before
    /// it is decoded.
    pub max_pixels: u64,
    /// Longest side of a thumbnail, in pixels.
    pub thumbnail_px: u32,
    /// An avatar's side, in pixels (it is cropped square, never enlarged).
    pub avatar_px: u32,
    /// Most attachments one message carries.
    pub max_attachments: usize,
    /// An upload never attached to a message within this time is removed.
    #[serde(with = "humantime_serde")]
    pub unattached_ttl: Duration,
    /// How often the sweep looks for files to remove.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Time an upload's body has to arrive (instead of
    /// `server.request_body_timeout`, which fits small JSON bodies).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    pub s3: S3Config,
}

/// Mentions and notifications: the site webhook, Web Push, the outbox
/// worker. See `docs/notifications.md`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where the site's webhook events are POSTed; empty: no webhook.
    pub webhook_url: String,
    /// Key of the `X-Chat-Signature` HMAC-SHA256 (required with a URL).
    pub webhook_secret: Secret,
    /// Also post every stored message (`kind: "message"`).
    pub webhook_messages: bool,
    /// Time one webhook call has (connect, send, answer's head).
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Most events in one webhook call.
    pub webhook_batch: usize,
    /// Web Push to the users' browsers subscriptions.
    pub push: bool,
    /// The VAPID key (base64url of the P-256 private scalar); empty: one is
    /// generated and kept in the database.
    pub vapid_private_key: Secret,
    /// The VAPID `sub` claim: `mailto:` or `https:` contact of the operator.
    pub vapid_subject: String,
    /// Accept `http://` and loopback or private-address push endpoints
    /// (tests, a push service on the operator's own network).
    pub allow_insecure_push: bool,
    /// Time one push call has.
    #[serde(with = "humantime_serde")]
    pub push_timeout: Duration,
    /// The `TTL` header of a push: how long the push service keeps it.
    #[serde(with = "humantime_serde")]
    pub push_ttl: Duration,
    /// Attempts of one push before it is dropped.
    pub push_max_attempts: u32,
    /// Most push subscriptions of one user (the oldest is dropped).
    pub max_subscriptions: usize,
    /// First retry delay; it doubles with each failure, up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How often the outbox worker looks for work it was not told about
    /// (events written by another node) and renews its lease.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most distinct `@nick`s of one message that are looked up.
    pub max_mentions: usize,
    /// On one node, after a crash, messages stored this long before the
    /// last decided one are decided again (events are deduplicated by id).
    #[serde(with = "humantime_serde")]
    pub replay_margin: Duration,
    /// One node: the decider waits this long after a stored message to
    /// decide everything stored meanwhile at once (0s: each batch alone).
    #[serde(with = "humantime_serde")]
    pub gather: Duration,
    /// Stored messages waiting for the decision; when it is full, the
    /// decider catches up from its cursor in the database (logged).
    pub queue: usize,
}

/// The Socket.IO door at `/socket.io/` (see `docs/socketio.md`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocketIoConfig {
    /// Whether `/socket.io/` answers at all.
    pub enabled: bool,
    /// Whether namespace `/max` (the cMaxtalk notification protocol) answers.
    pub maxtalk: bool,
    /// Largest Engine.IO message (WebSocket) or polling request body
    /// (bytes); larger closes the connection. Announced to clients in the
    /// handshake (`maxPayload`).
    pub max_payload: u64,
    /// Packets waiting to be written to one Socket.IO connection; when it
    /// is full the session is a slow consumer and is closed, as a WebSocket
    /// one is with 1013.
    pub buffer: usize,
    /// Events received on one namespace connection and not yet handled;
    /// a client that sends more (a flood) is disconnected.
    pub inbound_queue: usize,
    /// Engine.IO heartbeat: the server pings this often, and drops a client
    /// whose pong is later than `ping_timeout`.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
}

/// Where uploaded files are kept.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph, moto, …).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// Empty = AWS; else the service's URL (`http://127.0.0.1:9000`).
    pub endpoint: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Every object's key starts with this (`chat/`); may be empty.
    pub prefix: String,
    /// Whether an `http://` endpoint is allowed (a local test server).
    pub allow_http: bool,
}

/// The IRC door (`docs/irc.md`): off unless an address is set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IrcConfig {
    /// Plain-TCP IRC address (`127.0.0.1:6667`); empty = off.
    pub listen: String,
    /// IRC over TLS address (`0.0.0.0:6697`); empty = off. Needs
    /// `tls_cert` and `tls_key`.
    pub tls_listen: String,
    /// PEM certificate chain for `tls_listen`.
    pub tls_cert: String,
    /// PEM private key for `tls_listen`.
    pub tls_key: String,
    /// Messages replayed on JOIN (the latest of the room).
    pub history_on_join: usize,
    /// Lines a client may send at once before it is slowed down, and the
    /// lines per second it may send after (flood control delays, never drops).
    pub flood_burst: u32,
    pub flood_per_sec: u32,
    /// Users who left remembered for WHOWAS (newest first, bounded).
    pub whowas: usize,
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

/// A setting that is wrong, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Flags that override everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    /// The compiled-in defaults of `config/default.toml`.
    fn default() -> Self {
        Config::load(None, &Overrides::default(), false).expect("config/default.toml is valid")
    }
}

impl Config {
    /// Reads every layer. `with_env` is false only for the pure defaults.
    pub fn load(file: Option<&Path>, flags: &Overrides, with_env: bool) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!("--config {}: no such file", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        if with_env {
            // Only CHAT_SECTION__KEY names a setting: other CHAT_* variables
            // (the console client's CHAT_TOKEN, a harness's own) are not ours.
            fig = fig.merge(Env::prefixed("CHAT_").filter(|key| key.as_str().contains("__")).split("__"));
        }
        if let Some(listen) = flags.listen {
            fig = fig.merge(Serialized::default("server.listen", listen.to_string()));
        }
        let config: Config = fig.extract().map_err(|e| ConfigError(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the ranges that types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive: [(&str, u64); 16] = [
            ("limits.max_frame_bytes", l.max_frame_bytes as u64),
            ("limits.max_text", l.max_text as u64),
            ("limits.rate_per_sec", l.rate_per_sec.into()),
            ("limits.burst", l.burst.into()),
            ("limits.requests_per_sec", l.requests_per_sec.into()),
            ("limits.requests_burst", l.requests_burst.into()),
            ("limits.max_rooms_per_session", l.max_rooms_per_session as u64),
            ("limits.max_connections", l.max_connections as u64),
            ("limits.max_connections_per_ip", l.max_connections_per_ip as u64),
            ("limits.outbound_queue", l.outbound_queue as u64),
            ("limits.outbound_bytes", l.outbound_bytes as u64),
            ("limits.history_max_bytes", l.history_max_bytes as u64),
            ("limits.history_default", l.history_default as u64),
            ("limits.history_max", l.history_max as u64),
            ("limits.ws_read_buffer", l.ws_read_buffer as u64),
            ("database.batch_max", self.database.batch_max as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError(format!("{key} must be greater than 0")));
        }
        for (key, d) in [
            ("limits.hello_timeout", l.hello_timeout),
            ("limits.ping_interval", l.ping_interval),
            ("limits.idle_timeout", l.idle_timeout),
            ("server.request_head_timeout", self.server.request_head_timeout),
            ("server.request_body_timeout", self.server.request_body_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{key} must be longer than 0s")));
            }
        }
        let sio = &self.socketio;
        if sio.max_payload < 1024 || sio.buffer == 0 || sio.inbound_queue == 0 {
            return Err(ConfigError(
                "socketio.max_payload must be at least 1024, socketio.buffer and socketio.inbound_queue above 0".into(),
            ));
        }
        if sio.ping_interval.is_zero() || sio.ping_timeout.is_zero() {
            return Err(ConfigError("socketio.ping_interval and socketio.ping_timeout must be longer than 0s".into()));
        }
        if l.history_default > l.history_max {
            return Err(ConfigError("limits.history_default must not exceed limits.history_max".into()));
        }
        if !self.irc.tls_listen.is_empty() && (self.irc.tls_cert.is_empty() || self.irc.tls_key.is_empty()) {
            return Err(ConfigError("irc.tls_listen needs irc.tls_cert and irc.tls_key".into()));
        }
        if self.irc.flood_burst == 0 || self.irc.flood_per_sec == 0 {
            return Err(ConfigError("irc.flood_burst and irc.flood_per_sec must be greater than 0".into()));
        }
        if l.idle_timeout <= l.ping_interval {
            return Err(ConfigError("limits.idle_timeout must be longer than limits.ping_interval".into()));
        }
        for room in &self.rooms.auto_join {
            if crate::protocol::Name::room(room).is_err() {
                return Err(ConfigError(format!("rooms.auto_join: `{room}` is not a valid room name")));
            }
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "metrics.listen: `{}` is not an address like 127.0.0.1:9100 (or empty for the main port)",
                self.metrics.listen
            )));
        }
        let scheme = self.database.url.split(':').next().unwrap_or("");
        if !["sqlite", "postgres", "postgresql", "mysql", "mariadb", "memory"].contains(&scheme) {
            return Err(ConfigError(format!(
                "database.url: unsupported scheme `{scheme}` (use sqlite://, postgres://, mysql:// or memory://)"
            )));
        }
        if self.auth.login_per_nick_per_minute == 0
            || self.auth.login_per_ip_per_minute == 0
            || self.auth.login_failures_per_nick_per_minute == 0
        {
            return Err(ConfigError(
                "auth.login_per_nick_per_minute, auth.login_per_ip_per_minute and \
                 auth.login_failures_per_nick_per_minute must be greater than 0"
                    .into(),
            ));
        }
        for proxy in &self.server.trusted_proxies {
            if parse_net(proxy).is_none() {
                return Err(ConfigError(format!(
                    "server.trusted_proxies: `{proxy}` is not an IP address or CIDR block (10.0.0.0/8, ::1)"
                )));
            }
        }
        for host in &self.server.allowed_hosts {
            let ok = !host.is_empty()
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                && !host.starts_with(':');
            if !ok {
                return Err(ConfigError(format!(
                    "server.allowed_hosts: `{host}` must be a host name, optionally with :port (chat.example.org)"
                )));
            }
        }
        for origin in &self.auth.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                return Err(ConfigError(format!(
                    "auth.allowed_origins: `{origin}` must look like https://example.org (scheme and host, no path)"
                )));
            }
        }
        if !self.auth.hook_url.is_empty() && !self.auth.hook_url.starts_with("http://") {
            return Err(ConfigError(
                "auth.hook_url must be an http:// URL (put TLS in front with a local proxy)".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError("database.max_connections must be greater than 0".into()));
        }
        let c = &self.cluster;
        let redis_scheme = ["redis://", "redis+unix://"].iter().any(|p| c.redis_url.starts_with(p));
        if !c.redis_url.is_empty() && !redis_scheme {
            return Err(ConfigError("cluster.redis_url: must start with redis:// (or redis+unix://)".into()));
        }
        if c.prefix.is_empty() || c.prefix.contains(char::is_whitespace) {
            return Err(ConfigError("cluster.prefix: must be non-empty, without spaces".into()));
        }
        if c.heartbeat.is_zero() || c.node_timeout < c.heartbeat * 3 {
            return Err(ConfigError("cluster.node_timeout: must be at least three times cluster.heartbeat".into()));
        }
        // Not only Redis's latency: publish.lua adds a batch's log entry in
        // one XADD through one Lua `unpack` of six values a message, which
        // fails above about 1333 messages after the script has written the
        // counters and streams (a script is not rolled back). Keep 1000.
        if c.publish_batch == 0 || c.publish_batch > 1000 {
            return Err(ConfigError(
                "cluster.publish_batch: 1 to 1000 (Redis runs nothing else during a batch's script)".into(),
            ));
        }
        if c.publish_queue == 0 {
            return Err(ConfigError("cluster.publish_queue must be greater than 0".into()));
        }
        if c.sync_batch > 3000 {
            return Err(ConfigError(
                "cluster.sync_batch: at most 3000 (SQL statements have a bound on parameters)".into(),
            ));
        }
        let node = &self.server.node;
        if !node.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) || node.len() > 64 {
            return Err(ConfigError("server.node: at most 64 letters, digits, `-`, `_` or `.`".into()));
        }
        if c.sync_interval.is_zero() || c.sync_batch == 0 || c.redis_timeout.is_zero() || c.reconnect_max.is_zero() {
            return Err(ConfigError(
                "cluster: sync_interval, sync_batch, redis_timeout and reconnect_max must be above zero".into(),
            ));
        }
        self.validate_uploads()?;
        self.validate_social()?;
        self.validate_notify()
    }

    fn validate_social(&self) -> Result<(), ConfigError> {
        let s = &self.search;
        for (key, v) in [
            ("reactions.max_emoji_per_message", self.reactions.max_emoji_per_message),
            ("search.default_limit", s.default_limit),
            ("search.max_limit", s.max_limit),
            ("search.max_query_chars", s.max_query_chars),
            ("search.max_words", s.max_words),
        ] {
            if v == 0 {
                return Err(ConfigError(format!("{key} must be greater than 0")));
            }
        }
        if s.max_limit > 1000 {
            return Err(ConfigError("search.max_limit: at most 1000".into()));
        }
        Ok(())
    }

    fn validate_notify(&self) -> Result<(), ConfigError> {
        let n = &self.notify;
        if !n.webhook_url.is_empty() {
            let ok = n.webhook_url.starts_with("https://") || n.webhook_url.starts_with("http://");
            if !ok || reqwest::Url::parse(&n.webhook_url).is_err() {
                return Err(ConfigError("notify.webhook_url must be an http:// or https:// URL".into()));
            }
            if n.webhook_secret.is_empty() {
                return Err(ConfigError("notify.webhook_secret must be set with notify.webhook_url".into()));
            }
        }
        for (key, v) in [
            ("notify.webhook_batch", n.webhook_batch as u64),
            ("notify.push_max_attempts", n.push_max_attempts.into()),
            ("notify.max_subscriptions", n.max_subscriptions as u64),
            ("notify.queue", n.queue as u64),
        ] {
            if v == 0 {
                return Err(ConfigError(format!("{key} must be greater than 0")));
            }
        }
        for (key, d) in [
            ("notify.webhook_timeout", n.webhook_timeout),
            ("notify.push_timeout", n.push_timeout),
            ("notify.retry_base", n.retry_base),
            ("notify.retry_max", n.retry_max),
            ("notify.poll_interval", n.poll_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{key} must be longer than 0s")));
            }
        }
        Ok(())
    }

    fn validate_uploads(&self) -> Result<(), ConfigError> {
        let u = &self.uploads;
        for (key, v) in [
            ("uploads.max_bytes", u.max_bytes),
            ("uploads.max_pixels", u.max_pixels),
            ("uploads.thumbnail_px", u.thumbnail_px.into()),
            ("uploads.avatar_px", u.avatar_px.into()),
            ("uploads.max_attachments", u.max_attachments as u64),
        ] {
            if v == 0 {
                return Err(ConfigError(format!("{key} must be greater than 0")));
            }
        }
        for (key, d) in [
            ("uploads.unattached_ttl", u.unattached_ttl),
            ("uploads.sweep_interval", u.sweep_interval),
            ("uploads.body_timeout", u.body_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{key} must be longer than 0s")));
            }
        }
        if u.dir.is_empty() {
            return Err(ConfigError("uploads.dir must name a directory".into()));
        }
        if u.storage == StorageKind::S3 && u.s3.bucket.is_empty() {
            return Err(ConfigError("uploads.s3.bucket must be set when uploads.storage = \"s3\"".into()));
        }
        Ok(())
    }

    /// The node id: the configured one, or `hostname-pid`.
    pub fn node_id(&self) -> String {
        if !self.server.node.is_empty() {
            return self.server.node.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host = host.trim();
        format!("{}-{}", if host.is_empty() { "node" } else { host }, std::process::id())
    }
}

/// Figment's errors name the key and the layer; keep them, one per line.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            match (key.is_empty(), source.is_empty()) {
                (false, false) => format!("{key} ({source}): {}", e.kind),
                (false, true) => format!("{key}: {}", e.kind),
                _ => e.kind.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// An IP address or a CIDR block, as `server.trusted_proxies` lists them.
pub(crate) fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<std::net::IpAddr>().ok().map(|ip| ipnet::IpNet::from(ip.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::default();
        assert_eq!(c.limits.max_text, 4000);
        assert_eq!(c.limits.rate_per_sec, 10);
        assert_eq!(c.limits.hello_timeout, Duration::from_secs(10));
        assert_eq!(c.rooms.auto_join, vec!["lobby".to_string()]);
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test harness returns its own large error
    fn layers_and_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[limits]\nmax_text = 10\nburst = 5\n")?;
            jail.set_env("CHAT_LIMITS__BURST", "7");
            let c = Config::load(Some(Path::new("c.toml")), &Overrides::default(), true).unwrap();
            assert_eq!((c.limits.max_text, c.limits.burst), (10, 7));
            jail.set_env("CHAT_LIMITS__MAX_TEXT", "lots");
            let e = Config::load(None, &Overrides::default(), true).unwrap_err().to_string();
            assert!(e.contains("limits.max_text"), "{e}");
            jail.set_env("CHAT_LIMITS__MAX_TEXT", "0");
            let e = Config::load(None, &Overrides::default(), true).unwrap_err().to_string();
            assert!(e.contains("limits.max_text"), "{e}");
            jail.set_env("CHAT_LIMITS__MAX_TEXT", "5");
            // Not settings: ignored.
            jail.set_env("CHAT_TOKEN", "abc");
            jail.set_env("CHAT_PASSWORD", "abc");
            jail.set_env("CHAT_URL", "ws://example.org/ws");
            Config::load(None, &Overrides::default(), true).unwrap();
            jail.set_env("CHAT_LIMITS__TYPO", "5");
            let e = Config::load(None, &Overrides::default(), true).unwrap_err().to_string();
            assert!(e.contains("typo"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn edge_settings_are_checked() {
        let c = Config::default();
        assert!(c.server.trusted_proxies.is_empty() && c.server.allowed_hosts.is_empty());
        let mut bad = c.clone();
        bad.server.trusted_proxies = vec!["10.0.0.0/8".into(), "proxy.local".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("server.trusted_proxies"));
        let mut bad = c.clone();
        bad.server.allowed_hosts = vec!["https://chat.example.org/".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("server.allowed_hosts"));
        let mut bad = c.clone();
        bad.server.request_head_timeout = Duration::ZERO;
        assert!(bad.validate().unwrap_err().to_string().contains("server.request_head_timeout"));
        let mut bad = c;
        bad.auth.login_failures_per_nick_per_minute = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("login_failures_per_nick_per_minute"));
    }

    #[test]
    fn the_shipped_chat_toml_is_valid() {
        // The Docker image and config/chat.service start with it.
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/chat.toml"));
        let c = Config::load(Some(file), &Overrides::default(), false).unwrap();
        assert_eq!(c.database.url, "sqlite:///data/chat.db");
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
