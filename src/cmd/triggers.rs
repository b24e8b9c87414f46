//! `chaintrigger triggers`: manage a running daemon's triggers over its admin API.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::admin::{
    ChannelStatus, DeadLetter, DeletedTrigger, EnableAt, ReloadReport, RepushResult,
    TimeResolution, TriggerStatus,
};
use crate::config::{redact_url, redact_url_text};
use crate::dispatch::{error_chain, find_rustls_error};

/// The admin API URL when `--admin` is not given: the daemon's default (loopback, [`crate::admin::DEFAULT_PORT`]).
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8650";

/// How many characters of an error message a table shows; `show` prints it whole.
const TABLE_ERROR_WIDTH: usize = 60;

/// Arguments of `chaintrigger triggers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's admin API: http://127.0.0.1:PORT, or https://HOST:PORT when it serves TLS.
    #[arg(long, global = true, env = "CHAINTRIGGER_ADMIN_URL", default_value = DEFAULT_ADMIN_URL)]
    admin: String,
    /// The environment variable holding the admin token.
    #[arg(long, global = true, default_value = crate::admin::DEFAULT_TOKEN_ENV)]
    token_env: String,
    /// A file holding the admin token (overrides --token-env).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to verify an https:// admin API with (instead of the system's roots), e.g. the CA of
    /// a self-signed `tls_certificate`.
    #[arg(
        long,
        global = true,
        env = "CHAINTRIGGER_ADMIN_CA",
        value_name = "FILE"
    )]
    admin_ca: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List every trigger with its state and progress.
    List {
        /// List the triggers deleted over the API instead (kept by the daemon's store), with where each was.
        #[arg(long)]
        deleted: bool,
    },
    /// Show one trigger in full.
    Show {
        /// The trigger's name.
        name: String,
    },
    /// Enable a trigger (from the latest block by default; resets its failure count).
    Enable {
        /// The trigger's name.
        name: String,
        /// Where to start: `latest`, `position` (the stored position), a block number, or
        /// `time:2026-11-29T10:00:00Z` (the first block created at or after that time; the daemon finds it with a
        /// few one-block reads and the answer shows the block and its time; a time after the newest block is
        /// refused).
        #[arg(long, default_value = "latest", value_name = "WHERE")]
        from: EnableAt,
    },
    /// Disable a trigger: it stops pushing and events meanwhile are discarded.
    Disable {
        /// The trigger's name.
        name: String,
    },
    /// Delete a trigger permanently (it stays deleted across restarts).
    Delete {
        /// The trigger's name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// List a trigger's dead letters, or push them again.
    DeadLetters {
        /// The trigger's name.
        name: String,
        /// Only dead letters with an id greater than this (for paging).
        #[arg(long)]
        after: Option<u64>,
        /// At most this many dead letters.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Push the dead letter with this id again.
        #[arg(long, conflicts_with = "repush_all")]
        repush: Option<u64>,
        /// Push every not yet re-pushed dead letter again, oldest first.
        #[arg(long)]
        repush_all: bool,
    },
    /// Re-read the daemon's configuration file and apply the differences.
    Reload,
    /// List the channels with their chain height and connection.
    Channels,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let token = read_token(&args)?;
    let client = AdminClient::new(&args.admin, args.admin_ca.as_deref(), token)?;
    let json = args.json;
    match args.command {
        Command::List { deleted: true } => {
            let answer = client
                .call(Method::GET, &["v1", "triggers"], &[("deleted", "true")])
                .await?;
            if json {
                return print_json(&answer);
            }
            let list: DeletedList = decode(answer)?;
            print!("{}", deleted_table(&list.triggers));
        }
        Command::List { deleted: false } => {
            let answer = client.call(Method::GET, &["v1", "triggers"], &[]).await?;
            if json {
                return print_json(&answer);
            }
            let list: TriggerList = decode(answer)?;
            print!("{}", trigger_table(&list.triggers));
        }
        Command::Show { name } => {
            let answer = client
                .call(Method::GET, &["v1", "triggers", &name], &[])
                .await?;
            if json {
                return print_json(&answer);
            }
            print!("{}", trigger_details(&decode(answer)?));
        }
        Command::Enable { name, from } => {
            let from = from.to_string();
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "triggers", &name, "enable"],
                    &[("from", &from)],
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            let resolved: EnableAnswer = decode(answer.clone())?;
            if let Some(resolved) = resolved.resolved {
                println!(
                    "{from} is block {} (created {}), the first block at or after that time",
                    resolved.block,
                    resolved
                        .block_time
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            let status: TriggerStatus = decode(answer)?;
            println!(
                "enabled {} from {from}: {} at {}",
                status.name,
                status.state,
                position_text(&status)
            );
        }
        Command::Disable { name } => {
            let answer = client
                .call(Method::POST, &["v1", "triggers", &name, "disable"], &[])
                .await?;
            if json {
                return print_json(&answer);
            }
            let status: TriggerStatus = decode(answer)?;
            println!(
                "disabled {}: {} at {}",
                status.name,
                status.state,
                position_text(&status)
            );
        }
        Command::Delete { name, yes } => {
            if !yes && !confirm_delete(&name)? {
                bail!("trigger {name:?} was not deleted");
            }
            let answer = client
                .call(Method::DELETE, &["v1", "triggers", &name], &[])
                .await?;
            if json {
                return print_json(&answer);
            }
            println!("deleted {name} (permanently; remove it from the configuration file too)");
        }
        Command::DeadLetters {
            name,
            repush: Some(id),
            ..
        } => {
            let id_text = id.to_string();
            let path = ["v1", "triggers", &name, "dead-letters", &id_text, "repush"];
            let answer = client.call(Method::POST, &path, &[]).await?;
            if json {
                print_json(&answer)?;
            }
            let outcome: RepushResult = decode(answer)?;
            report_repush(&[outcome], json)?;
        }
        Command::DeadLetters {
            name,
            repush_all: true,
            ..
        } => {
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "triggers", &name, "dead-letters", "repush"],
                    &[],
                )
                .await?;
            if json {
                print_json(&answer)?;
            }
            let outcomes: RepushAll = decode(answer)?;
            report_repush(&outcomes.outcomes, json)?;
        }
        Command::DeadLetters {
            name, after, limit, ..
        } => {
            let limit = limit.to_string();
            let after = after.map(|after| after.to_string());
            let mut query = vec![("limit", limit.as_str())];
            if let Some(after) = &after {
                query.push(("after", after));
            }
            let answer = client
                .call(
                    Method::GET,
                    &["v1", "triggers", &name, "dead-letters"],
                    &query,
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            let page: DeadLetterPage = decode(answer)?;
            print!("{}", dead_letter_table(&page.dead_letters));
            if let Some(next) = page.next_after {
                println!("(more: --after {next})");
            }
        }
        Command::Reload => {
            let answer = client.call(Method::POST, &["v1", "reload"], &[]).await?;
            if json {
                return print_json(&answer);
            }
            let report: ReloadReport = decode(answer)?;
            print!("{}", reload_summary(&report));
        }
        Command::Channels => {
            let answer = client.call(Method::GET, &["v1", "channels"], &[]).await?;
            if json {
                return print_json(&answer);
            }
            let list: ChannelList = decode(answer)?;
            print!("{}", channel_table(&list.channels));
        }
    }
    Ok(())
}

/// `GET /v1/triggers`.
#[derive(Debug, Deserialize)]
struct TriggerList {
    triggers: Vec<TriggerStatus>,
}

/// `POST /v1/triggers/{name}/enable`: the status, plus where a time resolved to.
#[derive(Debug, Deserialize)]
struct EnableAnswer {
    resolved: Option<TimeResolution>,
}

/// `GET /v1/triggers?deleted=true`.
#[derive(Debug, Deserialize)]
struct DeletedList {
    triggers: Vec<DeletedTrigger>,
}

/// `GET /v1/channels`.
#[derive(Debug, Deserialize)]
struct ChannelList {
    channels: Vec<ChannelStatus>,
}

/// `GET /v1/triggers/{name}/dead-letters`.
#[derive(Debug, Deserialize)]
struct DeadLetterPage {
    dead_letters: Vec<DeadLetter>,
    next_after: Option<u64>,
}

/// `POST /v1/triggers/{name}/dead-letters/repush`.
#[derive(Debug, Deserialize)]
struct RepushAll {
    outcomes: Vec<RepushResult>,
}

/// The API's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

fn read_token(args: &Args) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?,
        None => std::env::var(&args.token_env).map_err(|_| {
            anyhow::anyhow!(
                "no admin token: set the environment variable {} or pass --token-file FILE",
                args.token_env
            )
        })?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(token)
}

/// A thin client of the admin API that turns every failure into a message naming the URL.
struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl AdminClient {
    fn new(admin: &str, ca: Option<&Path>, token: String) -> anyhow::Result<Self> {
        let base = Url::parse(admin).with_context(|| {
            format!(
                "--admin must be a URL like {DEFAULT_ADMIN_URL}, found {:?}",
                redact_url_text(admin)
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!(
                "--admin must be an http:// or https:// URL like {DEFAULT_ADMIN_URL}, found {:?}",
                redact_url(&base)
            );
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            if base.scheme() != "https" {
                bail!(
                    "--admin-ca {} is given but --admin {} is not https://: the token would travel in clear",
                    ca.display(),
                    redact_url(&base)
                );
            }
            builder = builder.tls_certs_only(read_ca(ca)?);
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(Self { http, base, token })
    }

    /// Calls one route; the path is given as segments so trigger names are escaped properly.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<serde_json::Value> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--admin {} cannot take a path", redact_url(&self.base)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| unreachable_error(&self.base, error))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {method} {}", redact_url(&url)))?;
        if status.is_success() {
            return serde_json::from_slice(&body).with_context(|| {
                format!(
                    "{method} {} answered {status} with a body that is not JSON",
                    redact_url(&url)
                )
            });
        }
        Err(api_error(status, &body, &method, &url))
    }
}

/// The CA certificates of `--admin-ca`: at least one, each of them a certificate.
fn read_ca(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the --admin-ca file {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
        format!(
            "--admin-ca {}: not a PEM certificate bundle",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        bail!(
            "--admin-ca {}: expected one or more PEM CERTIFICATE blocks, found none",
            path.display()
        );
    }
    Ok(certificates)
}

fn unreachable_error(base: &Url, error: reqwest::Error) -> anyhow::Error {
    let base = redact_url(base);
    let cause = std::iter::successors(std::error::Error::source(&error), |source| source.source())
        .last()
        .map_or_else(|| error_chain(&error), ToString::to_string);
    if let Some(rustls::Error::InvalidCertificate(_)) = find_rustls_error(&error) {
        anyhow::anyhow!(
            "the admin API at {base} presented a certificate this client does not trust: {cause} (pass its CA with \
             --admin-ca FILE)"
        )
    } else if error.is_connect() {
        anyhow::anyhow!(
            "cannot connect to the admin API at {base}: {cause} (is the daemon running, and is --admin right?)"
        )
    } else if error.is_timeout() {
        anyhow::anyhow!("the admin API at {base} did not answer in time: {cause}")
    } else {
        anyhow::anyhow!("request to the admin API at {base} failed: {cause}")
    }
}

fn api_error(status: StatusCode, body: &[u8], method: &Method, url: &Url) -> anyhow::Error {
    let url = redact_url(url);
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => {
            let hint = if status == StatusCode::UNAUTHORIZED {
                " (check the admin token)"
            } else {
                ""
            };
            anyhow::anyhow!(
                "{}{hint} [{} {}]",
                error.message,
                status.as_u16(),
                error.code
            )
        }
        Err(_) => anyhow::anyhow!(
            "{method} {url} answered {status}: {}",
            truncate(String::from_utf8_lossy(body).trim(), 200)
        ),
    }
}

fn decode<T: DeserializeOwned>(answer: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(answer).context(
        "the admin API answered JSON of an unexpected shape (is the daemon the same version?)",
    )
}

fn print_json(answer: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(answer)?);
    Ok(())
}

fn confirm_delete(name: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to delete trigger {name:?} without --yes: deletion is permanent");
    }
    eprint!("Delete trigger {name:?} permanently? It stays deleted across restarts. [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn report_repush(outcomes: &[RepushResult], json: bool) -> anyhow::Result<()> {
    let failed = outcomes.iter().filter(|outcome| !outcome.delivered).count();
    if !json {
        for outcome in outcomes {
            match &outcome.error {
                None if outcome.delivered => println!("dead letter {}: delivered", outcome.id),
                None => println!("dead letter {}: not delivered", outcome.id),
                Some(error) => println!("dead letter {}: not delivered: {error}", outcome.id),
            }
        }
        if outcomes.is_empty() {
            println!("no dead letters to push again");
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} dead letters were not delivered",
            outcomes.len()
        );
    }
    Ok(())
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn position_text(status: &TriggerStatus) -> String {
    format!(
        "block {} event {}",
        status.position.block, status.position.event_index
    )
}

/// Cuts `text` to `width` characters (not bytes, so multi-byte text never splits), marking the cut.
fn truncate(text: &str, width: usize) -> String {
    let single_line = text.replace('\n', " ");
    if single_line.chars().count() <= width {
        return single_line;
    }
    let mut cut: String = single_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Lays out rows under a header with columns as wide as their widest cell; lines carry no trailing spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        for (cell, width) in row.iter().zip(&widths) {
            out.push_str(cell);
            out.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

/// The triggers as a table; with several daemons on one database (any trigger has an owner), an OWNER column
/// says which daemon works on each.
fn trigger_table(triggers: &[TriggerStatus]) -> String {
    let clustered = triggers.iter().any(|trigger| trigger.owner.is_some());
    let mut rows: Vec<Vec<String>> = triggers
        .iter()
        .map(|trigger| {
            vec![
                trigger.name.clone(),
                trigger.channel.clone(),
                trigger.event_type.to_string(),
                trigger.state.to_string(),
                format!(
                    "{}/{}",
                    optional(trigger.block_height),
                    optional(trigger.chain_height)
                ),
                optional(trigger.lag),
                trigger.failures_text(),
                trigger.delivered.to_string(),
                trigger.discarded.to_string(),
                trigger
                    .last_error
                    .as_ref()
                    .map_or_else(String::new, timed_error),
            ]
        })
        .collect();
    let mut header = vec![
        "NAME",
        "CHANNEL",
        "TYPE",
        "STATE",
        "HEIGHT/CHAIN",
        "LAG",
        "FAILURES",
        "DELIVERED",
        "DISCARDED",
        "LAST ERROR",
    ];
    if clustered {
        const AFTER_STATE: usize = 4;
        header.insert(AFTER_STATE, "OWNER");
        for (row, trigger) in rows.iter_mut().zip(triggers) {
            let owner = trigger.owner.as_deref().unwrap_or("(none)");
            row.insert(AFTER_STATE, owner.to_owned());
        }
    }
    table(&header, &rows)
}

fn deleted_table(triggers: &[DeletedTrigger]) -> String {
    if triggers.is_empty() {
        return "no deleted triggers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = triggers
        .iter()
        .map(|trigger| {
            vec![
                trigger.name.clone(),
                format!(
                    "block {} event {}",
                    trigger.position.block, trigger.position.event_index
                ),
                trigger.delivered.to_string(),
                trigger.discarded.to_string(),
                trigger.deleted_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                if trigger.in_configuration {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "NAME",
            "POSITION",
            "DELIVERED",
            "DISCARDED",
            "DELETED AT",
            "IN CONFIG",
        ],
        &rows,
    );
    text.push_str(
        "A deleted name stays deleted. To bring a trigger back, give its entry a new name (with `start = <block>` to \
         resume where it was) and run `chaintrigger triggers reload`.\n",
    );
    text
}

fn trigger_details(status: &TriggerStatus) -> String {
    let last_error = status.last_error.as_ref().map_or_else(
        || "-".to_owned(),
        |error| format!("{} ({})", error.message, error.at.to_rfc3339()),
    );
    let lines = [
        ("name", status.name.clone()),
        ("channel", status.channel.clone()),
        ("event type", status.event_type.to_string()),
        ("target", status.target.clone()),
        ("state", status.state.to_string()),
        ("block height", optional(status.block_height)),
        ("position", position_text(status)),
        ("chain height", optional(status.chain_height)),
        ("lag", optional(status.lag)),
        ("failures", status.failures_text()),
        ("delivered", status.delivered.to_string()),
        ("discarded", status.discarded.to_string()),
        ("retries", status.retries.to_string()),
        (
            "enabled at",
            optional(status.enabled_at.map(|at| at.to_rfc3339())),
        ),
        ("last error", last_error),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key:<13} {value}\n"))
        .collect()
}

fn dead_letter_table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|letter| {
            vec![
                letter.id.to_string(),
                letter.block.to_string(),
                letter.event_index.to_string(),
                letter.event_id.clone(),
                letter.attempts.to_string(),
                letter.at.to_rfc3339(),
                if letter.repushed {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                },
                truncate(&letter.error, TABLE_ERROR_WIDTH),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "BLOCK",
            "INDEX",
            "EVENT ID",
            "ATTEMPTS",
            "DISCARDED AT",
            "REPUSHED",
            "ERROR",
        ],
        &rows,
    )
}

fn channel_table(channels: &[ChannelStatus]) -> String {
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|channel| {
            vec![
                channel.name.clone(),
                optional(channel.chain_height),
                channel
                    .peer
                    .clone()
                    .unwrap_or_else(|| "(disconnected)".to_owned()),
                channel.reconnects.to_string(),
                catch_up_text(channel),
                channel
                    .last_error
                    .as_ref()
                    .map_or_else(String::new, timed_error),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "CHANNEL",
            "HEIGHT",
            "PEER",
            "RECONNECTS",
            "CATCH-UP",
            "LAST ERROR",
        ],
        &rows,
    );
    let peers: Vec<Vec<String>> = channels
        .iter()
        .flat_map(|channel| {
            channel.peers.iter().map(|peer| {
                let state = match (peer.current, peer.stale) {
                    (true, true) => "current, stale",
                    (true, false) => "current",
                    (false, true) => "stale",
                    (false, false) => "",
                };
                vec![
                    channel.name.clone(),
                    peer.address.clone(),
                    optional(peer.height),
                    state.to_owned(),
                    peer.last_error
                        .as_ref()
                        .map_or_else(String::new, timed_error),
                ]
            })
        })
        .collect();
    if !peers.is_empty() {
        text.push('\n');
        text.push_str(&table(
            &["CHANNEL", "PEER", "HEIGHT", "STATE", "LAST ERROR"],
            &peers,
        ));
    }
    text
}

/// `open/limit`, with the triggers waiting for one when any are.
fn catch_up_text(channel: &ChannelStatus) -> String {
    let catch_up = &channel.catch_up;
    if catch_up.waiting > 0 {
        format!(
            "{}/{} ({} waiting)",
            catch_up.open, catch_up.limit, catch_up.waiting
        )
    } else {
        format!("{}/{}", catch_up.open, catch_up.limit)
    }
}

/// An error in a table: when it happened (UTC, to the second), then its message cut to the table's width.
fn timed_error(error: &crate::admin::LastError) -> String {
    format!(
        "{} {}",
        error.at.format("%Y-%m-%d %H:%M:%SZ"),
        truncate(&error.message, TABLE_ERROR_WIDTH)
    )
}

fn reload_summary(report: &ReloadReport) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut text = format!(
        "reloaded\nadded          {}\nremoved        {}\nchanged        {}\nstill deleted  {}\n",
        list(&report.added),
        list(&report.removed),
        list(&report.changed),
        list(&report.still_deleted)
    );
    // Several daemons on one database: how each other daemon's reload went.
    for other in report.daemons.iter().flatten() {
        match (&other.report, &other.error) {
            (Some(theirs), _) => text.push_str(&format!(
                "daemon {}  reloaded (added {}; removed {}; changed {})\n",
                other.daemon,
                list(&theirs.added),
                list(&theirs.removed),
                list(&theirs.changed)
            )),
            (None, error) => text.push_str(&format!(
                "daemon {}  NOT reloaded: {}\n",
                other.daemon,
                error.as_deref().unwrap_or("no reason given")
            )),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_summary_names_every_other_daemon() {
        let report = ReloadReport {
            added: vec!["new".into()],
            daemons: Some(vec![
                crate::admin::DaemonReload {
                    daemon: "a-1-x".into(),
                    reloaded: true,
                    report: Some(Box::new(ReloadReport {
                        added: vec!["new".into()],
                        ..ReloadReport::default()
                    })),
                    error: None,
                },
                crate::admin::DaemonReload {
                    daemon: "b-2-y".into(),
                    reloaded: false,
                    report: None,
                    error: Some("did not answer".into()),
                },
            ]),
            ..ReloadReport::default()
        };
        let text = reload_summary(&report);
        assert!(
            text.contains("daemon a-1-x  reloaded (added new;"),
            "{text}"
        );
        assert!(
            text.contains("daemon b-2-y  NOT reloaded: did not answer"),
            "{text}"
        );
        assert!(!reload_summary(&ReloadReport::default()).contains("daemon"));
    }

    #[test]
    fn default_admin_url_uses_the_default_port() {
        let url = Url::parse(DEFAULT_ADMIN_URL).unwrap();
        assert_eq!(url.port(), Some(crate::admin::DEFAULT_PORT));
        assert!(url.host_str() == Some("127.0.0.1"));
    }

    #[test]
    fn truncate_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("line\nbreak", 20), "line break");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    fn listed(name: &str, owner: Option<&str>) -> TriggerStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "channel": "mychannel", "event_type": "Tx", "target": "http:POST http://h/",
            "state": "Running", "block_height": 4, "position": {"block": 5, "event_index": 0},
            "chain_height": 6, "lag": 1, "failure_count": 0, "failure_threshold": 10, "last_error": null,
            "delivered": 3, "discarded": 0, "retries": 0, "owner": owner,
        }))
        .expect("a trigger status")
    }

    #[test]
    fn the_owner_column_appears_only_with_several_daemons() {
        let alone = trigger_table(&[listed("a", None)]);
        assert!(!alone.contains("OWNER"), "{alone}");
        let shared = trigger_table(&[listed("a", Some("node-1-7f3a")), listed("b", None)]);
        let lines: Vec<&str> = shared.lines().collect();
        assert!(lines[0].contains("STATE    OWNER"), "{shared}");
        assert!(lines[1].contains("Running  node-1-7f3a"), "{shared}");
        assert!(lines[2].contains("Running  (none)"), "{shared}");
    }

    #[test]
    fn table_aligns_columns_and_leaves_the_last_unpadded() {
        let text = table(
            &["A", "BB"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(text, "A    BB\nxyz  1\nq    22\n");
    }
}
