//! `chaintrigger serve`: the trigger daemon, until Ctrl-C or SIGTERM (SIGHUP reloads the configuration).
//!
//! The first Ctrl-C / SIGTERM stops it gracefully: the events in flight may finish for
//! [`crate::app::DEFAULT_SHUTDOWN_GRACE`]; a second one exits at once, and a stop still not over
//! [`STOP_MARGIN`] after the grace period exits anyway (see [`super::signals`]).

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::signals;

/// How long after the grace period a stop may still take (the admin API, the bundled runtime, the store) before
/// the process exits anyway.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Arguments of `chaintrigger serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TOML configuration file (see `config/chaintrigger.toml`).
    #[arg(long, short = 'c', env = "CHAINTRIGGER_CONFIG")]
    pub config: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    signals::listen(shutdown.clone(), signals::no_cleanup());
    signals::exit_if_stuck(
        shutdown.clone(),
        crate::app::DEFAULT_SHUTDOWN_GRACE + STOP_MARGIN,
        signals::no_cleanup(),
    );
    crate::app::run(&args.config, shutdown).await
}
