//! The boundary between the admin API and the engine: what the API may ask, and the shapes it answers with.
//!
//! The engine implements [`EngineControl`]; the HTTP layer ([`super::router`]) only translates requests into
//! these calls and results into JSON, so every rule about triggers (what "enable from latest" means, when a
//! trigger counts as deleted) lives in the engine and nowhere else. The status types are the stable JSON the
//! API returns: fields are only ever added, never renamed.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::metrics::HistogramSnapshot;
use crate::store;
use crate::trigger::state;

/// What the engine does for the admin API. Every method is cheap to call concurrently: the API serves
/// several operators and a Prometheus scraper at once, and must never hold back event delivery.
///
/// Trigger names are passed as the operator typed them; an unknown name is [`ControlError::NotFound`].
/// A trigger deleted over the API is gone for good: it is not listed, [`EngineControl::trigger`] returns
/// `None`, and every command on it is [`ControlError::Conflict`] explaining that it was deleted (or
/// `NotFound` once its TOML entry is removed too).
pub trait EngineControl: Send + Sync + 'static {
    /// Every trigger that is not deleted, ordered by name so listings are stable.
    fn triggers(&self) -> impl Future<Output = Vec<TriggerStatus>> + Send;

    /// One trigger's status, or `None` when there is no such (undeleted) trigger.
    fn trigger(&self, name: &str) -> impl Future<Output = Option<TriggerStatus>> + Send;

    /// Starts (or restarts) pushing the trigger's events from `from`; resets the failure count to zero.
    /// Returns the status after the change. Enabling a running trigger moves it to `from` as well.
    fn enable(
        &self,
        name: &str,
        from: EnableFrom,
    ) -> impl Future<Output = Result<TriggerStatus, ControlError>> + Send;

    /// Stops pushing; events that occur while disabled are discarded (BaaS semantics). Idempotent.
    fn disable(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<TriggerStatus, ControlError>> + Send;

    /// Removes the trigger permanently: it stays deleted across restarts even while its TOML entry remains.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), ControlError>> + Send;

    /// The trigger's dead letters with an id greater than `after` (all when `None`), oldest first, at most
    /// `limit` of them (the API keeps `limit` between 1 and [`super::MAX_DEAD_LETTER_PAGE`]).
    fn dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, ControlError>> + Send;

    /// Pushes one dead letter again to the trigger's current target (with the trigger's retry policy) and
    /// reports how that went. A dead letter that does not belong to the trigger is `NotFound`.
    fn repush_dead_letter(
        &self,
        name: &str,
        id: u64,
    ) -> impl Future<Output = Result<RepushResult, ControlError>> + Send;

    /// Pushes every not yet re-pushed dead letter of the trigger again, oldest first, and reports each.
    fn repush_all_dead_letters(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<RepushResult>, ControlError>> + Send;

    /// Re-reads the configuration file and applies the differences without a restart. A file that does not
    /// load is [`ControlError::ConfigRejected`] and changes nothing.
    fn reload(&self) -> impl Future<Output = Result<ReloadReport, ControlError>> + Send;

    /// Every configured channel, ordered by name.
    fn channels(&self) -> impl Future<Output = Vec<ChannelStatus>> + Send;

    /// The invoke latency histogram of every trigger listed by [`EngineControl::triggers`]; the engine
    /// records into one [`super::metrics::LatencyHistogram`] per trigger and snapshots it here.
    fn invoke_latencies(&self) -> impl Future<Output = Vec<InvokeLatency>> + Send;

    /// Every trigger deleted over the API that the store keeps, ordered by name (`GET /v1/triggers?deleted=true`).
    /// An engine without a store answers none.
    fn deleted_triggers(
        &self,
    ) -> impl Future<Output = Result<Vec<DeletedTrigger>, ControlError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Tries a filter on blocks of a channel, read from its peers: what a trigger with it would push, event by
    /// event (see [`crate::trigger::tester`]). An unknown channel is `NotFound`; a filter that does not compile,
    /// a bad or too large range, or blocks beyond the chain's head are `Invalid`; peers that cannot be read are
    /// `Unavailable`. An engine that cannot read channels answers `Unavailable`.
    fn test_filter(
        &self,
        request: FilterTest,
    ) -> impl Future<Output = Result<FilterTestAnswer, ControlError>> + Send {
        let _ = request;
        async {
            Err(ControlError::Unavailable(
                "this daemon cannot read its channels to test filters".to_owned(),
            ))
        }
    }

    /// The first block of the trigger's channel created at or after `time`, for `enable --from time:...` (see
    /// [`crate::trigger::replay`]). A time after the newest block's is `Invalid`.
    fn resolve_time(
        &self,
        name: &str,
        time: DateTime<Utc>,
    ) -> impl Future<Output = Result<TimeResolution, ControlError>> + Send {
        let _ = (name, time);
        async {
            Err(ControlError::Unavailable(
                "this daemon cannot read its channels to find a block by time".to_owned(),
            ))
        }
    }
}

/// A trigger deleted over the API, as the store keeps it: what an operator needs to bring it back under a new name
/// (its position) and to know whether its entry still holds its name (`in_configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTrigger {
    /// Its name: deleted for good while an entry of this name is in the configuration.
    pub name: String,
    /// Where it was when deleted: a trigger under a new name can start there (`start = <block>`).
    pub position: Position,
    /// Payloads it had delivered.
    pub delivered: u64,
    /// Payloads it had discarded.
    pub discarded: u64,
    /// When it was deleted (its record's last change).
    #[serde(with = "rfc3339")]
    pub deleted_at: DateTime<Utc>,
    /// Whether the configuration still has an entry of this name (which the daemon keeps deleted).
    pub in_configuration: bool,
}

/// The most blocks one filter test reads (`to - from + 1`): each is read from a peer and every event filtered.
pub const MAX_FILTER_TEST_BLOCKS: u64 = 100;

/// `POST /v1/filters/test`: a filter to try on blocks `from..=to` of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterTest {
    /// The channel whose blocks are read (from its configured peers, with its identity).
    pub channel: String,
    /// The event type the trigger would listen to: `Block`, `Tx`, `Contract`, `Config` or `*`.
    pub event: String,
    /// The filter; none (`null`, or only blanks) pushes every event whole.
    #[serde(default)]
    pub filter: Option<String>,
    /// The filter's language (`jq` by default, as in the configuration).
    #[serde(default)]
    pub language: crate::filter::Language,
    /// Whether the trigger would receive Contract events of invalid transactions.
    #[serde(default)]
    pub include_invalid: bool,
    /// The first block read; by default the last [`DEFAULT_FILTER_TEST_BLOCKS`] blocks up to `to`.
    #[serde(default)]
    pub from: Option<u64>,
    /// The last block read (inclusive), at most [`MAX_FILTER_TEST_BLOCKS`] after `from`; by default the channel's
    /// newest block.
    #[serde(default)]
    pub to: Option<u64>,
}

/// How many blocks a filter test reads when `from` is not given.
pub const DEFAULT_FILTER_TEST_BLOCKS: u64 = 10;

/// The answer to a filter test: every event of the blocks, in chain order, with what would be pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterTestAnswer {
    /// Each event: `block`, `index`, `type`, `id`, `outputs` (the payloads), `error` (the filter's run-time
    /// error, or `null`) and `reason` (`pushed`, `filtered_out`, `not_of_type`, `invalid_left_out`,
    /// `filter_error`).
    pub events: Vec<crate::trigger::tester::TestedEvent>,
    /// True when the last event's filter error ended the test (a trigger would hold there in Exception).
    pub held: bool,
}

/// Where `enable --from time:...` resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeResolution {
    /// The time asked for.
    #[serde(with = "rfc3339")]
    pub time: DateTime<Utc>,
    /// The first block created at or after it.
    pub block: u64,
    /// That block's create time (whole seconds, as the Block event's `create_time`).
    #[serde(with = "rfc3339")]
    pub block_time: DateTime<Utc>,
}

/// Where `enable` starts: one of [`EnableFrom`], or the first block at or after a time (`time:<RFC 3339>`), which
/// the API resolves to a block before enabling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableAt {
    /// A position the engine understands directly.
    From(EnableFrom),
    /// The first block created at or after this time.
    Time(DateTime<Utc>),
}

impl Default for EnableAt {
    fn default() -> Self {
        EnableAt::From(EnableFrom::default())
    }
}

impl FromStr for EnableAt {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some(time) = text.strip_prefix("time:") {
            return DateTime::parse_from_rfc3339(time)
                .map(|time| EnableAt::Time(time.with_timezone(&Utc)))
                .map_err(|error| {
                    format!(
                        "expected an RFC 3339 time after `time:`, e.g. time:2026-11-29T10:00:00Z, found {time:?}: {error}"
                    )
                });
        }
        text.parse::<EnableFrom>().map(EnableAt::From).map_err(|_| {
            format!(
                "expected `latest`, `position` or a block number for `from` (or time:<RFC 3339 time>, e.g. \
                 time:2026-11-29T10:00:00Z), found {text:?}"
            )
        })
    }
}

impl fmt::Display for EnableAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnableAt::From(from) => from.fmt(f),
            EnableAt::Time(time) => write!(
                f,
                "time:{}",
                time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
        }
    }
}

/// Where an enabled trigger starts pushing from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnableFrom {
    /// The current latest block: events that happened while the trigger was off are not pushed (BaaS).
    #[default]
    Latest,
    /// The trigger's stored position: nothing between the last recorded outcome and now is skipped.
    StoredPosition,
    /// The first event of this block, for replaying history or skipping ahead.
    Block(u64),
}

impl FromStr for EnableFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "latest" => Ok(Self::Latest),
            "position" => Ok(Self::StoredPosition),
            other => other.parse::<u64>().map(Self::Block).map_err(|_| {
                format!(
                    "expected `latest`, `position` or a block number for `from`, found {other:?}"
                )
            }),
        }
    }
}

impl fmt::Display for EnableFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::StoredPosition => f.write_str("position"),
            Self::Block(block) => write!(f, "{block}"),
        }
    }
}

impl From<EnableFrom> for state::EnableFrom {
    fn from(from: EnableFrom) -> Self {
        match from {
            EnableFrom::Latest => Self::Latest,
            EnableFrom::StoredPosition => Self::Stored,
            EnableFrom::Block(block) => Self::Block(block),
        }
    }
}

/// Why the engine refused a command. Each maps to one HTTP status (see [`super::ApiError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No trigger (or dead letter) of that name or id: 404.
    #[error("{0}")]
    NotFound(String),
    /// The command clashes with the trigger's lifecycle, e.g. the trigger was deleted: 409.
    #[error("{0}")]
    Conflict(String),
    /// The command's arguments are wrong, e.g. a start block the channel does not have yet: 400.
    #[error("{0}")]
    Invalid(String),
    /// `reload` found a configuration that does not load; the message names file, line and field: 422.
    #[error("{0}")]
    ConfigRejected(String),
    /// The engine is shutting down and takes no more commands: 503.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the daemon (e.g. the store): 500.
    #[error("{0}")]
    Internal(String),
}

/// What a trigger listens to: one event type of its channel, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventSelector {
    /// Block events.
    Block,
    /// Transaction events.
    Tx,
    /// Chaincode (contract) events.
    Contract,
    /// Configuration transaction events.
    Config,
    /// Every event type.
    #[serde(rename = "*")]
    All,
}

impl fmt::Display for EventSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Block => "Block",
            Self::Tx => "Tx",
            Self::Contract => "Contract",
            Self::Config => "Config",
            Self::All => "*",
        })
    }
}

/// A trigger's lifecycle state as operators see it (specs/baas-events.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerState {
    /// Pushing events.
    Running,
    /// Holding its position after a configuration error, retrying slowly until the cause is fixed.
    Exception,
    /// Stopped because the failure count exceeded the threshold; only `enable` restarts it.
    Failed,
    /// Stopped by an operator; events meanwhile are discarded.
    Disabled,
}

impl TriggerState {
    /// Every state, in the order metrics list them.
    pub const ALL: [Self; 4] = [Self::Running, Self::Exception, Self::Failed, Self::Disabled];

    /// The lower-case name used as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Exception => "exception",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }
}

impl TriggerState {
    /// The state machine's state as operators see it; `None` for a deleted trigger, which the API no longer
    /// shows.
    pub fn from_state(state: state::State) -> Option<Self> {
        match state {
            state::State::Running => Some(Self::Running),
            state::State::Exception => Some(Self::Exception),
            state::State::Failed => Some(Self::Failed),
            state::State::Disabled => Some(Self::Disabled),
            state::State::Deleted => None,
        }
    }
}

impl fmt::Display for TriggerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A point in a channel's event stream: the next event a trigger will process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The block the next event is in.
    pub block: u64,
    /// The index of the next event within that block's events (in chain order), 0 for a block not started.
    pub event_index: u32,
}

impl Position {
    /// The last block whose events were all processed: the block before the one in progress (`None`
    /// before block 0 is done). This is the trigger's "block height" as BaaS shows it.
    pub fn block_height(self) -> Option<u64> {
        self.block.checked_sub(1)
    }

    /// How many blocks of the chain are not fully processed yet (the block in progress included), given the
    /// channel's height (its number of blocks). `None` while the chain height is unknown.
    pub fn lag(self, chain_height: Option<u64>) -> Option<u64> {
        chain_height.map(|height| height.saturating_sub(self.block))
    }
}

impl From<state::Position> for Position {
    fn from(position: state::Position) -> Self {
        Self {
            block: position.block,
            event_index: position.index,
        }
    }
}

/// The latest error of a trigger or channel, with when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// What went wrong, as the target or the stream said it (never containing credentials).
    pub message: String,
    /// When it happened, so an operator can tell an old error from a current one.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
}

/// One trigger as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerStatus {
    /// The trigger's name from the configuration: how every command addresses it.
    pub name: String,
    /// The channel it listens on: which chain height its progress compares with.
    pub channel: String,
    /// The event type it pushes, so a listing shows what each trigger is for.
    pub event_type: EventSelector,
    /// Where it pushes, without secrets (`fc:embedded/demo/echo`, `http:POST https://host/path`), so an
    /// operator can tell triggers apart and spot a wrong endpoint.
    pub target: String,
    /// Its lifecycle state.
    pub state: TriggerState,
    /// The last block fully processed (`position.block_height()`): the progress figure BaaS shows.
    pub block_height: Option<u64>,
    /// The exact next event, so an operator knows what `enable --from position` resumes at.
    pub position: Position,
    /// The channel's current height (number of blocks), `None` until the stream has reported one.
    pub chain_height: Option<u64>,
    /// Blocks not fully processed yet (`position.lag(chain_height)`): how far behind the trigger is.
    pub lag: Option<u64>,
    /// Events discarded since the failure count was last reset (by `enable`): compared with the threshold.
    pub failure_count: u64,
    /// The count above which the trigger enters Failed; -1 means never (BaaS).
    pub failure_threshold: i64,
    /// The latest delivery or configuration error, so Exception and Failed explain themselves.
    pub last_error: Option<LastError>,
    /// Payloads the target accepted over the trigger's life (the store keeps the count across restarts).
    pub delivered: u64,
    /// Payloads given up on after all retries (each written as a dead letter), over the trigger's life.
    pub discarded: u64,
    /// Attempts beyond the first, since the daemon started: a rising count warns before discards do.
    pub retries: u64,
    /// When the trigger was last enabled over the API, if ever: explains a jump in its position.
    #[serde(with = "rfc3339_option", default)]
    pub enabled_at: Option<DateTime<Utc>>,
    /// The daemon working on the trigger (the owner of its channel's lease; with several daemons on one database
    /// its progress is shown as that daemon stored it), `null` while no daemon holds the channel.
    #[serde(default)]
    pub owner: Option<String>,
}

impl TriggerStatus {
    /// The failure count against the threshold, written one way everywhere (CLI table, `triggers show`, the demo,
    /// the README): `3/10`, or `3 (no limit)` for a threshold of -1 (the trigger never fails).
    pub fn failures_text(&self) -> String {
        if self.failure_threshold < 0 {
            format!("{} (no limit)", self.failure_count)
        } else {
            format!("{}/{}", self.failure_count, self.failure_threshold)
        }
    }
}

/// One channel's stream as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The channel's name.
    pub name: String,
    /// Its height (number of blocks) as last seen on the stream; `None` before the first block.
    pub chain_height: Option<u64>,
    /// The peer the stream is connected to, `None` while disconnected: shows failover at work.
    pub peer: Option<String>,
    /// How many times the stream was re-established since the daemon started: a flapping peer shows here.
    pub reconnects: u64,
    /// The latest stream error, so a disconnected channel explains itself.
    pub last_error: Option<LastError>,
    /// True while the stream is established (connection up, request sent), whether or not a block came yet: a
    /// real peer sends nothing until it has a block. `peer` is set exactly when this is true.
    #[serde(default)]
    pub connected: bool,
    /// True once the channel's stream has been established, and from then on (a later disconnection does not
    /// reset it): what `/readyz` waits for.
    #[serde(default)]
    pub connected_once: bool,
    /// Every configured peer, in configuration order: its height, whether the stream is on it, whether it is
    /// stale (an operator sees a peer cut off from the orderer here).
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// The streams of triggers reading blocks older than the channel's window: open, waiting, allowed.
    #[serde(default)]
    pub catch_up: CatchUpStatus,
    /// How the channel's events are rendered (`v2.5` or `v3`, as that Fabric generation's configtxlator prints
    /// them) and why: so an operator comparing a pushed event with their own tools knows which to compare with.
    #[serde(default)]
    pub rendering: RenderingStatus,
    /// Where the channel's events spent their time, per stage (metrics only: a histogram is not a status).
    #[serde(skip)]
    pub stages: Vec<crate::trigger::latency::StageSnapshot>,
    /// Whether this daemon works on the channel's triggers (holds its lease); with several daemons on one
    /// database, exactly one of them says so.
    #[serde(default)]
    pub owned: bool,
}

/// A channel's rendering as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RenderingStatus {
    /// `v2.5` or `v3`.
    pub rendering: String,
    /// `pinned` (the channel's `rendering` setting), `config_block` (learned from the channel's config block
    /// `from_block`), or `unknown` (no config block read yet: v2.5 until one is).
    pub source: String,
    /// The config block it was learned from, for `config_block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_block: Option<u64>,
}

/// One peer of a channel as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its address, as configured.
    pub address: String,
    /// The height (number of blocks) it last reported, or that the blocks it sent prove; `null` until known.
    pub height: Option<u64>,
    /// The channel's stream is on this peer now.
    pub current: bool,
    /// More than the channel's `stale_peer_blocks` behind the highest height any peer reports: the channel moves
    /// off it.
    pub stale: bool,
    /// When it was last asked for its height (only with two or more peers).
    #[serde(with = "rfc3339_option", default)]
    pub checked_at: Option<DateTime<Utc>>,
    /// The last thing that went wrong with it (a failed height check, a failed or frozen stream).
    pub last_error: Option<LastError>,
}

/// A channel's catch-up streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpStatus {
    /// Open now.
    pub open: u64,
    /// Triggers waiting for one: a replay beyond `limit` waits its turn.
    pub waiting: u64,
    /// How many may be open at once (`max_catch_up_streams`).
    pub limit: u64,
}

/// A discarded event kept so an operator can inspect it and push it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The store's id: the handle for paging and re-pushing.
    pub id: u64,
    /// The trigger that discarded it.
    pub trigger: String,
    /// The event's `id` (e.g. `tx-5-<txid>`), what the receiving function de-duplicates on.
    pub event_id: String,
    /// The block the event came from.
    pub block: u64,
    /// The event's index within the block, with `block` its exact position.
    pub event_index: u32,
    /// Which of the filter's outputs for that event this is (0 for the first): a filter may yield several.
    pub output: u32,
    /// The payload that was pushed (the filter's output), exactly as it would be pushed again.
    pub payload: serde_json::Value,
    /// The last error of the last attempt.
    pub error: String,
    /// How many attempts were made before giving up.
    pub attempts: u32,
    /// When it was discarded.
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// Whether it has since been pushed again successfully, so a re-push of all skips it.
    pub repushed: bool,
}

impl TryFrom<store::DeadLetter> for DeadLetter {
    type Error = ControlError;

    fn try_from(stored: store::DeadLetter) -> Result<Self, Self::Error> {
        let id = u64::try_from(stored.id).map_err(|_| {
            ControlError::Internal(format!(
                "dead letter id {} of trigger {} in the database is negative",
                stored.id, stored.trigger
            ))
        })?;
        let letter = stored.letter;
        Ok(Self {
            id,
            trigger: stored.trigger.to_string(),
            event_id: letter.event_id,
            block: letter.position.block,
            event_index: letter.position.index,
            output: letter.output,
            payload: letter.payload,
            error: letter.error,
            attempts: letter.attempts,
            at: DateTime::<Utc>::from(stored.created_at),
            repushed: stored.repushed_at.is_some(),
        })
    }
}

/// How pushing one dead letter again went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepushResult {
    /// The dead letter's id.
    pub id: u64,
    /// Whether the target accepted it this time.
    pub delivered: bool,
    /// The error when it did not, so the operator sees why without reading logs.
    pub error: Option<String>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Triggers new in the file, now running from their configured start position.
    pub added: Vec<String>,
    /// Triggers gone from the file, now stopped (their stored state is kept).
    pub removed: Vec<String>,
    /// Triggers whose definition changed, restarted with the new definition at their stored position.
    pub changed: Vec<String>,
    /// Triggers still in the file that were deleted over the API, and so stay deleted.
    pub still_deleted: Vec<String>,
    /// Several daemons on one database only (absent otherwise): how each other live daemon's reload went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemons: Option<Vec<DaemonReload>>,
}

/// How another daemon's reload went (the daemon that received the reload asked it through the database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonReload {
    /// The daemon's id (`host-pid-random`).
    pub daemon: String,
    /// Whether it reloaded its configuration file.
    pub reloaded: bool,
    /// What its reload changed, when it reloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Box<ReloadReport>>,
    /// Why it did not: its refusal (e.g. its file does not load), or that it did not answer within 10 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One trigger's invoke latency histogram, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeLatency {
    /// The trigger's name (as in [`TriggerStatus::name`]).
    pub trigger: String,
    /// The histogram's counts at the time of the call.
    pub histogram: HistogramSnapshot,
}

/// Times as RFC 3339 text in UTC with millisecond precision: readable in `curl` output and parseable by any
/// client.
mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(
        time: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|error| {
                serde::de::Error::custom(format!(
                    "expected an RFC 3339 time, found {text:?}: {error}"
                ))
            })
    }
}

/// [`rfc3339`] for optional times (`null` when absent).
mod rfc3339_option {
    use super::*;

    pub fn serialize<S: Serializer>(
        time: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => rfc3339::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(&text)
                .map(|time| Some(time.with_timezone(&Utc)))
                .map_err(|error| {
                    serde::de::Error::custom(format!(
                        "expected an RFC 3339 time, found {text:?}: {error}"
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_from_parses_each_form_and_names_the_expected_ones() {
        assert_eq!("latest".parse(), Ok(EnableFrom::Latest));
        assert_eq!("position".parse(), Ok(EnableFrom::StoredPosition));
        assert_eq!("42".parse(), Ok(EnableFrom::Block(42)));
        let error = "-1".parse::<EnableFrom>().unwrap_err();
        assert!(
            error.contains("`latest`, `position` or a block number"),
            "{error}"
        );
        assert!(error.contains("\"-1\""), "{error}");
        for from in [
            EnableFrom::Latest,
            EnableFrom::StoredPosition,
            EnableFrom::Block(7),
        ] {
            assert_eq!(from.to_string().parse(), Ok(from));
        }
    }

    #[test]
    fn block_height_and_lag_count_the_block_in_progress_as_not_done() {
        let fresh = Position {
            block: 0,
            event_index: 0,
        };
        assert_eq!(fresh.block_height(), None);
        assert_eq!(fresh.lag(Some(3)), Some(3));
        let midway = Position {
            block: 10,
            event_index: 2,
        };
        assert_eq!(midway.block_height(), Some(9));
        assert_eq!(midway.lag(Some(11)), Some(1));
        assert_eq!(midway.lag(None), None);
        let caught_up = Position {
            block: 11,
            event_index: 0,
        };
        assert_eq!(caught_up.lag(Some(11)), Some(0));
        assert_eq!(
            Position {
                block: 20,
                event_index: 0
            }
            .lag(Some(11)),
            Some(0)
        );
    }

    #[test]
    fn engine_types_convert_to_and_from_the_api_ones() {
        let stored = state::Position { block: 4, index: 2 };
        assert_eq!(
            Position::from(stored),
            Position {
                block: 4,
                event_index: 2
            }
        );
        assert_eq!(
            state::EnableFrom::from(EnableFrom::Latest),
            state::EnableFrom::Latest
        );
        assert_eq!(
            state::EnableFrom::from(EnableFrom::StoredPosition),
            state::EnableFrom::Stored
        );
        assert_eq!(
            state::EnableFrom::from(EnableFrom::Block(9)),
            state::EnableFrom::Block(9)
        );
        assert_eq!(
            TriggerState::from_state(state::State::Exception),
            Some(TriggerState::Exception)
        );
        assert_eq!(TriggerState::from_state(state::State::Deleted), None);
    }

    #[test]
    fn stored_dead_letters_convert_and_negative_ids_are_refused() {
        let created_at =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        let stored = store::DeadLetter {
            id: 7,
            trigger: crate::config::TriggerName::new("blocks").unwrap(),
            letter: store::NewDeadLetter {
                event_id: "block-3".into(),
                position: state::Position { block: 3, index: 0 },
                output: 1,
                payload: serde_json::json!({"n": 3}),
                error: "HTTP 500".into(),
                attempts: 3,
            },
            created_at,
            repushed_at: Some(created_at),
        };
        let letter = DeadLetter::try_from(stored.clone()).unwrap();
        assert_eq!(
            (letter.id, letter.block, letter.event_index, letter.output),
            (7, 3, 0, 1)
        );
        assert_eq!(letter.trigger, "blocks");
        assert_eq!(letter.at.timestamp_millis(), 1_700_000_000_250);
        assert!(letter.repushed);
        let negative = store::DeadLetter { id: -1, ..stored };
        let error = DeadLetter::try_from(negative).unwrap_err();
        assert!(
            matches!(&error, ControlError::Internal(message) if message.contains("-1") && message.contains("blocks"))
        );
    }

    #[test]
    fn event_selector_and_state_serialize_as_documented() {
        assert_eq!(serde_json::to_string(&EventSelector::All).unwrap(), "\"*\"");
        assert_eq!(
            serde_json::to_string(&EventSelector::Contract).unwrap(),
            "\"Contract\""
        );
        assert_eq!(
            serde_json::to_string(&TriggerState::Exception).unwrap(),
            "\"Exception\""
        );
    }

    #[test]
    fn times_round_trip_as_rfc3339_utc() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let error = LastError {
            message: "boom".into(),
            at,
        };
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json["at"], "2026-11-21T10:00:00.123Z");
        assert_eq!(serde_json::from_value::<LastError>(json).unwrap(), error);
        let bad = serde_json::json!({"message": "x", "at": "yesterday"});
        let message = serde_json::from_value::<LastError>(bad)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("RFC 3339") && message.contains("yesterday"),
            "{message}"
        );
    }
}
