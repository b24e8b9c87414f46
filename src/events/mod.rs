//! Block -> BaaS event envelopes (Block / Tx / Contract / Config), pure.
//!
//! [`extract`] turns one decoded [`Block`] into the events a trigger may push, in chain order: the Block event,
//! then for each transaction its Tx (or Config) event followed by its Contract events. The envelope shape is
//! the Alibaba Cloud BaaS one (`type`, `platform`, `instance_id`, `network`, `id`, `name`, `content`); a Tx or
//! Config event's `content.data` is the transaction's `common.Payload` as Fabric's configtxlator prints it
//! (see [`protolator`]), in the channel's [`Rendering`] (v2.5's or v3's configtxlator), so filters written
//! against BaaS, or against what the operator's own Fabric tools show, keep working.

pub mod protolator;
mod rendering;

pub use rendering::{Rendering, UnknownRendering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::fabric::decode::{Block, DecodedTransaction, HeaderType};

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
/// is pushed).
#[derive(Debug, Clone, PartialEq)]
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
    /// The full envelope, as pushed.
    envelope: Value,
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

    /// The envelope as JSON.
    pub fn envelope(&self) -> &Value {
        &self.envelope
    }

    /// The envelope, without a copy.
    pub fn into_envelope(self) -> Value {
        self.envelope
    }
}

/// All events of a block in chain order: Block, then per transaction its Tx (or Config) event followed by its
/// Contract events. Transactions that could not be decoded produce no event (see [`Block::errors`]).
///
/// The order is stable, so an event's index in the returned list is a valid checkpoint position. A Tx event's
/// `input` is the JSON text of the first action's arguments (as UTF-8, lossy); a Config event's `input` is the
/// JSON text of the `common.ConfigUpdate` that produced the configuration (empty for a genesis block).
pub fn extract(block: &Block, options: &ExtractOptions) -> Vec<Event> {
    let network = block.channel_id().unwrap_or_default();
    let mut events = Vec::with_capacity(1 + 2 * block.transactions.len());
    events.push(block_event(block, network, options));
    for tx in block.decoded() {
        let is_config = tx.header_type == HeaderType::Config as i32;
        let contracts = contract_envelopes(block.number, tx, network, options);
        let tx_event = if is_config {
            config_event(block.number, tx, network, options)
        } else {
            let inner: Vec<Value> = contract_envelopes(block.number, tx, "", options)
                .into_iter()
                .map(|e| e.envelope)
                .collect();
            tx_event(block.number, tx, network, inner, options)
        };
        events.push(tx_event);
        if tx.is_valid() || options.include_invalid {
            events.extend(contracts);
        }
    }
    events
}

fn envelope(
    event_type: EventType,
    options: &ExtractOptions,
    network: &str,
    id: &str,
    name: String,
    content: Value,
) -> Value {
    let mut map = Map::with_capacity(7);
    map.insert("type".into(), Value::from(event_type.as_str()));
    map.insert("platform".into(), Value::from(PLATFORM));
    map.insert(
        "instance_id".into(),
        Value::from(options.instance_id.as_str()),
    );
    map.insert("network".into(), Value::from(network));
    map.insert("id".into(), Value::from(id));
    map.insert("name".into(), Value::from(name));
    map.insert("content".into(), content);
    Value::Object(map)
}

fn block_event(block: &Block, network: &str, options: &ExtractOptions) -> Event {
    let id = format!("block-{}", block.number);
    let content = json!({
        "number": block.number,
        "hash": hex::encode(block.hash),
        "previous_hash": hex::encode(&block.previous_hash),
        "create_time": block.create_time().unwrap_or_default(),
        "transactions": block.decoded().map(|tx| tx.tx_id.as_str()).collect::<Vec<_>>(),
    });
    Event {
        event_type: EventType::Block,
        envelope: envelope(
            EventType::Block,
            options,
            network,
            &id,
            block.number.to_string(),
            content,
        ),
        id,
        block_number: block.number,
        valid_transaction: true,
    }
}

fn tx_event(
    block: u64,
    tx: &DecodedTransaction,
    network: &str,
    events: Vec<Value>,
    options: &ExtractOptions,
) -> Event {
    let id = format!("tx-{block}-{}", tx.tx_id);
    let first = tx.actions.first();
    let input = match first {
        Some(action) => {
            let args: Vec<String> = action
                .args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            serde_json::to_string(&args).unwrap_or_default()
        }
        None => String::new(),
    };
    let content = transaction_object(
        tx,
        first.map(|a| a.chaincode.as_str()).unwrap_or_default(),
        input,
        Value::Array(events),
        options.rendering,
    );
    Event {
        event_type: EventType::Tx,
        envelope: envelope(
            EventType::Tx,
            options,
            network,
            &id,
            tx.tx_id.clone(),
            content,
        ),
        id,
        block_number: block,
        valid_transaction: tx.is_valid(),
    }
}

fn config_event(
    block: u64,
    tx: &DecodedTransaction,
    network: &str,
    options: &ExtractOptions,
) -> Event {
    let id = format!("config-{block}-{}", tx.tx_id);
    let input = tx
        .config
        .as_ref()
        .and_then(|c| c.update.as_ref())
        .map(|u| protolator::config_update(u, options.rendering).to_string())
        .unwrap_or_default();
    let content = transaction_object(tx, "", input, Value::Null, options.rendering);
    Event {
        event_type: EventType::Config,
        envelope: envelope(
            EventType::Config,
            options,
            network,
            &id,
            String::new(),
            content,
        ),
        id,
        block_number: block,
        valid_transaction: tx.is_valid(),
    }
}

fn transaction_object(
    tx: &DecodedTransaction,
    to: &str,
    input: String,
    events: Value,
    rendering: Rendering,
) -> Value {
    let mut map = Map::with_capacity(7);
    map.insert("id".into(), Value::from(tx.tx_id.as_str()));
    map.insert(
        "state".into(),
        Value::from(tx.validation_code.as_str_name()),
    );
    map.insert(
        "from".into(),
        Value::from(tx.creator.as_ref().map(|c| c.label()).unwrap_or_default()),
    );
    map.insert("to".into(), Value::from(to));
    map.insert("input".into(), Value::from(input));
    map.insert("events".into(), events);
    map.insert(
        "data".into(),
        protolator::payload_bytes(&tx.payload, rendering),
    );
    Value::Object(map)
}

/// A transaction's Contract events. The first keeps the BaaS id `contract-<block>-<txid>`; a transaction with
/// several chaincode actions numbers the later ones `-1`, `-2`, ... so that ids stay unique.
fn contract_envelopes(
    block: u64,
    tx: &DecodedTransaction,
    network: &str,
    options: &ExtractOptions,
) -> Vec<Event> {
    tx.actions
        .iter()
        .filter_map(|action| action.event.as_ref())
        .enumerate()
        .map(|(n, event)| {
            let id = if n == 0 {
                format!("contract-{block}-{}", tx.tx_id)
            } else {
                format!("contract-{block}-{}-{n}", tx.tx_id)
            };
            let content = Value::from(BASE64.encode(&event.payload));
            Event {
                event_type: EventType::Contract,
                envelope: envelope(
                    EventType::Contract,
                    options,
                    network,
                    &id,
                    event.event_name.clone(),
                    content,
                ),
                id,
                block_number: block,
                valid_transaction: tx.is_valid(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::fabric::decode::{
        ChaincodeInvocation, Creator, DecodedTransaction, Transaction, TxValidationCode,
    };
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
}
