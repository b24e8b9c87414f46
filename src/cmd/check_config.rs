//! `chaintrigger check-config`: reads a configuration file the way `serve` does, prints what it would run, or
//! every problem found (exit status 1): syntax, then types and shapes, then checks across values, then the files
//! and secrets it names (unless `--skip-environment`).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::{Config, ConfigError, FcEndpoint, HttpAuth, HttpMethod, Target, redact_url};

/// Arguments of `chaintrigger check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file to check (or give it with --config).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The configuration file to check, named as `serve` takes it.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "file")]
    pub config: Option<PathBuf>,
    /// Check only the file itself: not that the files it names exist, nor that its secrets can be read
    /// (e.g. when checking on another machine than the daemon's).
    #[arg(long)]
    pub skip_environment: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let Some(file) = args.file.or(args.config) else {
        anyhow::bail!(
            "name the configuration file: chaintrigger check-config FILE (or --config FILE)"
        );
    };
    let checked = if args.skip_environment {
        Config::load(&file)
    } else {
        Config::load_with_environment(&file)
    };
    match checked {
        Ok(config) => {
            print!("{}", summary(&config, args.skip_environment));
            Ok(())
        }
        Err(ConfigError::Invalid(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            anyhow::bail!(
                "{} problem{} in {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                file.display()
            )
        }
        Err(error) => Err(error.into()),
    }
}

/// What the daemon would run with this configuration, for a human to read over.
pub fn summary(config: &Config, skipped_environment: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: OK{}",
        config.file().display(),
        if skipped_environment {
            " (files and secrets not checked)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "instance id: {}", config.instance_id);
    let _ = writeln!(out, "database: {}", config.database.get_ref().display());
    let admin = &config.admin;
    let _ = writeln!(
        out,
        "admin API: {}://{} (token from {}){}; at most {} connections, {} to send a request, closed after {} idle",
        if admin.tls().is_some() {
            "https"
        } else {
            "http"
        },
        admin.listen.get_ref(),
        admin.token.get_ref(),
        if *admin.allow_remote.get_ref() {
            ", reachable from other machines"
        } else {
            ""
        },
        admin.max_connections.get_ref(),
        admin.header_read_timeout.get_ref(),
        admin.idle_timeout.get_ref(),
    );
    if config.runtime.enabled {
        let _ = writeln!(
            out,
            "bundled runtime: {} (data in {})",
            config.runtime.listen,
            config.runtime.data_dir.get_ref().display()
        );
    } else {
        let _ = writeln!(out, "bundled runtime: off");
    }
    let _ = writeln!(out, "channels: {}", config.channels.len());
    for channel in &config.channels {
        let peers: Vec<&str> = channel
            .peers
            .get_ref()
            .iter()
            .map(|p| p.address.get_ref().as_str())
            .collect();
        let _ = writeln!(
            out,
            "  {} as {} via {}",
            channel.name.get_ref(),
            channel.msp_id,
            peers.join(", ")
        );
    }
    let _ = writeln!(out, "triggers: {}", config.triggers.len());
    for trigger in &config.triggers {
        let target = match &trigger.target {
            Target::FunctionCompute(fc) => {
                let endpoint = match fc.endpoint.get_ref() {
                    FcEndpoint::Embedded => "embedded runtime".to_owned(),
                    FcEndpoint::Url(url) => redact_url(url).trim_end_matches('/').to_owned(),
                };
                let qualifier = fc
                    .qualifier
                    .as_ref()
                    .map(|q| format!(".{q}"))
                    .unwrap_or_default();
                format!(
                    "Function Compute {}{qualifier}/{} at {endpoint} ({})",
                    fc.service,
                    fc.function,
                    fc.invocation.as_str()
                )
            }
            Target::Http(http) => {
                let method = match http.method {
                    HttpMethod::Get => "GET",
                    HttpMethod::Post => "POST",
                };
                let auth = match http.auth {
                    HttpAuth::None => "no auth",
                    HttpAuth::Basic { .. } => "basic auth",
                    HttpAuth::Bearer { .. } => "bearer token",
                };
                format!("HTTP {method} {} ({auth})", redact_url(&http.url))
            }
        };
        let filter = match &trigger.filter {
            Some(_) => format!("{} filter", trigger.filter_language),
            None => "no filter".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}{}: {} {} events, {filter} -> {target}; failure threshold {}, {} attempts, starts at {}",
            trigger.name.get_ref(),
            if trigger.enabled { "" } else { " (disabled)" },
            trigger.channel.get_ref(),
            trigger.event,
            trigger.failure_threshold,
            trigger.retry.attempts,
            trigger.start,
        );
    }
    out
}
