//! The admin HTTP API: list and show triggers, enable / disable / delete them, list and re-push dead letters,
//! reload the configuration, `/healthz`, `/readyz` and Prometheus `/metrics`.
//!
//! The engine answers through [`EngineControl`] ([`control`]); this module only speaks HTTP. Every route but
//! `/healthz` and `/readyz` requires `Authorization: Bearer <token>` ([`AdminToken`]), and the API listens on loopback
//! unless the configuration sets up remote access (`allow_remote` with TLS; [`check_listen_address`]).
//! [`server`] serves it with a connection cap, header-read and idle timeouts, and TLS when configured.
//!
//! | route | answer |
//! |---|---|
//! | `GET /`, `/app.js`, `/app.css` (no token) | the status page ([`page`]): it holds no data and reads the routes below with the token |
//! | `GET /healthz` (no token) | `{"status": "ok"}`: liveness, whatever the channels do |
//! | `GET /readyz` (no token) | `{"status": "ready"}` once every channel connected once; else 503 `{"status": "not_ready", "channels_not_connected": [name]}` |
//! | `GET /v1/triggers` | `{"triggers": [TriggerStatus]}` |
//! | `GET /v1/triggers/{name}` | `TriggerStatus` |
//! | `POST /v1/triggers/{name}/enable?from=latest\|position\|<block>` (or body `{"from": ...}`) | `TriggerStatus` |
//! | `POST /v1/triggers/{name}/disable` | `TriggerStatus` |
//! | `DELETE /v1/triggers/{name}` | `{"deleted": name}` |
//! | `GET /v1/triggers/{name}/dead-letters?after=<id>&limit=<n>` | `{"trigger", "dead_letters": [DeadLetter], "next_after"}` |
//! | `POST /v1/triggers/{name}/dead-letters/{id}/repush` | `RepushResult` |
//! | `POST /v1/triggers/{name}/dead-letters/repush` | `{"trigger", "outcomes": [RepushResult]}` |
//! | `POST /v1/reload` | `ReloadReport` |
//! | `GET /v1/channels` | `{"channels": [ChannelStatus]}` |
//! | `GET /metrics` | Prometheus text |
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with 400, 401, 404, 405, 409, 413, 422, 500
//! or 503; a request head over the limits of [`server`] gets a bare 431 from the HTTP layer.

pub mod api;
pub mod auth;
pub mod control;
mod engine;
pub mod metrics;
pub mod page;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::{ApiError, MAX_DEAD_LETTER_PAGE, router};
pub use auth::{AdminToken, TokenError};
pub use control::{
    ChannelStatus, ControlError, DEFAULT_FILTER_TEST_BLOCKS, DaemonReload, DeadLetter,
    DeletedTrigger, EnableAt, EnableFrom, EngineControl, EventSelector, FilterTest,
    FilterTestAnswer, InvokeLatency, LastError, MAX_FILTER_TEST_BLOCKS, Position, ReloadReport,
    RepushResult, TimeResolution, TriggerState, TriggerStatus,
};
pub use metrics::{HistogramSnapshot, LatencyHistogram};
pub use server::{Limits, ServeOptions};

/// The admin API's port when the configuration does not name one; the CLI's default `--admin` URL uses it.
pub const DEFAULT_PORT: u16 = 8650;

/// The environment variable the daemon and the CLI read the admin token from by default.
pub const DEFAULT_TOKEN_ENV: &str = "CHAINTRIGGER_ADMIN_TOKEN";

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The configured address is reachable from other machines and remote access was not set up.
    #[error(
        "the admin API would listen on {address}, which is not a loopback address, and the API can disable and \
         delete triggers: listen on 127.0.0.1 or [::1], or serve other machines with `allow_remote = true` in [admin] \
         together with `tls_certificate` and `tls_key`"
    )]
    NonLoopback {
        /// The refused address.
        address: SocketAddr,
    },
    /// The address could not be bound (in use, or not an address of this machine).
    #[error("the admin API cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// Who may reach the API: loopback only, or other machines too (over TLS: the configuration refuses remote access
/// without it, and the daemon passes [`Exposure::Remote`] only with a TLS configuration in hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Only this machine: the listen address must be a loopback address.
    LoopbackOnly,
    /// `[admin] allow_remote = true` with TLS.
    Remote,
}

/// Refuses a listen address that other machines can reach unless remote access was set up.
pub fn check_listen_address(address: SocketAddr, exposure: Exposure) -> Result<(), AdminError> {
    if address.ip().is_loopback() || exposure == Exposure::Remote {
        Ok(())
    } else {
        Err(AdminError::NonLoopback { address })
    }
}

/// Checks `address` with [`check_listen_address`] and binds it: what the daemon does at start, so a bad or
/// busy address stops it with a message naming the address.
pub async fn bind(address: SocketAddr, exposure: Exposure) -> Result<TcpListener, AdminError> {
    check_listen_address(address, exposure)?;
    TcpListener::bind(address)
        .await
        .map_err(|source| AdminError::Bind { address, source })
}

/// Serves the admin API on `listener` until `shutdown` is cancelled, then finishes the requests in flight
/// (within [`server::SHUTDOWN_GRACE`]). `options` bounds connections and time ([`server`]) and turns on TLS.
pub async fn run<C: EngineControl>(
    listener: TcpListener,
    control: Arc<C>,
    token: AdminToken,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    if let Ok(address) = listener.local_addr() {
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(%address, %scheme, max_connections = options.limits.max_connections, "admin API listening");
    }
    server::serve(listener, router(control, token), options, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_pass_without_explicit_permission() {
        for address in ["127.0.0.1:8650", "[::1]:8650", "127.1.2.3:0"] {
            assert!(
                check_listen_address(address.parse().unwrap(), Exposure::LoopbackOnly).is_ok(),
                "{address}"
            );
        }
        for address in ["0.0.0.0:8650", "[::]:8650", "10.0.0.5:8650"] {
            let error =
                check_listen_address(address.parse().unwrap(), Exposure::LoopbackOnly).unwrap_err();
            assert!(error.to_string().contains(address), "{error}");
            assert!(
                error
                    .to_string()
                    .contains("`allow_remote = true` in [admin]"),
                "the message names the setting: {error}"
            );
            assert!(
                check_listen_address(address.parse().unwrap(), Exposure::Remote).is_ok(),
                "{address}"
            );
        }
    }

    #[tokio::test]
    async fn bind_refuses_remote_addresses_and_names_a_busy_one() {
        let error = bind("0.0.0.0:0".parse().unwrap(), Exposure::LoopbackOnly)
            .await
            .unwrap_err();
        assert!(matches!(error, AdminError::NonLoopback { .. }), "{error}");
        let taken = bind("127.0.0.1:0".parse().unwrap(), Exposure::LoopbackOnly)
            .await
            .unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind(address, Exposure::LoopbackOnly).await.unwrap_err();
        assert!(matches!(error, AdminError::Bind { .. }), "{error}");
        assert!(error.to_string().contains(&address.to_string()), "{error}");
    }
}
