//! Block -> BaaS event envelopes (Block / Tx / Contract / Config), pure.
//!
//! [`extract`] turns one decoded [`Block`] into the events a trigger may push, in chain order: the Block event,
//! then for each transaction its Tx (or Config) event followed by its Contract events. The envelope shape is
//! the Alibaba Cloud BaaS one (`type`, `platform`, `instance_id`, `network`, `id`, `name`, `content`); a Tx or
//! Config event's `content.data` is the transaction's `common.Payload` as Fabric's configtxlator prints it
//! (see [`protolator`]), in the channel's [`Rendering`] (v2.5's or v3's configtxlator), so filters written
//! against BaaS, or against what the operator's own Fabric tools show, keep working.
//!
//! Events are lazy: [`extract`] only gathers what each envelope is made of (ids, the creator, the raw payload,
//! shared between a transaction's Tx event and its Contract events), and the envelope is written when someone
//! reads it: as JSON text straight from the decoded protobuf ([`Event::write_json`], what is pushed or
//! printed), or as a `serde_json::Value` ([`Event::envelope`], built once per event and cached; what filters
//! read). Both come from one producer (see `json`), so the text parses to exactly the value. A trigger that
//! never receives an event (a Block trigger and a Tx event) never pays for its `content.data`.

mod json;
pub mod protolator;
#[cfg(test)]
mod reference;
mod rendering;

pub use rendering::{Rendering, UnknownRendering};

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fabric::decode::{Block, Creator, DecodedTransaction, HeaderType, TxValidationCode};
use crate::fabric::proto::common;
use json::{DisplayWith, Out, to_jq, to_text, to_value};

/// The four BaaS event types. A trigger listens to one of them (or all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    Block,
    Tx,
    Contract,
    Config,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Block,
        EventType::Tx,
        EventType::Contract,
        EventType::Config,
    ];

    /// The name used in the envelope's `type` field and in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Block => "Block",
            EventType::Tx => "Tx",
            EventType::Contract => "Contract",
            EventType::Config => "Config",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `platform` field of every envelope.
const PLATFORM: &str = "Fabric";

/// What [`extract`] needs besides the block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// The `instance_id` of every envelope: names the bridge that produced the event.
    pub instance_id: String,
    /// Also emit Contract events of transactions the peer marked invalid (or did not validate). Off by default:
    /// those events never happened on the ledger.
    pub include_invalid: bool,
    /// Which Fabric generation's configtxlator `content.data` and a Config event's `content.input` match: the
    /// channel's (see [`Rendering::of_config`]).
    pub rendering: Rendering,
}

/// One BaaS event: its type and id (for routing and checkpoints) and its envelope (what filters see and what
/// is pushed), written on demand from the parts [`extract`] gathered.
#[derive(Debug, Clone)]
pub struct Event {
    /// Which triggers it is for.
    event_type: EventType,
    /// The BaaS id (`block-<n>`, `tx-<n>-<txid>`, ...): not unique in every block (a duplicated envelope, MESSAGE
    /// envelopes without a transaction id); pushes carry a delivery id made from the event's place instead.
    id: String,
    /// The block it came from: positions and checkpoints are per block.
    block_number: u64,
    /// Whether the transaction it belongs to is valid (the peer's validation code is VALID); `true` for Block
    /// events. Contract events of other transactions never happened on the ledger: only triggers that ask get them.
    valid_transaction: bool,
    /// What the envelope is made of.
    parts: Parts,
    /// The envelope as a value, built by the first [`Event::envelope`].
    envelope: OnceLock<Value>,
}

/// Two events are equal when their envelopes are, whether or not either was built yet.
impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.id == other.id
            && self.block_number == other.block_number
            && self.valid_transaction == other.valid_transaction
            && self.parts == other.parts
    }
}

/// An envelope's parts. A transaction's Tx (or Config) event and its Contract events share one [`TxParts`]: each
/// contract envelope is gathered once, and written inside the Tx event's `events` as well as on its own.
#[derive(Debug, Clone, PartialEq)]
enum Parts {
    Block(Arc<BlockParts>),
    /// A Tx or Config event.
    Transaction(Arc<TxParts>),
    /// The Contract event of `TxParts::contracts[n]`.
    Contract(Arc<TxParts>, usize),
}

/// What every envelope of a block shares.
#[derive(Debug, PartialEq)]
struct Head {
    instance_id: String,
    /// The channel.
    network: String,
}

#[derive(Debug, PartialEq)]
struct BlockParts {
    head: Arc<Head>,
    number: u64,
    hash: [u8; 32],
    previous_hash: Bytes,
    /// Unix seconds of the first transaction's timestamp (0 when none).
    create_time: i64,
    /// The ids of the transactions that decoded, in block order.
    transactions: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct TxParts {
    head: Arc<Head>,
    /// A Config event rather than a Tx event.
    config: bool,
    tx_id: String,
    validation_code: TxValidationCode,
    creator: Option<Arc<Creator>>,
    /// The first chaincode action's chaincode (`content.to`; empty for Config events).
    to: String,
    /// The first chaincode action's arguments (`content.input`, a Tx event's); `None` without actions.
    args: Option<Vec<Bytes>>,
    /// The update that produced the configuration (`content.input`, a Config event's).
    config_update: Option<common::ConfigUpdate>,
    /// The transaction's chaincode events, in action order.
    contracts: Vec<ContractParts>,
    /// The raw `common.Payload`: `content.data`, written when read.
    payload: Bytes,
    rendering: Rendering,
}

#[derive(Debug, PartialEq)]
struct ContractParts {
    id: String,
    name: String,
    payload: Bytes,
}

impl Event {
    /// Block, Tx, Contract or Config.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The envelope's `id`, e.g. `tx-12-<txid>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The number of the block the event came from.
    pub fn block_number(&self) -> u64 {
        self.block_number
    }

    /// Whether the event's transaction is valid (`true` for a Block event).
    pub fn valid_transaction(&self) -> bool {
        self.valid_transaction
    }

    /// The envelope as JSON, built on the first call and kept.
    pub fn envelope(&self) -> &Value {
        self.envelope.get_or_init(|| self.build_envelope())
    }

    /// The envelope, without a copy (built now unless [`Event::envelope`] already did).
    pub fn into_envelope(self) -> Value {
        match self.envelope.into_inner() {
            Some(envelope) => envelope,
            None => to_value(|o| write_envelope(o, &self.id, &self.parts)),
        }
    }

    /// A new envelope value, not kept: for a caller that keeps it itself.
    pub fn build_envelope(&self) -> Value {
        to_value(|o| write_envelope(o, &self.id, &self.parts))
    }

    /// Appends the envelope as compact JSON text to `out`, written straight from the block's parts: the bytes
    /// `serde_json::to_vec(self.envelope())` would give, without building the value.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        to_text(out, |o| write_envelope(o, &self.id, &self.parts));
    }

    /// The envelope as a jq value, written straight from the block's parts: what parsing [`Event::to_json`]'s
    /// text gives, without the text.
    pub fn to_jq(&self) -> jaq_json::Val {
        to_jq(|o| write_envelope(o, &self.id, &self.parts))
    }

    /// [`Event::write_json`] into a new buffer.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }
}

/// All events of a block in chain order: Block, then per transaction its Tx (or Config) event followed by its
/// Contract events. Transactions that could not be decoded produce no event (see [`Block::errors`]).
///
/// The order is stable, so an event's index in the returned list is a valid checkpoint position. A Tx event's
/// `input` is the JSON text of the first action's arguments (as UTF-8, lossy); a Config event's `input` is the
/// JSON text of the `common.ConfigUpdate` that produced the configuration (empty for a genesis block).
///
/// Cheap: no JSON is written here (see the module documentation).
pub fn extract(block: &Block, options: &ExtractOptions) -> Vec<Event> {
    let head = Arc::new(Head {
        instance_id: options.instance_id.clone(),
        network: block.channel_id().unwrap_or_default().to_owned(),
    });
    let mut events = Vec::with_capacity(1 + 2 * block.transactions.len());
    events.push(block_event(block, &head));
    for tx in block.decoded() {
        let parts = Arc::new(tx_parts(block.number, tx, &head, options.rendering));
        let (event_type, id) = if parts.config {
            (
                EventType::Config,
                format!("config-{}-{}", block.number, tx.tx_id),
            )
        } else {
            (EventType::Tx, format!("tx-{}-{}", block.number, tx.tx_id))
        };
        events.push(Event {
            event_type,
            id,
            block_number: block.number,
            valid_transaction: tx.is_valid(),
            parts: Parts::Transaction(Arc::clone(&parts)),
            envelope: OnceLock::new(),
        });
        if tx.is_valid() || options.include_invalid {
            events.extend(
                parts
                    .contracts
                    .iter()
                    .enumerate()
                    .map(|(n, contract)| Event {
                        event_type: EventType::Contract,
                        id: contract.id.clone(),
                        block_number: block.number,
                        valid_transaction: tx.is_valid(),
                        parts: Parts::Contract(Arc::clone(&parts), n),
                        envelope: OnceLock::new(),
                    }),
            );
        }
    }
    events
}

fn block_event(block: &Block, head: &Arc<Head>) -> Event {
    Event {
        event_type: EventType::Block,
        id: format!("block-{}", block.number),
        block_number: block.number,
        valid_transaction: true,
        parts: Parts::Block(Arc::new(BlockParts {
            head: Arc::clone(head),
            number: block.number,
            hash: block.hash,
            previous_hash: block.previous_hash.clone(),
            create_time: block.create_time().unwrap_or_default(),
            transactions: block.decoded().map(|tx| tx.tx_id.clone()).collect(),
        })),
        envelope: OnceLock::new(),
    }
}

fn tx_parts(
    block: u64,
    tx: &DecodedTransaction,
    head: &Arc<Head>,
    rendering: Rendering,
) -> TxParts {
    let config = tx.header_type == HeaderType::Config as i32;
    let first = tx.actions.first().filter(|_| !config);
    // The first keeps the BaaS id `contract-<block>-<txid>`; a transaction with several chaincode actions numbers
    // the later ones `-1`, `-2`, ... so that ids stay unique.
    let contracts = tx
        .actions
        .iter()
        .filter_map(|action| action.event.as_ref())
        .enumerate()
        .map(|(n, event)| ContractParts {
            id: if n == 0 {
                format!("contract-{block}-{}", tx.tx_id)
            } else {
                format!("contract-{block}-{}-{n}", tx.tx_id)
            },
            name: event.event_name.clone(),
            payload: event.payload.clone(),
        })
        .collect();
    TxParts {
        head: Arc::clone(head),
        config,
        tx_id: tx.tx_id.clone(),
        validation_code: tx.validation_code,
        creator: tx.creator.clone(),
        to: first.map(|a| a.chaincode.clone()).unwrap_or_default(),
        args: first.map(|a| a.args.clone()),
        config_update: if config {
            tx.config.as_ref().and_then(|c| c.update.clone())
        } else {
            None
        },
        contracts,
        payload: tx.payload.clone(),
        rendering,
    }
}

// ---- writing envelopes ---------------------------------------------------------------------------------

fn write_envelope<O: Out>(o: &mut O, id: &str, parts: &Parts) {
    match parts {
        Parts::Block(block) => write_block(o, id, block),
        Parts::Transaction(tx) => write_transaction(o, id, tx),
        Parts::Contract(tx, n) => write_contract(o, &tx.head, &tx.head.network, &tx.contracts[*n]),
    }
}

/// The members every envelope starts with, up to `id`.
fn write_head<O: Out>(o: &mut O, event_type: EventType, head: &Head, network: &str, id: &str) {
    o.key("type");
    o.str(event_type.as_str());
    o.key("platform");
    o.str(PLATFORM);
    o.key("instance_id");
    o.str(&head.instance_id);
    o.key("network");
    o.str(network);
    o.key("id");
    o.str(id);
}

fn write_block<O: Out>(o: &mut O, id: &str, b: &BlockParts) {
    o.begin_object();
    write_head(o, EventType::Block, &b.head, &b.head.network, id);
    o.key("name");
    o.display(&b.number);
    o.key("content");
    json::obj!(o {
        "number" => o.u64(b.number),
        "hash" => o.hex(&b.hash),
        "previous_hash" => o.hex(&b.previous_hash),
        "create_time" => o.i64(b.create_time),
        "transactions" => {
            o.begin_array();
            for tx_id in &b.transactions {
                o.str(tx_id);
            }
            o.end_array();
        },
    });
    o.end_object();
}

/// A Contract envelope; inside a Tx event's `events`, `network` is empty.
fn write_contract<O: Out>(o: &mut O, head: &Head, network: &str, c: &ContractParts) {
    o.begin_object();
    write_head(o, EventType::Contract, head, network, &c.id);
    o.key("name");
    o.str(&c.name);
    o.key("content");
    o.base64(&c.payload);
    o.end_object();
}

fn write_transaction<O: Out>(o: &mut O, id: &str, tx: &TxParts) {
    let event_type = if tx.config {
        EventType::Config
    } else {
        EventType::Tx
    };
    o.begin_object();
    write_head(o, event_type, &tx.head, &tx.head.network, id);
    o.key("name");
    o.str(if tx.config { "" } else { &tx.tx_id });
    o.key("content");
    json::obj!(o {
        "id" => o.str(&tx.tx_id),
        "state" => o.str(tx.validation_code.as_str_name()),
        "from" => match &tx.creator {
            Some(creator) => o.display(&DisplayWith(|f: &mut fmt::Formatter<'_>| match &creator.common_name {
                Some(cn) => write!(f, "{}.{cn}", creator.msp_id),
                None => f.write_str(&creator.msp_id),
            })),
            None => o.str(""),
        },
        "to" => o.str(&tx.to),
        "input" => o.str(&input(tx)),
        "events" => if tx.config {
            o.null();
        } else {
            o.begin_array();
            for contract in &tx.contracts {
                write_contract(o, &tx.head, "", contract);
            }
            o.end_array();
        },
        "data" => protolator::write_payload_bytes(o, &tx.payload, tx.rendering),
    });
    o.end_object();
}

/// `content.input`: a Tx event's first action's arguments as a JSON array of (lossy UTF-8) strings, a Config
/// event's update as JSON; empty when there is none.
fn input(tx: &TxParts) -> String {
    if tx.config {
        let Some(update) = &tx.config_update else {
            return String::new();
        };
        let mut text = Vec::new();
        to_text(&mut text, |o| {
            protolator::write_config_update(o, update, tx.rendering)
        });
        return String::from_utf8(text).unwrap_or_default();
    }
    let Some(args) = &tx.args else {
        return String::new();
    };
    let args: Vec<Cow<'_, str>> = args.iter().map(|a| String::from_utf8_lossy(a)).collect();
    serde_json::to_string(&args).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::fabric::decode::{ChaincodeInvocation, Transaction};
    use crate::fabric::proto::protos;

    fn invocation(event: &str) -> ChaincodeInvocation {
        ChaincodeInvocation {
            chaincode: "taskmgr".into(),
            chaincode_version: "1".into(),
            args: vec![Bytes::from_static(b"create"), Bytes::from_static(b"\xffk")],
            event: Some(protos::ChaincodeEvent {
                chaincode_id: "taskmgr".into(),
                tx_id: "t1".into(),
                event_name: event.into(),
                payload: Bytes::from_static(b"{}"),
            }),
            response: None,
            rwsets: Vec::new(),
        }
    }

    fn block(code: TxValidationCode) -> Block {
        Block {
            number: 5,
            hash: [0xab; 32],
            previous_hash: Bytes::from_static(&[0x01, 0x02]),
            data_hash: Bytes::new(),
            last_config: Some(0),
            envelopes: Vec::new(),
            transactions: vec![Transaction {
                index: 0,
                outcome: Ok(DecodedTransaction {
                    validation_code: code,
                    header_type: HeaderType::EndorserTransaction as i32,
                    channel_id: "ch1".into(),
                    tx_id: "t1".into(),
                    timestamp: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5,
                    }),
                    creator: Some(Arc::new(Creator {
                        msp_id: "Org1MSP".into(),
                        common_name: Some("User1@org1.example.com".into()),
                    })),
                    payload: Bytes::new(),
                    actions: vec![invocation("first"), invocation("second")],
                    config: None,
                }),
            }],
        }
    }

    #[test]
    fn events_come_in_chain_order_with_unique_ids() {
        let events = extract(&block(TxValidationCode::Valid), &ExtractOptions::default());
        let ids: Vec<&str> = events.iter().map(Event::id).collect();
        assert_eq!(
            ids,
            ["block-5", "tx-5-t1", "contract-5-t1", "contract-5-t1-1"]
        );
        let block_event = events[0].envelope();
        assert_eq!(block_event["content"]["create_time"], 1_700_000_000);
        assert_eq!(block_event["content"]["previous_hash"], "0102");
        assert_eq!(block_event["content"]["transactions"], json!(["t1"]));
        let tx = events[1].envelope();
        assert_eq!(tx["content"]["from"], "Org1MSP.User1@org1.example.com");
        assert_eq!(tx["content"]["to"], "taskmgr");
        assert_eq!(tx["content"]["input"], "[\"create\",\"\u{fffd}k\"]");
        assert_eq!(tx["content"]["events"][1]["id"], "contract-5-t1-1");
        assert_eq!(tx["content"]["events"][1]["network"], "");
        assert_eq!(events[3].envelope()["name"], "second");
        assert_eq!(events[3].envelope()["content"], "e30=");
    }

    #[test]
    fn invalid_transactions_keep_their_tx_event_but_not_their_contract_events() {
        let invalid = block(TxValidationCode::MvccReadConflict);
        let events = extract(&invalid, &ExtractOptions::default());
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1].envelope()["content"]["state"],
            "MVCC_READ_CONFLICT"
        );
        let with_invalid = ExtractOptions {
            include_invalid: true,
            ..ExtractOptions::default()
        };
        assert_eq!(extract(&invalid, &with_invalid).len(), 4);
    }

    /// Every real block of the fixtures, decoded, with its file name.
    fn fixture_blocks() -> Vec<(String, Block)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut blocks = Vec::new();
        for dir in ["fabric-v2.5/blocks", "fabric-v3.1/blocks"] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "pb"))
                .collect();
            files.sort();
            for file in files {
                let raw = std::fs::read(&file).unwrap();
                let block = crate::fabric::decode::decode_block(&raw).unwrap();
                blocks.push((file.display().to_string(), block));
            }
        }
        blocks
    }

    #[test]
    fn the_direct_text_and_values_are_exactly_the_old_envelopes_on_every_fixture_block() {
        let blocks = fixture_blocks();
        assert!(blocks.len() >= 40, "{} fixture blocks", blocks.len());
        let mut compared = 0;
        for (file, block) in &blocks {
            for rendering in Rendering::ALL {
                for include_invalid in [false, true] {
                    let options = ExtractOptions {
                        instance_id: "csi-\"quoted\"".into(),
                        include_invalid,
                        rendering,
                    };
                    let old = reference::extract(block, &options);
                    let new = extract(block, &options);
                    assert_eq!(new.len(), old.len(), "{file} {rendering}");
                    for (new, old) in new.iter().zip(&old) {
                        let at = format!("{file} {rendering} {}", old.id);
                        assert_eq!(new.event_type(), old.event_type, "{at}");
                        assert_eq!(new.id(), old.id, "{at}");
                        assert_eq!(new.block_number(), old.block_number, "{at}");
                        assert_eq!(new.valid_transaction(), old.valid_transaction, "{at}");
                        let text = new.to_json();
                        assert_eq!(
                            serde_json::from_slice::<Value>(&text).unwrap(),
                            old.envelope,
                            "{at}: the text parses to the old value"
                        );
                        assert_eq!(
                            text,
                            serde_json::to_vec(&old.envelope).unwrap(),
                            "{at}: the same bytes as the old value serialized"
                        );
                        assert_eq!(new.envelope(), &old.envelope, "{at}: the value");
                        json::tests::assert_same_jq(&new.to_jq(), &text);
                        assert_eq!(new.clone().into_envelope(), old.envelope, "{at}");
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 500, "{compared} envelopes compared");
    }

    #[test]
    fn a_transaction_and_its_contract_events_share_their_parts_and_nothing_is_written_before_it_is_read()
     {
        let events = extract(&block(TxValidationCode::Valid), &ExtractOptions::default());
        let (Parts::Transaction(tx), Parts::Contract(first, 0), Parts::Contract(second, 1)) =
            (&events[1].parts, &events[2].parts, &events[3].parts)
        else {
            panic!("a Tx event and two Contract events");
        };
        assert!(Arc::ptr_eq(tx, first) && Arc::ptr_eq(tx, second));
        assert!(events.iter().all(|e| e.envelope.get().is_none()));
        let value = events[1].envelope();
        assert!(
            std::ptr::eq(value, events[1].envelope()),
            "built once, then kept"
        );
        assert_eq!(events[1].to_json(), serde_json::to_vec(value).unwrap());
    }
}
