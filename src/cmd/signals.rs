//! How `serve` and `demo` stop, whatever state they are in.
//!
//! - The first Ctrl-C (SIGINT) or SIGTERM asks for a graceful stop: the events in flight finish (for at most the
//!   grace period) and are recorded.
//! - A second one exits at once (status 130): the operator asked twice. Nothing is lost: events whose outcome was
//!   not recorded are pushed again at the next start (SQLite keeps every recorded one across an abrupt exit).
//! - A graceful stop that is not over after its deadline exits too (status 1), with a message saying so: the
//!   process must never outlive the operator's request because one part does not stop.
//!
//! Both forced exits first run the caller's cleanup (the demo removes its temporary folder).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What to do before a forced exit; runs at most once per exit, from the signal task.
pub type Cleanup = Arc<dyn Fn() + Send + Sync>;

/// Listens for SIGINT and SIGTERM: the first cancels `stop`, the second runs `cleanup` and exits with status 130.
/// Signals are received through one listener for the whole run, so none is missed between two waits.
pub fn listen(stop: CancellationToken, cleanup: Cleanup) {
    tokio::spawn(async move {
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops the process");
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
                return;
            }
        };
        let first = signals.next().await;
        tracing::info!("{first} received: stopping (send it again to exit at once)");
        stop.cancel();
        let second = signals.next().await;
        eprintln!(
            "{second} received again: exiting at once; events in flight are pushed again at the next start"
        );
        cleanup();
        std::process::exit(130);
    });
}

/// Once `stop` is cancelled, gives the graceful stop `deadline`; if the process still runs then, says so, runs
/// `cleanup` and exits with status 1.
pub fn exit_if_stuck(stop: CancellationToken, deadline: Duration, cleanup: Cleanup) {
    tokio::spawn(async move {
        stop.cancelled().await;
        tokio::time::sleep(deadline).await;
        eprintln!(
            "did not stop within {}s of the stop request: exiting anyway; events in flight are pushed again at the next start",
            deadline.as_secs()
        );
        cleanup();
        std::process::exit(1);
    });
}

/// A cleanup that does nothing.
pub fn no_cleanup() -> Cleanup {
    Arc::new(|| {})
}

/// SIGINT and SIGTERM as one stream of names.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "interrupt (Ctrl-C)",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt (Ctrl-C)"
        }
    }
}
