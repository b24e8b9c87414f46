//! The `chaintrigger` command line: parse arguments, set up logging, hand over to the library.

use clap::{Parser, Subcommand};

use chaintrigger::cmd;

#[derive(Debug, Parser)]
#[command(name = "chaintrigger", version, about, long_about = None)]
struct Cli {
    /// How log lines look on stderr: `pretty` (default) or `json` (one object per line; see the README). Overrides
    /// the configuration file's `log_format`.
    #[arg(
        long,
        global = true,
        env = "CHAINTRIGGER_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: Option<chaintrigger::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode raw `common.Block` files and print every event as a JSON line.
    Decode(cmd::decode::Args),
    /// Follow a channel on a peer and print its events as they arrive.
    Tail(cmd::tail::Args),
    /// Run a Fabric peer simulator (Deliver service) for tests and demos.
    Peersim(cmd::peersim::Args),
    /// Run the whole path on this machine: simulated peer, bundled runtime, daemon.
    Demo(cmd::demo::Args),
    /// Run the bundled function runtime (Function Compute 2016-08-15 API).
    Runtime(cmd::runtime::Args),
    /// Run the trigger daemon.
    Serve(cmd::serve::Args),
    /// Check a configuration file and exit.
    CheckConfig(cmd::check_config::Args),
    /// Manage a running daemon's triggers over its admin API.
    Triggers(cmd::triggers::Args),
    /// Try a filter on blocks with the daemon's own engine: what a trigger would push, event by event.
    Filter(cmd::filter::Args),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One clear message with its causes, never a backtrace: the errors that reach here are an operator's
            // mistake or the world's (a file, a peer, the admin API), and each names what to fix. Bugs panic, and a
            // panic still honours RUST_BACKTRACE.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    chaintrigger::install_crypto_provider();
    let cli = Cli::parse();
    // The demo draws its own progress display; the daemon's routine logs would scroll it away.
    let default_filter = match cli.command {
        Command::Demo(_) => "error",
        _ => "info",
    };
    chaintrigger::logging::init(cli.log_format, default_filter);
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Decode(args) => cmd::decode::run(args).await,
            Command::Tail(args) => cmd::tail::run(args).await,
            Command::Peersim(args) => cmd::peersim::run(args).await,
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Runtime(args) => cmd::runtime::run(args).await,
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::CheckConfig(args) => cmd::check_config::run(args).await,
            Command::Triggers(args) => cmd::triggers::run(args).await,
            Command::Filter(args) => cmd::filter::run(args).await,
        }
    });
    // Dropping the runtime would wait for every blocking task (a store write, a filter still running, a handler's
    // pipe): once the command is done, give them a moment, then exit regardless.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}

/// How long blocking tasks may still run after a command returned.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(2);
