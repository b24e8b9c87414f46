//! The envelopes as they were built before events became lazy: a `serde_json::Value` tree per event, with
//! `content.data` from the `Value`-building protolator. Kept, frozen, only to check that the lazy events and
//! their JSON text give exactly these values on every fixture block (see the tests in `super`).

#![allow(dead_code)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use prost::Message;
use serde_json::{Map, Value, json};

use super::{EventType, ExtractOptions, Rendering};
use crate::fabric::decode::{Block, DecodedTransaction, HeaderType};
use crate::fabric::proto::{common, etcdraft, kvrwset, msp, orderer, protos, rwset};

macro_rules! obj {
    ($($key:literal => $value:expr),* $(,)?) => {{
        let mut map = Map::with_capacity([$($key),*].len());
        $(map.insert($key.to_owned(), $value);)*
        Value::Object(map)
    }};
}

/// Envelopes can nest inside payloads (orderer transactions, a config's last update): beyond this depth the
/// bytes stay base64, so a crafted block cannot exhaust the stack.
const MAX_ENVELOPE_DEPTH: u8 = 16;

/// The JSON of a serialized `common.Payload` (what configtxlator prints for `data.data[i].payload`).
pub fn payload_bytes(bytes: &Bytes, r: Rendering) -> Value {
    opaque(bytes, |p| payload(r, p, 0))
}

/// The JSON of a `common.Payload` found `depth` envelopes deep.
fn payload(r: Rendering, p: &common::Payload, depth: u8) -> Value {
    let data = if p.data.is_empty() {
        Value::Null
    } else {
        match p
            .header
            .as_ref()
            .and_then(|h| common::ChannelHeader::decode(h.channel_header.clone()).ok())
        {
            Some(ch) => payload_data(r, ch.r#type, &p.data, depth),
            None => base64(&p.data),
        }
    };
    obj! {
        "header" => option(&p.header, |h| header(r, h)),
        "data" => data,
    }
}

fn payload_data(r: Rendering, header_type: i32, data: &Bytes, depth: u8) -> Value {
    use common::HeaderType as H;
    if depth >= MAX_ENVELOPE_DEPTH {
        return base64(data);
    }
    match H::try_from(header_type) {
        Ok(H::Config) => opaque(data, |c| config_envelope(r, c, depth)),
        Ok(H::OrdererTransaction) => opaque(data, |e| envelope(r, e, depth + 1)),
        Ok(H::ConfigUpdate) => opaque(data, |e| config_update_envelope(r, e)),
        Ok(H::Message) => opaque(data, |v| plain_config_value(r, v)),
        Ok(H::EndorserTransaction) => opaque(data, |t| transaction(r, t)),
        _ => base64(data),
    }
}

/// The JSON of a `common.ConfigUpdate` (channel groups decoded by path, as in a config transaction).
pub fn config_update(u: &common::ConfigUpdate, r: Rendering) -> Value {
    obj! {
        "channel_id" => string(&u.channel_id),
        "read_set" => option(&u.read_set, |g| config_group(r, g, Group::Channel)),
        "write_set" => option(&u.write_set, |g| config_group(r, g, Group::Channel)),
        // No isolated data type is registered with configtxlator: the values stay bytes.
        "isolated_data" => bytes_map(&u.isolated_data),
    }
}

// ---- common -------------------------------------------------------------------------------------------

fn envelope(r: Rendering, e: &common::Envelope, depth: u8) -> Value {
    obj! {
        "payload" => opaque(&e.payload, |p| payload(r, p, depth)),
        "signature" => bytes(r, &e.signature),
    }
}

fn header(r: Rendering, h: &common::Header) -> Value {
    obj! {
        "channel_header" => opaque(&h.channel_header, |ch| channel_header(r, ch)),
        "signature_header" => opaque(&h.signature_header, |sh| signature_header(r, sh)),
    }
}

fn channel_header(r: Rendering, ch: &common::ChannelHeader) -> Value {
    // Opaque for every header type; configtxlator only knows the endorser transactions' extension.
    let extension = if ch.r#type == common::HeaderType::EndorserTransaction as i32 {
        opaque(&ch.extension, chaincode_header_extension)
    } else {
        undecodable(&ch.extension)
    };
    obj! {
        "type" => Value::from(ch.r#type),
        "version" => Value::from(ch.version),
        "timestamp" => timestamp(&ch.timestamp),
        "channel_id" => string(&ch.channel_id),
        "tx_id" => string(&ch.tx_id),
        "epoch" => uint64(ch.epoch),
        "extension" => extension,
        "tls_cert_hash" => bytes(r, &ch.tls_cert_hash),
    }
}

fn signature_header(r: Rendering, sh: &common::SignatureHeader) -> Value {
    obj! {
        "creator" => opaque(&sh.creator, |id| serialized_identity(r, id)),
        "nonce" => bytes(r, &sh.nonce),
    }
}

fn serialized_identity(r: Rendering, id: &msp::SerializedIdentity) -> Value {
    obj! {
        "mspid" => string(&id.mspid),
        "id_bytes" => bytes(r, &id.id_bytes),
    }
}

fn config_envelope(r: Rendering, ce: &common::ConfigEnvelope, depth: u8) -> Value {
    obj! {
        "config" => option(&ce.config, |c| config(r, c)),
        "last_update" => option(&ce.last_update, |e| envelope(r, e, depth + 1)),
    }
}

fn config(r: Rendering, c: &common::Config) -> Value {
    obj! {
        "sequence" => uint64(c.sequence),
        "channel_group" => option(&c.channel_group, |g| config_group(r, g, Group::Channel)),
    }
}

fn config_update_envelope(r: Rendering, cue: &common::ConfigUpdateEnvelope) -> Value {
    obj! {
        "config_update" => opaque(&cue.config_update, |u| config_update(u, r)),
        "signatures" => list(&cue.signatures, |s| config_signature(r, s)),
    }
}

fn config_signature(r: Rendering, cs: &common::ConfigSignature) -> Value {
    obj! {
        "signature_header" => opaque(&cs.signature_header, |sh| signature_header(r, sh)),
        "signature" => bytes(r, &cs.signature),
    }
}

/// A `MESSAGE` payload holds a `ConfigValue` outside any group: its value stays bytes.
fn plain_config_value(r: Rendering, v: &common::ConfigValue) -> Value {
    obj! {
        "version" => uint64(v.version),
        "value" => bytes(r, &v.value),
        "mod_policy" => string(&v.mod_policy),
    }
}

/// Where a config group sits in the channel tree: decides how its values and sub-groups decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Channel,
    Orderer,
    OrdererOrg,
    Application,
    ApplicationOrg,
    Consortiums,
    Consortium,
    ConsortiumOrg,
    /// A group configtxlator does not know: its values stay bytes.
    Unknown,
}

impl Group {
    fn child(self, key: &str) -> Group {
        match (self, key) {
            (Group::Channel, "Orderer") => Group::Orderer,
            (Group::Channel, "Application") => Group::Application,
            (Group::Channel, "Consortiums") => Group::Consortiums,
            (Group::Orderer, _) => Group::OrdererOrg,
            (Group::Application, _) => Group::ApplicationOrg,
            (Group::Consortiums, _) => Group::Consortium,
            (Group::Consortium, _) => Group::ConsortiumOrg,
            _ => Group::Unknown,
        }
    }
}

fn config_group(r: Rendering, g: &common::ConfigGroup, kind: Group) -> Value {
    obj! {
        "version" => uint64(g.version),
        "groups" => sorted_map(&g.groups, |key, child| config_group(r, child, kind.child(key))),
        "values" => sorted_map(&g.values, |key, value| config_value(r, value, kind, key)),
        "policies" => sorted_map(&g.policies, |_, p| config_policy(r, p)),
        "mod_policy" => string(&g.mod_policy),
    }
}

fn config_value(r: Rendering, v: &common::ConfigValue, kind: Group, key: &str) -> Value {
    obj! {
        "version" => uint64(v.version),
        "value" => config_value_value(r, &v.value, kind, key),
        "mod_policy" => string(&v.mod_policy),
    }
}

/// Every value v3.1's configtxlator decodes (a superset of v2.5's, which lacks `Orderers`), by group and key.
fn config_value_value(r: Rendering, value: &Bytes, kind: Group, key: &str) -> Value {
    match (kind, key) {
        (Group::Channel, "HashingAlgorithm") => opaque(value, |m: &common::HashingAlgorithm| {
            obj! { "name" => string(&m.name) }
        }),
        (Group::Channel, "BlockDataHashingStructure") => opaque(
            value,
            |m: &common::BlockDataHashingStructure| obj! { "width" => Value::from(m.width) },
        ),
        (Group::Channel, "OrdererAddresses") | (Group::OrdererOrg, "Endpoints") => opaque(
            value,
            |m: &common::OrdererAddresses| obj! { "addresses" => strings(&m.addresses) },
        ),
        (Group::Channel, "Consortium") => opaque(
            value,
            |m: &common::Consortium| obj! { "name" => string(&m.name) },
        ),
        (Group::Channel | Group::Orderer | Group::Application, "Capabilities") => {
            opaque(value, capabilities)
        }
        (Group::Orderer, "ConsensusType") => opaque(value, |c| consensus_type(r, c)),
        (Group::Orderer, "BatchSize") => opaque(value, |m: &orderer::BatchSize| {
            obj! {
                "max_message_count" => Value::from(m.max_message_count),
                "absolute_max_bytes" => Value::from(m.absolute_max_bytes),
                "preferred_max_bytes" => Value::from(m.preferred_max_bytes),
            }
        }),
        (Group::Orderer, "BatchTimeout") => opaque(
            value,
            |m: &orderer::BatchTimeout| obj! { "timeout" => string(&m.timeout) },
        ),
        (Group::Orderer, "KafkaBrokers") => opaque(
            value,
            |m: &orderer::KafkaBrokers| obj! { "brokers" => strings(&m.brokers) },
        ),
        (Group::Orderer, "ChannelRestrictions") => opaque(
            value,
            |m: &orderer::ChannelRestrictions| obj! { "max_count" => uint64(m.max_count) },
        ),
        (Group::Orderer, "Orderers") => opaque(value, |o| orderers(r, o)),
        (Group::OrdererOrg | Group::ApplicationOrg | Group::ConsortiumOrg, "MSP") => {
            opaque(value, |c| msp_config(r, c))
        }
        (Group::Application, "ACLs") => opaque(value, acls),
        (Group::ApplicationOrg, "AnchorPeers") => opaque(value, anchor_peers),
        (Group::Consortium, "ChannelCreationPolicy") => opaque(value, |p| policy(r, p)),
        _ => undecodable(value),
    }
}

fn config_policy(r: Rendering, p: &common::ConfigPolicy) -> Value {
    obj! {
        "version" => uint64(p.version),
        "policy" => option(&p.policy, |p| policy(r, p)),
        "mod_policy" => string(&p.mod_policy),
    }
}

fn policy(r: Rendering, p: &common::Policy) -> Value {
    use common::policy::PolicyType as T;
    let value = match T::try_from(p.r#type) {
        Ok(T::Signature) => opaque(&p.value, |e| signature_policy_envelope(r, e)),
        Ok(T::ImplicitMeta) => opaque(&p.value, implicit_meta_policy),
        _ => undecodable(&p.value),
    };
    obj! {
        "type" => Value::from(p.r#type),
        "value" => value,
    }
}

fn signature_policy_envelope(r: Rendering, e: &common::SignaturePolicyEnvelope) -> Value {
    obj! {
        "version" => Value::from(e.version),
        "rule" => option(&e.rule, signature_policy),
        "identities" => list(&e.identities, |p| msp_principal(r, p)),
    }
}

fn signature_policy(p: &common::SignaturePolicy) -> Value {
    use common::signature_policy::Type;
    let mut map = Map::with_capacity(1);
    match &p.r#type {
        Some(Type::SignedBy(n)) => {
            map.insert("signed_by".to_owned(), Value::from(*n));
        }
        Some(Type::NOutOf(n_out_of)) => {
            map.insert(
                "n_out_of".to_owned(),
                obj! {
                    "n" => Value::from(n_out_of.n),
                    "rules" => list(&n_out_of.rules, signature_policy),
                },
            );
        }
        None => {}
    }
    Value::Object(map)
}

fn implicit_meta_policy(p: &common::ImplicitMetaPolicy) -> Value {
    obj! {
        "sub_policy" => string(&p.sub_policy),
        "rule" => enumeration(p.rule, |v| common::implicit_meta_policy::Rule::try_from(v).ok().map(|e| e.as_str_name())),
    }
}

fn msp_principal(r: Rendering, p: &common::MspPrincipal) -> Value {
    use common::msp_principal::Classification as C;
    let principal = match C::try_from(p.principal_classification) {
        Ok(C::Role) => opaque(&p.principal, |role: &common::MspRole| {
            obj! {
                "msp_identifier" => string(&role.msp_identifier),
                "role" => enumeration(role.role, |v| common::msp_role::MspRoleType::try_from(v).ok().map(|e| e.as_str_name())),
            }
        }),
        Ok(C::OrganizationUnit) => opaque(&p.principal, |ou: &common::OrganizationUnit| {
            obj! {
                "msp_identifier" => string(&ou.msp_identifier),
                "organizational_unit_identifier" => string(&ou.organizational_unit_identifier),
                "certifiers_identifier" => bytes(r, &ou.certifiers_identifier),
            }
        }),
        Ok(C::Identity) => opaque(&p.principal, |id| serialized_identity(r, id)),
        _ => undecodable(&p.principal),
    };
    obj! {
        "principal_classification" => enumeration(p.principal_classification, |v| C::try_from(v).ok().map(|e| e.as_str_name())),
        "principal" => principal,
    }
}

fn capabilities(c: &common::Capabilities) -> Value {
    obj! { "capabilities" => sorted_map(&c.capabilities, |_, _| Value::Object(Map::new())) }
}

/// The BFT consenter mapping (`/Channel/Orderer/Orderers`, Fabric v3).
fn orderers(r: Rendering, o: &common::Orderers) -> Value {
    obj! {
        "consenter_mapping" => list(&o.consenter_mapping, |c: &common::Consenter| obj! {
            "id" => Value::from(c.id),
            "host" => string(&c.host),
            "port" => Value::from(c.port),
            "msp_id" => string(&c.msp_id),
            "identity" => bytes(r, &c.identity),
            "client_tls_cert" => bytes(r, &c.client_tls_cert),
            "server_tls_cert" => bytes(r, &c.server_tls_cert),
        }),
    }
}

// ---- msp ----------------------------------------------------------------------------------------------

fn msp_config(r: Rendering, c: &msp::MspConfig) -> Value {
    let config = match c.r#type {
        0 => opaque(&c.config, |f| fabric_msp_config(r, f)),
        1 => opaque(&c.config, |i| idemix_msp_config(r, i)),
        _ => undecodable(&c.config),
    };
    obj! {
        "type" => Value::from(c.r#type),
        "config" => config,
    }
}

fn fabric_msp_config(r: Rendering, c: &msp::FabricMspConfig) -> Value {
    obj! {
        "name" => string(&c.name),
        "root_certs" => bytes_list(&c.root_certs),
        "intermediate_certs" => bytes_list(&c.intermediate_certs),
        "admins" => bytes_list(&c.admins),
        "revocation_list" => bytes_list(&c.revocation_list),
        "signing_identity" => option(&c.signing_identity, |s: &msp::SigningIdentityInfo| obj! {
            "public_signer" => bytes(r, &s.public_signer),
            "private_signer" => option(&s.private_signer, |k: &msp::KeyInfo| obj! {
                "key_identifier" => string(&k.key_identifier),
                "key_material" => bytes(r, &k.key_material),
            }),
        }),
        "organizational_unit_identifiers" => list(&c.organizational_unit_identifiers, |o| fabric_ou_identifier(r, o)),
        "crypto_config" => option(&c.crypto_config, |cc: &msp::FabricCryptoConfig| obj! {
            "signature_hash_family" => string(&cc.signature_hash_family),
            "identity_identifier_hash_function" => string(&cc.identity_identifier_hash_function),
        }),
        "tls_root_certs" => bytes_list(&c.tls_root_certs),
        "tls_intermediate_certs" => bytes_list(&c.tls_intermediate_certs),
        "fabric_node_ous" => option(&c.fabric_node_ous, |n: &msp::FabricNodeOUs| obj! {
            "enable" => Value::Bool(n.enable),
            "client_ou_identifier" => option(&n.client_ou_identifier, |o| fabric_ou_identifier(r, o)),
            "peer_ou_identifier" => option(&n.peer_ou_identifier, |o| fabric_ou_identifier(r, o)),
            "admin_ou_identifier" => option(&n.admin_ou_identifier, |o| fabric_ou_identifier(r, o)),
            "orderer_ou_identifier" => option(&n.orderer_ou_identifier, |o| fabric_ou_identifier(r, o)),
        }),
    }
}

fn fabric_ou_identifier(r: Rendering, o: &msp::FabricOuIdentifier) -> Value {
    obj! {
        "certificate" => bytes(r, &o.certificate),
        "organizational_unit_identifier" => string(&o.organizational_unit_identifier),
    }
}

fn idemix_msp_config(r: Rendering, c: &msp::IdemixMspConfig) -> Value {
    obj! {
        "name" => string(&c.name),
        "ipk" => bytes(r, &c.ipk),
        "signer" => option(&c.signer, |s: &msp::IdemixMspSignerConfig| obj! {
            "cred" => bytes(r, &s.cred),
            "sk" => bytes(r, &s.sk),
            "organizational_unit_identifier" => string(&s.organizational_unit_identifier),
            "role" => Value::from(s.role),
            "enrollment_id" => string(&s.enrollment_id),
            "credential_revocation_information" => bytes(r, &s.credential_revocation_information),
        }),
        "revocation_pk" => bytes(r, &c.revocation_pk),
        "epoch" => int64(c.epoch),
    }
}

// ---- orderer ------------------------------------------------------------------------------------------

/// The consensus type's metadata is opaque and chosen by type, as in configtxlator: `etcdraft` ->
/// `etcdraft.ConfigMetadata`, `BFT` -> `orderer.smartbft.Options`, anything else -> `google.protobuf.Empty`.
fn consensus_type(r: Rendering, c: &orderer::ConsensusType) -> Value {
    let metadata = match c.r#type.as_str() {
        "etcdraft" => opaque(&c.metadata, |m| etcdraft_metadata(r, m)),
        "BFT" => opaque(&c.metadata, smartbft_options),
        _ if c.metadata.is_empty() => Value::Null,
        _ => Value::Object(Map::new()),
    };
    obj! {
        "type" => string(&c.r#type),
        "metadata" => metadata,
        "state" => enumeration(c.state, |v| orderer::consensus_type::State::try_from(v).ok().map(|e| e.as_str_name())),
    }
}

fn etcdraft_metadata(r: Rendering, m: &etcdraft::ConfigMetadata) -> Value {
    obj! {
        "consenters" => list(&m.consenters, |c: &etcdraft::Consenter| obj! {
            "host" => string(&c.host),
            "port" => Value::from(c.port),
            "client_tls_cert" => bytes(r, &c.client_tls_cert),
            "server_tls_cert" => bytes(r, &c.server_tls_cert),
        }),
        "options" => option(&m.options, |o: &etcdraft::Options| obj! {
            "tick_interval" => string(&o.tick_interval),
            "election_tick" => Value::from(o.election_tick),
            "heartbeat_tick" => Value::from(o.heartbeat_tick),
            "max_inflight_blocks" => Value::from(o.max_inflight_blocks),
            "snapshot_interval_size" => Value::from(o.snapshot_interval_size),
        }),
    }
}

fn smartbft_options(o: &orderer::smartbft::Options) -> Value {
    use orderer::smartbft::options::Rotation;
    obj! {
        "request_batch_max_count" => uint64(o.request_batch_max_count),
        "request_batch_max_bytes" => uint64(o.request_batch_max_bytes),
        "request_batch_max_interval" => string(&o.request_batch_max_interval),
        "incoming_message_buffer_size" => uint64(o.incoming_message_buffer_size),
        "request_pool_size" => uint64(o.request_pool_size),
        "request_forward_timeout" => string(&o.request_forward_timeout),
        "request_complain_timeout" => string(&o.request_complain_timeout),
        "request_auto_remove_timeout" => string(&o.request_auto_remove_timeout),
        "request_max_bytes" => uint64(o.request_max_bytes),
        "view_change_resend_interval" => string(&o.view_change_resend_interval),
        "view_change_timeout" => string(&o.view_change_timeout),
        "leader_heartbeat_timeout" => string(&o.leader_heartbeat_timeout),
        "leader_heartbeat_count" => uint64(o.leader_heartbeat_count),
        "collect_timeout" => string(&o.collect_timeout),
        "sync_on_start" => Value::Bool(o.sync_on_start),
        "speed_up_view_change" => Value::Bool(o.speed_up_view_change),
        "leader_rotation" => enumeration(o.leader_rotation, |v| Rotation::try_from(v).ok().map(|e| e.as_str_name())),
        "decisions_per_leader" => uint64(o.decisions_per_leader),
    }
}

// ---- peer ---------------------------------------------------------------------------------------------

fn acls(a: &protos::AcLs) -> Value {
    obj! {
        "acls" => sorted_map(&a.acls, |_, res: &protos::ApiResource| obj! { "policy_ref" => string(&res.policy_ref) }),
    }
}

fn anchor_peers(a: &protos::AnchorPeers) -> Value {
    obj! {
        "anchor_peers" => list(&a.anchor_peers, |p: &protos::AnchorPeer| obj! {
            "host" => string(&p.host),
            "port" => Value::from(p.port),
        }),
    }
}

fn chaincode_header_extension(e: &protos::ChaincodeHeaderExtension) -> Value {
    obj! {
        "chaincode_id" => option(&e.chaincode_id, chaincode_id),
    }
}

fn chaincode_id(id: &protos::ChaincodeId) -> Value {
    obj! {
        "path" => string(&id.path),
        "name" => string(&id.name),
        "version" => string(&id.version),
    }
}

fn transaction(r: Rendering, t: &protos::Transaction) -> Value {
    obj! { "actions" => list(&t.actions, |a| transaction_action(r, a)) }
}

fn transaction_action(r: Rendering, a: &protos::TransactionAction) -> Value {
    obj! {
        "header" => opaque(&a.header, |sh| signature_header(r, sh)),
        "payload" => opaque(&a.payload, |p| chaincode_action_payload(r, p)),
    }
}

fn chaincode_action_payload(r: Rendering, p: &protos::ChaincodeActionPayload) -> Value {
    obj! {
        "chaincode_proposal_payload" => opaque(&p.chaincode_proposal_payload, chaincode_proposal_payload),
        "action" => option(&p.action, |a| chaincode_endorsed_action(r, a)),
    }
}

fn chaincode_proposal_payload(p: &protos::ChaincodeProposalPayload) -> Value {
    obj! {
        "input" => opaque(&p.input, |i: &protos::ChaincodeInvocationSpec| obj! {
            "chaincode_spec" => option(&i.chaincode_spec, chaincode_spec),
        }),
        "TransientMap" => bytes_map(&p.transient_map),
    }
}

fn chaincode_spec(s: &protos::ChaincodeSpec) -> Value {
    obj! {
        "type" => enumeration(s.r#type, |v| protos::chaincode_spec::Type::try_from(v).ok().map(|e| e.as_str_name())),
        "chaincode_id" => option(&s.chaincode_id, chaincode_id),
        "input" => option(&s.input, |i: &protos::ChaincodeInput| obj! {
            "args" => bytes_list(&i.args),
            "decorations" => bytes_map(&i.decorations),
            "is_init" => Value::Bool(i.is_init),
        }),
        "timeout" => Value::from(s.timeout),
    }
}

fn chaincode_endorsed_action(r: Rendering, a: &protos::ChaincodeEndorsedAction) -> Value {
    obj! {
        "proposal_response_payload" => opaque(&a.proposal_response_payload, |p: &protos::ProposalResponsePayload| obj! {
            "proposal_hash" => bytes(r, &p.proposal_hash),
            "extension" => opaque(&p.extension, |a| chaincode_action(r, a)),
        }),
        "endorsements" => list(&a.endorsements, |e: &protos::Endorsement| obj! {
            "endorser" => bytes(r, &e.endorser),
            "signature" => bytes(r, &e.signature),
        }),
    }
}

fn chaincode_action(r: Rendering, a: &protos::ChaincodeAction) -> Value {
    obj! {
        "results" => opaque(&a.results, |s| tx_read_write_set(r, s)),
        "events" => opaque(&a.events, |e| chaincode_event(r, e)),
        "response" => option(&a.response, |res: &protos::Response| obj! {
            "status" => Value::from(res.status),
            "message" => string(&res.message),
            "payload" => bytes(r, &res.payload),
        }),
        "chaincode_id" => option(&a.chaincode_id, chaincode_id),
    }
}

fn chaincode_event(r: Rendering, e: &protos::ChaincodeEvent) -> Value {
    obj! {
        "chaincode_id" => string(&e.chaincode_id),
        "tx_id" => string(&e.tx_id),
        "event_name" => string(&e.event_name),
        "payload" => bytes(r, &e.payload),
    }
}

// ---- ledger -------------------------------------------------------------------------------------------

fn tx_read_write_set(r: Rendering, s: &rwset::TxReadWriteSet) -> Value {
    // configtxlator only knows how to open the KV data model.
    let kv = s.data_model == rwset::tx_read_write_set::DataModel::Kv as i32;
    obj! {
        "data_model" => enumeration(s.data_model, |v| rwset::tx_read_write_set::DataModel::try_from(v).ok().map(|e| e.as_str_name())),
        "ns_rwset" => list(&s.ns_rwset, |ns| ns_read_write_set(r, ns, kv)),
    }
}

fn ns_read_write_set(r: Rendering, ns: &rwset::NsReadWriteSet, kv: bool) -> Value {
    obj! {
        "namespace" => string(&ns.namespace),
        "rwset" => if kv { opaque(&ns.rwset, |s| kv_rw_set(r, s)) } else { bytes(r, &ns.rwset) },
        "collection_hashed_rwset" => list(&ns.collection_hashed_rwset, |c: &rwset::CollectionHashedReadWriteSet| obj! {
            "collection_name" => string(&c.collection_name),
            "hashed_rwset" => bytes(r, &c.hashed_rwset),
            "pvt_rwset_hash" => bytes(r, &c.pvt_rwset_hash),
        }),
    }
}

fn kv_rw_set(r: Rendering, s: &kvrwset::KvrwSet) -> Value {
    obj! {
        "reads" => list(&s.reads, kv_read),
        "range_queries_info" => list(&s.range_queries_info, range_query_info),
        "writes" => list(&s.writes, |w: &kvrwset::KvWrite| obj! {
            "key" => string(&w.key),
            "is_delete" => Value::Bool(w.is_delete),
            "value" => bytes(r, &w.value),
        }),
        "metadata_writes" => list(&s.metadata_writes, |m: &kvrwset::KvMetadataWrite| obj! {
            "key" => string(&m.key),
            "entries" => list(&m.entries, |e| kv_metadata_entry(r, e)),
        }),
    }
}

fn kv_read(read: &kvrwset::KvRead) -> Value {
    obj! {
        "key" => string(&read.key),
        "version" => option(&read.version, version),
    }
}

fn version(v: &kvrwset::Version) -> Value {
    obj! {
        "block_num" => uint64(v.block_num),
        "tx_num" => uint64(v.tx_num),
    }
}

fn kv_metadata_entry(r: Rendering, e: &kvrwset::KvMetadataEntry) -> Value {
    obj! {
        "name" => string(&e.name),
        "value" => bytes(r, &e.value),
    }
}

fn range_query_info(r: &kvrwset::RangeQueryInfo) -> Value {
    use kvrwset::range_query_info::ReadsInfo;
    let mut map = Map::with_capacity(4);
    map.insert("start_key".to_owned(), string(&r.start_key));
    map.insert("end_key".to_owned(), string(&r.end_key));
    map.insert("itr_exhausted".to_owned(), Value::Bool(r.itr_exhausted));
    // jsonpb prints only the member of a oneof that is set.
    match &r.reads_info {
        Some(ReadsInfo::RawReads(q)) => {
            map.insert(
                "raw_reads".to_owned(),
                obj! { "kv_reads" => list(&q.kv_reads, kv_read) },
            );
        }
        Some(ReadsInfo::ReadsMerkleHashes(m)) => {
            map.insert(
                "reads_merkle_hashes".to_owned(),
                obj! {
                    "max_degree" => Value::from(m.max_degree),
                    "max_level" => Value::from(m.max_level),
                    "max_level_hashes" => bytes_list(&m.max_level_hashes),
                },
            );
        }
        None => {}
    }
    Value::Object(map)
}

// ---- scalars ------------------------------------------------------------------------------------------

/// Bytes that should hold an `M`: its JSON, `null` when empty, base64 when they do not parse.
fn opaque<M: Message + Default>(raw: &Bytes, to_json: impl FnOnce(&M) -> Value) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    match M::decode(raw.clone()) {
        Ok(message) => to_json(&message),
        Err(_) => base64(raw),
    }
}

fn option<M>(message: &Option<M>, to_json: impl FnOnce(&M) -> Value) -> Value {
    message.as_ref().map_or(Value::Null, to_json)
}

fn list<M>(items: &[M], to_json: impl Fn(&M) -> Value) -> Value {
    Value::Array(items.iter().map(to_json).collect())
}

/// Go encodes maps with sorted keys; doing the same keeps the output stable from run to run.
fn sorted_map<M>(map: &HashMap<String, M>, to_json: impl Fn(&str, &M) -> Value) -> Value {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Map::with_capacity(entries.len());
    for (key, value) in entries {
        out.insert(key.clone(), to_json(key, value));
    }
    Value::Object(out)
}

/// A singular bytes field that holds no message: empty prints as the rendering says.
fn bytes(r: Rendering, raw: &Bytes) -> Value {
    if raw.is_empty() {
        r.empty_bytes()
    } else {
        base64(raw)
    }
}

/// An opaque field whose message configtxlator cannot tell (an unknown config key, policy type, ...): `null`
/// when empty, as every opaque field, else the bytes as base64 where configtxlator would give up.
fn undecodable(raw: &Bytes) -> Value {
    if raw.is_empty() {
        Value::Null
    } else {
        base64(raw)
    }
}

fn base64(raw: &[u8]) -> Value {
    Value::String(BASE64.encode(raw))
}

/// Repeated bytes and map values keep empty entries as `""`.
fn bytes_list(items: &[Bytes]) -> Value {
    Value::Array(items.iter().map(|b| base64(b)).collect())
}

fn bytes_map(map: &HashMap<String, Bytes>) -> Value {
    sorted_map(map, |_, b| base64(b))
}

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| string(s)).collect())
}

fn uint64(v: u64) -> Value {
    Value::String(v.to_string())
}

fn int64(v: i64) -> Value {
    Value::String(v.to_string())
}

fn enumeration(value: i32, name: impl Fn(i32) -> Option<&'static str>) -> Value {
    match name(value) {
        Some(name) => Value::String(name.to_owned()),
        None => Value::from(value),
    }
}

fn timestamp(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        Some(t) => Value::String(t.to_string()),
        None => Value::Null,
    }
}

// ---- envelopes ------------------------------------------------------------------------------------------

const PLATFORM: &str = "Fabric";

/// A reference event: what `super::Event` held.
pub struct Event {
    pub event_type: EventType,
    pub id: String,
    pub block_number: u64,
    pub valid_transaction: bool,
    pub envelope: Value,
}

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

fn event_envelope(
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
        envelope: event_envelope(
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
        envelope: event_envelope(
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
        .map(|u| config_update(u, options.rendering).to_string())
        .unwrap_or_default();
    let content = transaction_object(tx, "", input, Value::Null, options.rendering);
    Event {
        event_type: EventType::Config,
        envelope: event_envelope(
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
    map.insert("data".into(), payload_bytes(&tx.payload, rendering));
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
                envelope: event_envelope(
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
