//! `chaintrigger runtime`: the bundled function runtime on its own.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::runtime::auth::{AccessKey, Secret};
use crate::runtime::{RunAs, Runtime, RuntimeConfig};

/// Arguments of `chaintrigger runtime`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the Function Compute API (loopback unless signed or explicitly allowed).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Where the database, the code and the handler processes' files live (relative to the current folder).
    #[arg(long)]
    data_dir: PathBuf,
    /// Folder of operator-declared functions: `<service>/<function>/function.toml` plus code.
    #[arg(long)]
    functions: Option<PathBuf>,
    /// AccessKeyId clients must sign with; requires a secret.
    #[arg(long)]
    access_key_id: Option<String>,
    /// Name of the environment variable holding the AccessKeySecret.
    #[arg(long, conflicts_with = "access_key_secret_file")]
    access_key_secret_env: Option<String>,
    /// File holding the AccessKeySecret (trailing newline ignored).
    #[arg(long)]
    access_key_secret_file: Option<PathBuf>,
    /// Account-wide limit of concurrent invocations; sync calls over it get 429.
    #[arg(long, default_value_t = 100)]
    max_concurrency: usize,
    /// Default retries of failed async invocations (0-8) for functions without their own async config.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=8))]
    async_retries: u32,
    /// Default maximum age of async events in seconds (1-604800) for functions without their own async config.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    async_max_event_age: u64,
    /// Serve without authentication on a non-loopback address (anyone who can reach it can run code).
    #[arg(long)]
    allow_anonymous_non_loopback: bool,
    /// Who handlers run as when the runtime is root: USER or USER:GROUP, names or numeric ids (default: nobody).
    #[arg(long, value_name = "USER[:GROUP]")]
    run_as: Option<RunAs>,
}

fn read_secret(args: &Args) -> anyhow::Result<Option<AccessKey>> {
    let Some(id) = &args.access_key_id else {
        anyhow::ensure!(
            args.access_key_secret_env.is_none() && args.access_key_secret_file.is_none(),
            "--access-key-secret-env / --access-key-secret-file need --access-key-id"
        );
        return Ok(None);
    };
    let secret = match (&args.access_key_secret_env, &args.access_key_secret_file) {
        (Some(var), _) => std::env::var(var).with_context(|| {
            format!("the environment variable {var} (--access-key-secret-env) is not set")
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the secret file {}", file.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        (None, None) => anyhow::bail!(
            "--access-key-id needs --access-key-secret-env or --access-key-secret-file"
        ),
    };
    anyhow::ensure!(!secret.is_empty(), "the access key secret is empty");
    Ok(Some(AccessKey {
        id: id.clone(),
        secret: Secret::new(secret),
    }))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = RuntimeConfig::new(&args.data_dir);
    config.access_key = read_secret(&args)?;
    config.functions_dir = args.functions.clone();
    config.max_concurrency = args.max_concurrency.max(1);
    config.async_defaults.max_retries = args.async_retries;
    config.async_defaults.max_age_secs = args.async_max_event_age;
    config.allow_anonymous_non_loopback = args.allow_anonymous_non_loopback;
    if let Some(run_as) = &args.run_as {
        config.pool.run_as = Some(run_as.resolve().context("--run-as")?);
    }
    let runtime = Runtime::open(config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping the function runtime");
        on_signal.cancel();
    });
    runtime.run(listener, shutdown).await?;
    Ok(())
}
