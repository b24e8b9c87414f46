//! `chaintrigger serve`: the trigger daemon, until Ctrl-C or SIGTERM (SIGHUP reloads the configuration).

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

/// Arguments of `chaintrigger serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TOML configuration file (see `config/chaintrigger.toml`).
    #[arg(long, short = 'c', env = "CHAINTRIGGER_CONFIG")]
    pub config: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    crate::app::run(&args.config, shutdown).await
}

/// Cancels `shutdown` at the first Ctrl-C (SIGINT) or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}
