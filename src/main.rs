//! The `chat` binary: parses flags and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chat::config::{Config, LogFormat, Overrides};
use chat::{Server, bench, client};

/// jemalloc: it gives freed pages back to the system on its own, so a
/// server that held many connections shrinks again, and an idle connection
/// costs less resident memory than with glibc's malloc (docs/performance.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "chat", version, about = "A real-time chat server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Apply the database migrations of `database.url`, then exit.
    Migrate(ServeArgs),
    /// Mint a site token (HS256, signed with auth.token_secret) for a user.
    Token(TokenArgs),
    /// Load-test a server that speaks the chat protocol.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Chat from the terminal.
    Client(client::ClientArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The site's user id (`sub`).
    #[arg(long)]
    sub: String,
    /// The user's nick.
    #[arg(long)]
    nick: String,
    /// Display name (`name`).
    #[arg(long)]
    name: Option<String>,
    /// Avatar URL.
    #[arg(long)]
    avatar: Option<String>,
    /// Rooms the user may join, comma-separated (default: any public room).
    #[arg(long, value_delimiter = ',')]
    rooms: Option<Vec<String>>,
    /// Moderator everywhere.
    #[arg(long)]
    admin: bool,
    /// How long the token is valid, e.g. 1h, 30m, 7days.
    #[arg(long, default_value = "1h")]
    ttl: humantime::Duration,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// A TOML file overriding config/default.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
}

/// The runtime's worker threads when serving: one less than the cores (at
/// least one), leaving a core to the SQLite writer's thread and the
/// database's, unless `TOKIO_WORKER_THREADS` says otherwise (tokio reads
/// it when no count is set). On 2 cores, one worker took 121 µs of CPU per
/// message at light load against 201 µs for two, and delivered more flat
/// out too (docs/performance.md, "Issue 13, fourth pass").
fn server_workers() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(cores.saturating_sub(1).max(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Some(Command::Serve(_)) | None);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(workers) = serving.then(server_workers).flatten() {
        builder.worker_threads(workers);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Bench { command }) => {
            init_logging("warn", LogFormat::Text);
            match runtime.block_on(bench::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("chat bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Client(args)) => match runtime.block_on(client::run(args)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("chat client: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Migrate(args)) => runtime.block_on(migrate(args)),
        Some(Command::Token(args)) => token(args),
        None => runtime.block_on(serve(cli.serve)),
    }
}

fn load_config(args: &ServeArgs) -> Result<Config, ExitCode> {
    let overrides = Overrides { listen: args.listen };
    Config::load(args.config.as_deref(), &overrides, true).map_err(|e| {
        eprintln!("chat: {e}");
        ExitCode::from(2)
    })
}

/// The shortest `auth.token_secret` `chat token` signs with (HS256 wants a
/// key at least as long as its hash).
const MIN_SECRET: usize = 32;

fn token(args: TokenArgs) -> ExitCode {
    let config = match load_config(&args.serve) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = chat::protocol::Name::nick(&args.nick) {
        eprintln!("chat token: --nick `{}`: {}", args.nick, e.message);
        return ExitCode::from(2);
    }
    let secret = config.auth.token_secret.expose().len();
    if secret < MIN_SECRET {
        let what = if secret == 0 { "is not set".to_string() } else { format!("is {secret} bytes, too short") };
        eprintln!(
            "chat token: auth.token_secret {what}: it must be at least {MIN_SECRET} bytes \
             (e.g. CHAT_AUTH__TOKEN_SECRET=$(openssl rand -hex 32))"
        );
        return ExitCode::from(2);
    }
    let now = chat::protocol::now_ms() as u64 / 1000;
    let claims = chat::auth::SiteClaims {
        sub: args.sub,
        nick: args.nick,
        exp: now + args.ttl.as_secs(),
        nbf: None,
        iat: Some(now),
        name: args.name,
        avatar: args.avatar,
        rooms: args.rooms,
        admin: args.admin,
    };
    match chat::auth::mint_site_token(&config.auth.token_secret, &claims) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat token: {e}");
            ExitCode::from(2)
        }
    }
}

async fn migrate(args: ServeArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config.log.filter, config.log.format);
    match chat::store::Store::open(&config).await {
        Ok(_) => {
            println!("chat: migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config.log.filter, config.log.format);
    // Listening for signals before the server answers: a SIGTERM that comes
    // as soon as /healthz does is a graceful stop, not the default death.
    let signalled = wait_for_signal();
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {e:#}");
            return ExitCode::from(2);
        }
    };
    signalled.await;
    server.stop().await;
    ExitCode::SUCCESS
}

/// Logs go to stderr: readable lines, coloured only on a terminal, or one
/// JSON object per line (never coloured).
fn init_logging(default: &str, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future it returns
/// ends at the first of them.
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
