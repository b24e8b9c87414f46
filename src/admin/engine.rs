//! The trigger engine behind [`EngineControl`]: its own status types and errors mapped to the API's JSON shapes
//! and HTTP errors. The engine knows nothing of the API; this is the only place the two meet.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::control::{
    CatchUpStatus, ChannelStatus, ControlError, DEFAULT_FILTER_TEST_BLOCKS, DaemonReload,
    DeadLetter, DeletedTrigger, EnableFrom, EngineControl, EventSelector, FilterTest,
    FilterTestAnswer, InvokeLatency, LastError, MAX_FILTER_TEST_BLOCKS, PeerStatus, Position,
    ReloadReport, RenderingStatus, RepushResult, TimeResolution, TriggerState, TriggerStatus,
};
use crate::config;
use crate::events::EventType;
use crate::fabric::decode::BlockDecoder;
use crate::fabric::deliver::{ChannelConfig, DeliverError, StatusCode, fetch_block, fetch_blocks};
use crate::filter::{Filter, Limits};
use crate::trigger::channel::ChannelRendering;
use crate::trigger::checkpoint::CommandError;
use crate::trigger::engine::RemoteKind;
use crate::trigger::replay::{self, Found};
use crate::trigger::status::{ChannelSnapshot, Reloaded, Repushed, TimedError, TriggerSnapshot};
use crate::trigger::tester::{self, TestSpec};
use crate::trigger::window::Readers;
use crate::trigger::{Engine, RequestError};

impl From<RequestError> for ControlError {
    fn from(error: RequestError) -> Self {
        let message = error.to_string();
        match error {
            RequestError::NoSuchTrigger(_) | RequestError::NoSuchDeadLetter { .. } => {
                ControlError::NotFound(message)
            }
            RequestError::Command(CommandError::Deleted(_)) | RequestError::NotOwner { .. } => {
                ControlError::Conflict(message)
            }
            RequestError::Command(CommandError::Invalid(_)) => ControlError::Invalid(message),
            RequestError::Command(CommandError::NotYet(_)) | RequestError::ShuttingDown => {
                ControlError::Unavailable(message)
            }
            RequestError::ConfigRejected(_) => ControlError::ConfigRejected(message),
            RequestError::Command(CommandError::Store(_)) | RequestError::Store(_) => {
                ControlError::Internal(message)
            }
            RequestError::Remote { kind, .. } => match kind {
                RemoteKind::NotFound => ControlError::NotFound(message),
                RemoteKind::Conflict => ControlError::Conflict(message),
                RemoteKind::Invalid => ControlError::Invalid(message),
                RemoteKind::Unavailable => ControlError::Unavailable(message),
                RemoteKind::Internal => ControlError::Internal(message),
            },
        }
    }
}

impl From<config::EventSelector> for EventSelector {
    fn from(selector: config::EventSelector) -> Self {
        match selector {
            config::EventSelector::All => EventSelector::All,
            config::EventSelector::Only(EventType::Block) => EventSelector::Block,
            config::EventSelector::Only(EventType::Tx) => EventSelector::Tx,
            config::EventSelector::Only(EventType::Contract) => EventSelector::Contract,
            config::EventSelector::Only(EventType::Config) => EventSelector::Config,
        }
    }
}

impl From<TimedError> for LastError {
    fn from(error: TimedError) -> Self {
        LastError {
            message: error.message,
            at: error.at,
        }
    }
}

/// The API's view of a trigger; `None` for a deleted one, which the API no longer shows.
fn trigger_status(snapshot: TriggerSnapshot) -> Option<TriggerStatus> {
    let progress = snapshot.progress;
    let state = TriggerState::from_state(progress.status.state)?;
    let position = Position::from(progress.position);
    Some(TriggerStatus {
        name: snapshot.name.to_string(),
        channel: snapshot.channel.to_string(),
        event_type: snapshot.selector.into(),
        target: snapshot.target,
        state,
        block_height: position.block_height(),
        position,
        chain_height: snapshot.chain_height,
        lag: position.lag(snapshot.chain_height),
        failure_count: progress.status.failures,
        failure_threshold: snapshot.threshold.as_i64(),
        last_error: progress.status.last_error.map(|message| LastError {
            message,
            at: progress.last_error_at.unwrap_or_else(chrono::Utc::now),
        }),
        delivered: progress.delivered,
        discarded: progress.discarded,
        retries: progress.retries,
        enabled_at: progress.enabled_at,
        owner: snapshot.owner,
    })
}

fn changed_status(name: &str, snapshot: TriggerSnapshot) -> Result<TriggerStatus, ControlError> {
    trigger_status(snapshot)
        .ok_or_else(|| ControlError::Conflict(format!("trigger `{name}` was deleted")))
}

fn rendering_status(rendering: ChannelRendering) -> RenderingStatus {
    let (source, from_block) = match rendering {
        ChannelRendering::Pinned(_) => ("pinned", None),
        ChannelRendering::Learned { from_block, .. } => ("config_block", Some(from_block)),
        ChannelRendering::Unknown => ("unknown", None),
    };
    RenderingStatus {
        rendering: rendering.current().as_str().to_owned(),
        source: source.to_owned(),
        from_block,
    }
}

fn channel_status(snapshot: ChannelSnapshot) -> ChannelStatus {
    ChannelStatus {
        name: snapshot.name.to_string(),
        chain_height: snapshot.chain_height,
        peer: snapshot.peer,
        reconnects: snapshot.reconnects,
        last_error: snapshot.last_error.map(LastError::from),
        connected: snapshot.connected,
        connected_once: snapshot.connected_once,
        peers: snapshot
            .peers
            .into_iter()
            .map(|peer| PeerStatus {
                address: peer.address,
                height: peer.height,
                current: peer.current,
                stale: peer.stale,
                checked_at: peer.checked_at,
                last_error: peer.last_error.map(LastError::from),
            })
            .collect(),
        catch_up: CatchUpStatus {
            open: snapshot.catch_up.open,
            waiting: snapshot.catch_up.waiting,
            limit: snapshot.catch_up.limit,
        },
        rendering: rendering_status(snapshot.rendering),
        stages: snapshot.stages,
        owned: snapshot.owned,
    }
}

fn names(names: Vec<config::TriggerName>) -> Vec<String> {
    names.into_iter().map(|name| name.to_string()).collect()
}

impl From<Reloaded> for ReloadReport {
    fn from(reloaded: Reloaded) -> Self {
        ReloadReport {
            added: names(reloaded.added),
            removed: names(reloaded.removed),
            changed: names(reloaded.changed),
            still_deleted: names(reloaded.still_deleted),
            daemons: reloaded.daemons.map(|daemons| {
                daemons
                    .into_iter()
                    .map(|other| match other.outcome {
                        Ok(report) => DaemonReload {
                            daemon: other.daemon,
                            reloaded: true,
                            report: Some(Box::new(report.into())),
                            error: None,
                        },
                        Err(error) => DaemonReload {
                            daemon: other.daemon,
                            reloaded: false,
                            report: None,
                            error: Some(error),
                        },
                    })
                    .collect()
            }),
        }
    }
}

impl From<Repushed> for RepushResult {
    fn from(repushed: Repushed) -> Self {
        RepushResult {
            id: repushed.id,
            delivered: repushed.error.is_none(),
            error: repushed.error,
        }
    }
}

impl EngineControl for Engine {
    async fn triggers(&self) -> Vec<TriggerStatus> {
        Engine::triggers(self)
            .await
            .into_iter()
            .filter_map(trigger_status)
            .collect()
    }

    async fn trigger(&self, name: &str) -> Option<TriggerStatus> {
        Engine::trigger(self, name).await.and_then(trigger_status)
    }

    async fn enable(&self, name: &str, from: EnableFrom) -> Result<TriggerStatus, ControlError> {
        changed_status(name, Engine::enable(self, name, from.into()).await?)
    }

    async fn disable(&self, name: &str) -> Result<TriggerStatus, ControlError> {
        changed_status(name, Engine::disable(self, name).await?)
    }

    async fn delete(&self, name: &str) -> Result<(), ControlError> {
        Ok(Engine::delete(self, name).await?)
    }

    async fn dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, ControlError> {
        Engine::dead_letters(self, name, after, limit)
            .await?
            .into_iter()
            .map(DeadLetter::try_from)
            .collect()
    }

    async fn repush_dead_letter(&self, name: &str, id: u64) -> Result<RepushResult, ControlError> {
        Ok(Engine::repush_dead_letter(self, name, id).await?.into())
    }

    async fn repush_all_dead_letters(&self, name: &str) -> Result<Vec<RepushResult>, ControlError> {
        Ok(Engine::repush_all_dead_letters(self, name)
            .await?
            .into_iter()
            .map(RepushResult::from)
            .collect())
    }

    async fn reload(&self) -> Result<ReloadReport, ControlError> {
        Ok(Engine::reload(self).await?.into())
    }

    async fn channels(&self) -> Vec<ChannelStatus> {
        Engine::channels(self)
            .into_iter()
            .map(channel_status)
            .collect()
    }

    async fn deleted_triggers(&self) -> Result<Vec<DeletedTrigger>, ControlError> {
        Ok(Engine::deleted_triggers(self)
            .await?
            .into_iter()
            .map(|(record, in_configuration)| DeletedTrigger {
                name: record.name.to_string(),
                position: Position::from(record.position),
                delivered: record.delivered,
                discarded: record.discarded,
                deleted_at: DateTime::<Utc>::from(record.updated_at),
                in_configuration,
            })
            .collect())
    }

    async fn test_filter(&self, request: FilterTest) -> Result<FilterTestAnswer, ControlError> {
        let invalid = |message: String| ControlError::Invalid(message);
        let feed = Engine::channel_feed(self, &request.channel).ok_or_else(|| {
            let configured: Vec<String> = Engine::channels(self)
                .into_iter()
                .map(|channel| channel.name.to_string())
                .collect();
            ControlError::NotFound(format!(
                "no channel named {:?} (configured: {})",
                request.channel,
                configured.join(", ")
            ))
        })?;
        let selector = config::EventSelector::try_from(request.event.clone())
            .map_err(|e| invalid(format!("`event`: {e}")))?;
        let newest = || {
            feed.height()
                .and_then(|height| height.checked_sub(1))
                .ok_or_else(|| {
                    ControlError::Unavailable(format!(
                        "the height of channel `{}` is not known yet: give `from` and `to`, or try again shortly",
                        request.channel
                    ))
                })
        };
        let to = match request.to {
            Some(to) => to,
            None => newest()?,
        };
        let from = request
            .from
            .unwrap_or_else(|| to.saturating_sub(DEFAULT_FILTER_TEST_BLOCKS - 1));
        if to < from {
            return Err(invalid(format!("`to` ({to}) is below `from` ({from})")));
        }
        if to - from >= MAX_FILTER_TEST_BLOCKS {
            return Err(invalid(format!(
                "blocks {from}..{to} are {} blocks; a test reads at most {MAX_FILTER_TEST_BLOCKS}",
                (to - from).saturating_add(1)
            )));
        }
        // Checked as the configuration checks a trigger's filter: the message names the line and column.
        let filter = request
            .filter
            .as_deref()
            .filter(|source| !source.trim().is_empty())
            .map(|source| Filter::compile(request.language, source))
            .transpose()
            .map_err(|e| invalid(format!("`filter`: {e}")))?;
        if let Some(height) = feed.height()
            && to >= height
        {
            return Err(invalid(beyond_head(&request.channel, to, height)));
        }
        let fetched = fetch_blocks(feed.deliver(), from, to, READ_TIMEOUT)
            .await
            .map_err(|error| read_error(&request.channel, error))?;
        let mut decoder = BlockDecoder::new();
        let mut blocks = Vec::with_capacity(fetched.len());
        for delivered in fetched {
            let number = delivered.number;
            blocks.push(
                feed.prepare(&mut decoder, delivered, Readers::Many)
                    .map_err(|e| {
                        ControlError::Unavailable(format!(
                            "block {number} of channel `{}` {e}",
                            request.channel
                        ))
                    })?,
            );
        }
        let spec = TestSpec {
            selector,
            include_invalid: request.include_invalid,
            filter,
            limits: Limits::default(),
        };
        let report = tester::test(&blocks, &spec).await;
        Ok(FilterTestAnswer {
            events: report.events,
            held: report.held,
        })
    }

    async fn resolve_time(
        &self,
        name: &str,
        time: DateTime<Utc>,
    ) -> Result<TimeResolution, ControlError> {
        let trigger = Engine::trigger(self, name)
            .await
            .ok_or_else(|| ControlError::NotFound(format!("no trigger named {name:?}")))?;
        let channel = trigger.channel.to_string();
        let feed = Engine::channel_feed(self, &channel).ok_or_else(|| {
            ControlError::Internal(format!(
                "the channel `{channel}` of trigger `{name}` has no feed"
            ))
        })?;
        let height = feed.height().ok_or_else(|| {
            ControlError::Unavailable(format!(
                "the height of channel `{channel}` is not known yet (no peer has answered): try again shortly"
            ))
        })?;
        let deliver = feed.deliver();
        let found = replay::first_block_at_or_after(time.timestamp(), height, |number| {
            read_create_time(deliver, number)
        })
        .await
        .map_err(|error| match error {
            TimeReadError::Read(error) => read_error(&channel, error),
            TimeReadError::Decode(message) => ControlError::Unavailable(message),
        })?;
        let at = |seconds: i64| DateTime::from_timestamp(seconds, 0).unwrap_or_default();
        match found {
            Found::Block {
                block,
                time: block_time,
            } => Ok(TimeResolution {
                time,
                block,
                block_time: at(block_time),
            }),
            Found::NotYet {
                newest,
                time: newest_time,
            } => Err(ControlError::Invalid(format!(
                "no block of channel `{channel}` was created at or after {} yet: the newest, block {newest}, was \
                 created at {}; enable from `latest` to push only what comes next",
                time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                at(newest_time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))),
            Found::Empty => Err(ControlError::Invalid(format!(
                "channel `{channel}` has no block yet"
            ))),
        }
    }

    async fn invoke_latencies(&self) -> Vec<InvokeLatency> {
        Engine::invoke_latencies(self)
            .into_iter()
            .map(|(trigger, histogram)| InvokeLatency {
                trigger: trigger.to_string(),
                histogram,
            })
            .collect()
    }
}

/// How long one bounded read of a filter test or a time search may take on one peer.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a block's time could not be read.
enum TimeReadError {
    Read(DeliverError),
    Decode(String),
}

/// Block `number`'s create time, read from the channel's peers.
async fn read_create_time(deliver: &ChannelConfig, number: u64) -> Result<i64, TimeReadError> {
    let block = fetch_block(deliver, number, READ_TIMEOUT)
        .await
        .map_err(TimeReadError::Read)?;
    replay::create_time(block.bytes)
        .map_err(|e| TimeReadError::Decode(format!("block {number} cannot be decoded: {e}")))
}

fn beyond_head(channel: &str, block: u64, height: u64) -> String {
    format!(
        "block {block} is beyond the head of channel `{channel}`: its newest block is {}",
        height.saturating_sub(1)
    )
}

/// A failed bounded read: blocks the peers do not have are the request's fault, anything else the network's.
fn read_error(channel: &str, error: DeliverError) -> ControlError {
    match error {
        DeliverError::Refused {
            status: StatusCode::NOT_FOUND,
            ..
        } => ControlError::Invalid(format!(
            "the peers of channel `{channel}` do not have those blocks (beyond the head?): {error}"
        )),
        error => ControlError::Unavailable(format!("cannot read channel `{channel}`: {error}")),
    }
}
