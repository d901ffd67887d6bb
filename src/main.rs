//! The `chat` binary: parses flags and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chat::config::{Config, Overrides};
use chat::{Server, bench};

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
    /// Load-test a server that speaks the chat protocol.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Bench { command }) => {
            init_logging("warn");
            match runtime.block_on(bench::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("chat bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Migrate(args)) => runtime.block_on(migrate(args)),
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

async fn migrate(args: ServeArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config.log.filter);
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
    init_logging(&config.log.filter);
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {e:#}");
            return ExitCode::from(2);
        }
    };
    wait_for_signal().await;
    server.stop().await;
    ExitCode::SUCCESS
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
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
