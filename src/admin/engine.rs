//! The trigger engine behind [`EngineControl`]: its own status types and errors mapped to the API's JSON shapes
//! and HTTP errors. The engine knows nothing of the API; this is the only place the two meet.

use super::control::{
    CatchUpStatus, ChannelStatus, ControlError, DeadLetter, EnableFrom, EngineControl,
    EventSelector, InvokeLatency, LastError, PeerStatus, Position, ReloadReport, RenderingStatus,
    RepushResult, TriggerState, TriggerStatus,
};
use crate::config;
use crate::events::EventType;
use crate::trigger::channel::ChannelRendering;
use crate::trigger::checkpoint::CommandError;
use crate::trigger::status::{ChannelSnapshot, Reloaded, Repushed, TimedError, TriggerSnapshot};
use crate::trigger::{Engine, RequestError};

impl From<RequestError> for ControlError {
    fn from(error: RequestError) -> Self {
        let message = error.to_string();
        match error {
            RequestError::NoSuchTrigger(_) | RequestError::NoSuchDeadLetter { .. } => {
                ControlError::NotFound(message)
            }
            RequestError::Command(CommandError::Deleted(_)) => ControlError::Conflict(message),
            RequestError::Command(CommandError::Invalid(_)) => ControlError::Invalid(message),
            RequestError::Command(CommandError::NotYet(_)) | RequestError::ShuttingDown => {
                ControlError::Unavailable(message)
            }
            RequestError::ConfigRejected(_) => ControlError::ConfigRejected(message),
            RequestError::Command(CommandError::Store(_)) | RequestError::Store(_) => {
                ControlError::Internal(message)
            }
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
            .into_iter()
            .filter_map(trigger_status)
            .collect()
    }

    async fn trigger(&self, name: &str) -> Option<TriggerStatus> {
        Engine::trigger(self, name).and_then(trigger_status)
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
