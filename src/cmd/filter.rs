//! `chaintrigger filter test`: what a trigger would push for some blocks, event by event, with the daemon's own
//! engine (see [`crate::trigger::tester`]): nothing is pushed, nothing is stored.
//!
//! The trigger is given on the command line (`--event`, `--filter`, `--language`, `--include-invalid`,
//! `--filter-timeout`) or taken from a configuration file (`--config FILE --trigger NAME`: its event type,
//! filter, language, `include_invalid` and `filter_timeout`). The blocks are raw `common.Block` files (as `peer
//! channel fetch` writes them, and `decode` reads them) or a range read from the channel's peers with the
//! configuration's identity (`--channel-blocks FROM..TO`, one bounded Deliver read).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::{self, Config, EventSelector};
use crate::events::Rendering;
use crate::fabric::decode::BlockDecoder;
use crate::fabric::deliver::{DEFAULT_FETCH_TIMEOUT, MAX_FETCH_BLOCKS, fetch_block, fetch_blocks};
use crate::filter::{Filter, Language, Limits};
use crate::trigger::channel::feed_config;
use crate::trigger::tester::{self, Reason, TestReport, TestSpec, TestedEvent};
use crate::trigger::window::BlockEvents;

/// Arguments of `chaintrigger filter`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Show, event by event, what a trigger would push for some blocks (or why nothing), with the daemon's own
    /// filter engine and limits. Exits with status 1 when the filter fails at run time on an event.
    Test(TestArgs),
}

/// Arguments of `chaintrigger filter test`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("blocks").required(true).args(["files", "channel_blocks"]))]
pub struct TestArgs {
    /// The event type the trigger listens to: Block, Tx, Contract, Config or `*` (every type).
    #[arg(
        long,
        value_name = "TYPE",
        required_unless_present = "trigger",
        conflicts_with = "trigger"
    )]
    event: Option<String>,
    /// The filter (none: every event of the type is pushed whole).
    #[arg(long, value_name = "FILTER", conflicts_with = "trigger")]
    filter: Option<String>,
    /// The filter's language.
    #[arg(long, value_enum, default_value_t = LanguageArg::Jq, conflicts_with = "trigger")]
    language: LanguageArg,
    /// Also give the trigger Contract events of transactions the peer marked invalid.
    #[arg(long, conflicts_with = "trigger")]
    include_invalid: bool,
    /// How long the filter may run on one event (`1s` by default, at most `60s`), as `filter_timeout`.
    #[arg(long, value_name = "DURATION", conflicts_with = "trigger")]
    filter_timeout: Option<String>,
    /// A daemon configuration file: with --trigger, the trigger to test; with --channel-blocks, the channel's
    /// peers and identity; also the `instance_id` put in envelopes.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Test this trigger of --config: its event type, filter, language, include_invalid and filter_timeout.
    #[arg(long, value_name = "NAME", requires = "config")]
    trigger: Option<String>,
    /// The channel of --config to read --channel-blocks from (default: the trigger's, or the only channel).
    #[arg(long, value_name = "NAME", requires = "channel_blocks")]
    channel: Option<String>,
    /// Read blocks FROM to TO (inclusive) of the channel from its peers, with the configuration's identity.
    #[arg(
        long,
        value_name = "FROM..TO",
        requires = "config",
        conflicts_with = "files"
    )]
    channel_blocks: Option<String>,
    /// Render `content.data` as Fabric `v2.5`'s configtxlator or `v3`'s. Default: the channel's `rendering`, else
    /// that of the newest config block among the files (or of the channel's last config block), else v2.5.
    #[arg(long, value_name = "v2.5|v3")]
    rendering: Option<Rendering>,
    /// Print `{"events": [...], "held": ...}` as the admin API's POST /v1/filters/test answers, instead of text.
    #[arg(long)]
    json: bool,
    /// Files holding one serialized `common.Block` each, in chain order.
    #[arg(value_name = "BLOCK_FILE")]
    files: Vec<PathBuf>,
}

/// `--language`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LanguageArg {
    Jq,
    Jmespath,
}

impl From<LanguageArg> for Language {
    fn from(language: LanguageArg) -> Self {
        match language {
            LanguageArg::Jq => Language::Jq,
            LanguageArg::Jmespath => Language::Jmespath,
        }
    }
}

/// The most blocks `--channel-blocks` reads at once.
pub const MAX_CHANNEL_BLOCKS: u64 = MAX_FETCH_BLOCKS;

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Test(args) => test(args).await,
    }
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let config = args
        .config
        .as_ref()
        .map(|path| Config::load(path))
        .transpose()?;
    let (spec, trigger_channel) = match (&args.trigger, &config) {
        (Some(name), Some(config)) => {
            let trigger = config
                .triggers
                .iter()
                .find(|t| t.name.get_ref().as_str() == name)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: no trigger named {name:?} (it has: {})",
                        config.file().display(),
                        names(config.triggers.iter().map(|t| t.name.get_ref().to_string()))
                    )
                })?;
            let spec = TestSpec {
                selector: trigger.event,
                include_invalid: *trigger.include_invalid.get_ref(),
                filter: trigger.compile_filter()?,
                limits: trigger.filter_limits(),
            };
            (spec, Some(trigger.channel.get_ref().to_string()))
        }
        _ => (spec_from_flags(&args)?, None),
    };
    let instance_id = config
        .as_ref()
        .map_or_else(|| "chaintrigger".to_owned(), |c| c.instance_id.to_string());
    let channel_name = args.channel.clone().or(trigger_channel);
    let blocks = match &args.channel_blocks {
        Some(range) => {
            let config = config.as_ref().context("--channel-blocks needs --config")?;
            let channel = pick_channel(config, channel_name.as_deref())?;
            channel_blocks(channel, range, &instance_id, args.rendering).await?
        }
        None => {
            let rendering = match args.rendering {
                Some(rendering) => rendering,
                None => match config
                    .as_ref()
                    .and_then(|c| pinned_rendering(c, channel_name.as_deref()))
                {
                    Some(rendering) => rendering,
                    None => super::decode::rendering_of_inputs(&args.files).await,
                },
            };
            file_blocks(&args.files, &instance_id, rendering).await?
        }
    };
    let report = tester::test(&blocks, &spec).await;
    if args.json {
        let answer = serde_json::json!({"events": report.events, "held": report.held});
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", report_text(&report));
    }
    if report.held
        && let Some(event) = report.events.last()
    {
        bail!(
            "the filter failed at run time on block {} event {} ({}): a trigger would hold that event in Exception \
             and push nothing after it",
            event.block,
            event.index,
            event.id
        );
    }
    Ok(())
}

/// The trigger given by `--event`, `--filter`, `--language`, `--include-invalid`, `--filter-timeout`, checked as
/// the configuration checks a trigger.
fn spec_from_flags(args: &TestArgs) -> anyhow::Result<TestSpec> {
    let event = args.event.clone().context(
        "name the event type with --event (or a trigger with --config FILE --trigger NAME)",
    )?;
    let selector = EventSelector::try_from(event).map_err(|e| anyhow::anyhow!("--event: {e}"))?;
    let filter = args
        .filter
        .as_deref()
        .map(|source| Filter::compile(args.language.into(), source))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--filter: {e}"))?;
    let limits = match &args.filter_timeout {
        None => Limits::default(),
        Some(text) => {
            let timeout = config::HumanDuration::try_from(text.clone())
                .map_err(|e| anyhow::anyhow!("--filter-timeout: {e}"))?
                .0;
            if timeout.is_zero() || timeout > crate::filter::MAX_TIMEOUT {
                bail!(
                    "--filter-timeout: expected a duration above 0 and at most {}, found {text:?}",
                    crate::filter::duration_text(crate::filter::MAX_TIMEOUT)
                );
            }
            Limits::with_timeout(timeout)
        }
    };
    Ok(TestSpec {
        selector,
        include_invalid: args.include_invalid,
        filter,
        limits,
    })
}

fn names(names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The channel of `config` named `name`, or its only channel.
fn pick_channel<'a>(config: &'a Config, name: Option<&str>) -> anyhow::Result<&'a config::Channel> {
    let all = || names(config.channels.iter().map(|c| c.name.get_ref().to_string()));
    match name {
        Some(name) => config
            .channels
            .iter()
            .find(|c| c.name.get_ref().as_str() == name)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no channel named {name:?} (it has: {})",
                    config.file().display(),
                    all()
                )
            }),
        None => match config.channels.as_slice() {
            [only] => Ok(only),
            _ => bail!(
                "{}: name the channel to read with --channel (it has: {})",
                config.file().display(),
                all()
            ),
        },
    }
}

/// The rendering pinned by the channel's configuration, if any.
fn pinned_rendering(config: &Config, channel: Option<&str>) -> Option<Rendering> {
    pick_channel(config, channel).ok().and_then(|c| c.rendering)
}

/// Parses `FROM..TO` (inclusive), at most [`MAX_CHANNEL_BLOCKS`] blocks.
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let expected = || format!("expected FROM..TO with block numbers, e.g. 5..9, found {text:?}");
    let (from, to) = text.split_once("..").ok_or_else(expected)?;
    let from: u64 = from.trim().parse().map_err(|_| expected())?;
    let to: u64 = to.trim().parse().map_err(|_| expected())?;
    if to < from {
        return Err(format!("{text:?}: TO is below FROM"));
    }
    if to - from >= MAX_CHANNEL_BLOCKS {
        return Err(format!(
            "{text:?} is {} blocks; at most {MAX_CHANNEL_BLOCKS} are read at once",
            (to - from).saturating_add(1)
        ));
    }
    Ok((from, to))
}

/// Reads blocks `range` of `channel` from its peers (one bounded read) and prepares them.
async fn channel_blocks(
    channel: &config::Channel,
    range: &str,
    instance_id: &str,
    rendering: Option<Rendering>,
) -> anyhow::Result<Vec<Arc<BlockEvents>>> {
    let (from, to) = parse_range(range).map_err(|e| anyhow::anyhow!("--channel-blocks: {e}"))?;
    let deliver = feed_config(channel)?.deliver;
    let fetched = fetch_blocks(&deliver, from, to, DEFAULT_FETCH_TIMEOUT)
        .await
        .with_context(|| {
            format!(
                "cannot read blocks {from}..{to} of channel {}",
                deliver.channel_id
            )
        })?;
    let mut decoder = BlockDecoder::new();
    let rendering = match rendering.or(channel.rendering) {
        Some(rendering) => rendering,
        None => learn_rendering(&deliver, &fetched[0], &mut decoder).await,
    };
    fetched
        .into_iter()
        .map(|block| {
            tester::prepare(&mut decoder, block.bytes, instance_id, rendering).with_context(|| {
                format!("block {} of channel {}", block.number, deliver.channel_id)
            })
        })
        .collect()
}

/// The rendering of the channel's last config block as the first block read names it (v2.5 with a note when it
/// cannot be read), as the daemon learns it.
async fn learn_rendering(
    deliver: &crate::fabric::deliver::ChannelConfig,
    first: &crate::fabric::deliver::DeliveredBlock,
    decoder: &mut BlockDecoder,
) -> Rendering {
    let config_block = match decoder.decode_bytes(first.bytes.clone()) {
        Ok(block) => match block.last_config {
            Some(number) if number == block.number => Some(block),
            Some(number) => match fetch_block(deliver, number, DEFAULT_FETCH_TIMEOUT).await {
                Ok(config) => decoder.decode_bytes(config.bytes).ok(),
                Err(_) => None,
            },
            None => None,
        },
        Err(_) => None,
    };
    match config_block.as_ref().and_then(|block| block.config()) {
        Some(config) => Rendering::of_config(config),
        None => {
            eprintln!(
                "note: the channel's last config block cannot be read: rendering as Fabric v2.5's configtxlator; pass \
                 --rendering v3 for a channel with the V3_0 capability"
            );
            Rendering::default()
        }
    }
}

/// Reads and prepares block files, naming the file that fails.
async fn file_blocks(
    files: &[PathBuf],
    instance_id: &str,
    rendering: Rendering,
) -> anyhow::Result<Vec<Arc<BlockEvents>>> {
    let mut decoder = BlockDecoder::new();
    let mut blocks = Vec::with_capacity(files.len());
    for file in files {
        let raw = tokio::fs::read(file)
            .await
            .with_context(|| format!("cannot read block file {}", file.display()))?;
        let block = tester::prepare(&mut decoder, raw.into(), instance_id, rendering)
            .with_context(|| format!("block file {}", file.display()))?;
        blocks.push(block);
    }
    Ok(blocks)
}

/// The report for people: one paragraph per event the trigger receives, one line per event it does not, then a
/// count.
pub fn report_text(report: &TestReport) -> String {
    let mut out = String::new();
    let mut payloads = 0usize;
    let mut counts = [0usize; 5];
    for event in &report.events {
        counts[event.reason as usize] += 1;
        payloads += event.outputs.len();
        event_text(&mut out, event);
    }
    let [pushed, filtered, other, invalid, failed] = counts;
    let _ = writeln!(
        out,
        "{} events: {pushed} pushed ({payloads} payloads), {filtered} filtered out, {other} not of the type, \
         {invalid} invalid left out, {failed} filter error{}",
        report.events.len(),
        if failed == 1 { "" } else { "s" }
    );
    if report.held {
        let _ = writeln!(
            out,
            "stopped at the filter error: a trigger holds that event in Exception and pushes nothing after it"
        );
    }
    out
}

fn event_text(out: &mut String, event: &TestedEvent) {
    let head = format!(
        "block {} event {}  {}  {}",
        event.block, event.index, event.event_type, event.id
    );
    match event.reason {
        Reason::Pushed => {
            let count = event.outputs.len();
            let _ = writeln!(
                out,
                "{head}\n  pushed: {count} payload{}",
                if count == 1 { "" } else { "s" }
            );
            for (n, output) in event.outputs.iter().enumerate() {
                let pretty =
                    serde_json::to_string_pretty(output).unwrap_or_else(|_| output.to_string());
                let _ = writeln!(out, "  payload {}:", n + 1);
                for line in pretty.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
        Reason::FilterError => {
            let _ = writeln!(
                out,
                "{head}\n  nothing pushed: {}",
                event.error.as_deref().unwrap_or("the filter failed")
            );
        }
        Reason::FilteredOut => {
            let _ = writeln!(
                out,
                "{head}\n  nothing pushed: {}",
                Reason::FilteredOut.why_nothing().unwrap_or("")
            );
        }
        Reason::NotOfType | Reason::InvalidLeftOut => {
            let _ = writeln!(out, "{head}: {}", event.reason.why_nothing().unwrap_or(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_bounded_and_explained() {
        assert_eq!(parse_range("3..7"), Ok((3, 7)));
        assert_eq!(parse_range(" 4 .. 4 "), Ok((4, 4)));
        assert!(parse_range("7..3").unwrap_err().contains("below"));
        assert!(
            parse_range("3-7")
                .unwrap_err()
                .contains("expected FROM..TO")
        );
        assert!(parse_range("0..1000").unwrap_err().contains("1001 blocks"));
        assert_eq!(parse_range("0..999"), Ok((0, 999)));
    }
}
