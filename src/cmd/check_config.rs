//! `chaintrigger check-config`: reads a configuration file the way `serve` does, prints what it would run, or
//! every problem found (exit status 1).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::{Config, ConfigError, FcEndpoint, HttpAuth, HttpMethod, Target};

/// Arguments of `chaintrigger check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file to check.
    pub file: PathBuf,
    /// Check only the file itself: not that the files it names exist, nor that its secrets can be read
    /// (e.g. when checking on another machine than the daemon's).
    #[arg(long)]
    pub skip_environment: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let checked = Config::load(&args.file).and_then(|config| {
        if !args.skip_environment {
            config.check_environment()?;
        }
        Ok(config)
    });
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
                args.file.display()
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
    let _ = writeln!(
        out,
        "admin API: {} (token from {})",
        config.admin.listen,
        config.admin.token.get_ref()
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
                    FcEndpoint::Url(url) => url.as_str().trim_end_matches('/').to_owned(),
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
                format!("HTTP {method} {} ({auth})", http.url)
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
