//! Fabric messages -> JSON exactly as Fabric's configtxlator (its `protolator` package) prints them, in either
//! [`Rendering`], written once against [`Out`] (see [`super::json`]): as JSON text straight from the decoded
//! protobuf (what is pushed; no `Value` tree in between), or as a `serde_json::Value` (what filters read).
//!
//! The rules, from protolator over Go's protobuf JSON (`jsonpb` in v2.5, `protojson` in v3; proto names,
//! defaults emitted):
//! - proto field names; every field is present, with its default when unset;
//! - int32/uint32 as numbers, int64/uint64 as strings, enums by name (a number when the value has no name);
//! - bytes as standard base64. A singular bytes field that is empty prints as the rendering says
//!   ([`Rendering::empty_bytes`]: `null` in v2.5, `""` in v3); an empty element of a repeated bytes field or an
//!   empty map value is `""` in both;
//! - an absent message is `null`, an empty list `[]`, an empty map `{}`;
//! - `google.protobuf.Timestamp` as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits;
//! - bytes that hold a nested message ("opaque" fields) are replaced by that message's JSON, chosen by context:
//!   a `Payload.data` by its channel header type, a `ConfigValue.value` by its key and group path, a
//!   `ConsensusType.metadata` by consensus type (`etcdraft`, `BFT`), a `Policy.value` by policy type, an
//!   `MSPPrincipal.principal` by classification, and so on. An empty opaque field is `null` in both renderings
//!   (protolator skips it before choosing its message).
//!
//! Where configtxlator refuses to decode (an unknown config value key, an unknown policy type, bytes that do
//! not parse as the expected message) this module prints the bytes as base64, as plain protobuf JSON would, so
//! an event is never lost over a field nobody reads. One configtxlator quirk is mirrored on purpose:
//! `collection_hashed_rwset[].hashed_rwset` stays base64, because protolator registers that field under the
//! name `rwset` and so never decodes it.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;

use super::Rendering;
use super::json::{Out, obj, to_text, to_value};
use crate::fabric::proto::{common, etcdraft, kvrwset, msp, orderer, protos, rwset};

/// Envelopes can nest inside payloads (orderer transactions, a config's last update): beyond this depth the
/// bytes stay base64, so a crafted block cannot exhaust the stack.
const MAX_ENVELOPE_DEPTH: u8 = 16;

/// The JSON of a serialized `common.Payload` (what configtxlator prints for `data.data[i].payload`), as a value.
pub fn payload_bytes(bytes: &Bytes, r: Rendering) -> Value {
    to_value(|o| write_payload_bytes(o, bytes, r))
}

/// [`payload_bytes`] as JSON text, appended to `out`.
pub fn payload_text(bytes: &Bytes, r: Rendering, out: &mut Vec<u8>) {
    to_text(out, |o| write_payload_bytes(o, bytes, r));
}

/// [`payload_bytes`] written to `o`.
pub(crate) fn write_payload_bytes<O: Out>(o: &mut O, bytes: &Bytes, r: Rendering) {
    opaque(o, bytes, |o, p| payload(o, r, p, 0));
}

/// The JSON of a `common.ConfigUpdate` (channel groups decoded by path, as in a config transaction).
pub fn config_update(u: &common::ConfigUpdate, r: Rendering) -> Value {
    to_value(|o| write_config_update(o, u, r))
}

/// [`config_update`] written to `o`.
pub(crate) fn write_config_update<O: Out>(o: &mut O, u: &common::ConfigUpdate, r: Rendering) {
    obj!(o {
        "channel_id" => o.str(&u.channel_id),
        "read_set" => option(o, &u.read_set, |o, g| config_group(o, r, g, Group::Channel)),
        "write_set" => option(o, &u.write_set, |o, g| config_group(o, r, g, Group::Channel)),
        // No isolated data type is registered with configtxlator: the values stay bytes.
        "isolated_data" => bytes_map(o, &u.isolated_data),
    });
}

/// The JSON of a `common.Payload` found `depth` envelopes deep.
fn payload<O: Out>(o: &mut O, r: Rendering, p: &common::Payload, depth: u8) {
    obj!(o {
        "header" => option(o, &p.header, |o, h| header(o, r, h)),
        "data" => if p.data.is_empty() {
            o.null();
        } else {
            match p
                .header
                .as_ref()
                .and_then(|h| common::ChannelHeader::decode(h.channel_header.clone()).ok())
            {
                Some(ch) => payload_data(o, r, ch.r#type, &p.data, depth),
                None => o.base64(&p.data),
            }
        },
    });
}

fn payload_data<O: Out>(o: &mut O, r: Rendering, header_type: i32, data: &Bytes, depth: u8) {
    use common::HeaderType as H;
    if depth >= MAX_ENVELOPE_DEPTH {
        return o.base64(data);
    }
    match H::try_from(header_type) {
        Ok(H::Config) => opaque(o, data, |o, c| config_envelope(o, r, c, depth)),
        Ok(H::OrdererTransaction) => opaque(o, data, |o, e| envelope(o, r, e, depth + 1)),
        Ok(H::ConfigUpdate) => opaque(o, data, |o, e| config_update_envelope(o, r, e)),
        Ok(H::Message) => opaque(o, data, |o, v| plain_config_value(o, r, v)),
        Ok(H::EndorserTransaction) => opaque(o, data, |o, t| transaction(o, r, t)),
        _ => o.base64(data),
    }
}

// ---- common -------------------------------------------------------------------------------------------

fn envelope<O: Out>(o: &mut O, r: Rendering, e: &common::Envelope, depth: u8) {
    obj!(o {
        "payload" => opaque(o, &e.payload, |o, p| payload(o, r, p, depth)),
        "signature" => bytes(o, r, &e.signature),
    });
}

fn header<O: Out>(o: &mut O, r: Rendering, h: &common::Header) {
    obj!(o {
        "channel_header" => opaque(o, &h.channel_header, |o, ch| channel_header(o, r, ch)),
        "signature_header" => opaque(o, &h.signature_header, |o, sh| signature_header(o, r, sh)),
    });
}

fn channel_header<O: Out>(o: &mut O, r: Rendering, ch: &common::ChannelHeader) {
    obj!(o {
        "type" => o.i64(ch.r#type.into()),
        "version" => o.i64(ch.version.into()),
        "timestamp" => timestamp(o, &ch.timestamp),
        "channel_id" => o.str(&ch.channel_id),
        "tx_id" => o.str(&ch.tx_id),
        "epoch" => uint64(o, ch.epoch),
        // Opaque for every header type; configtxlator only knows the endorser transactions' extension.
        "extension" => if ch.r#type == common::HeaderType::EndorserTransaction as i32 {
            opaque(o, &ch.extension, chaincode_header_extension)
        } else {
            undecodable(o, &ch.extension)
        },
        "tls_cert_hash" => bytes(o, r, &ch.tls_cert_hash),
    });
}

fn signature_header<O: Out>(o: &mut O, r: Rendering, sh: &common::SignatureHeader) {
    obj!(o {
        "creator" => opaque(o, &sh.creator, |o, id| serialized_identity(o, r, id)),
        "nonce" => bytes(o, r, &sh.nonce),
    });
}

fn serialized_identity<O: Out>(o: &mut O, r: Rendering, id: &msp::SerializedIdentity) {
    obj!(o {
        "mspid" => o.str(&id.mspid),
        "id_bytes" => bytes(o, r, &id.id_bytes),
    });
}

fn config_envelope<O: Out>(o: &mut O, r: Rendering, ce: &common::ConfigEnvelope, depth: u8) {
    obj!(o {
        "config" => option(o, &ce.config, |o, c| config(o, r, c)),
        "last_update" => option(o, &ce.last_update, |o, e| envelope(o, r, e, depth + 1)),
    });
}

fn config<O: Out>(o: &mut O, r: Rendering, c: &common::Config) {
    obj!(o {
        "sequence" => uint64(o, c.sequence),
        "channel_group" => option(o, &c.channel_group, |o, g| config_group(o, r, g, Group::Channel)),
    });
}

fn config_update_envelope<O: Out>(o: &mut O, r: Rendering, cue: &common::ConfigUpdateEnvelope) {
    obj!(o {
        "config_update" => opaque(o, &cue.config_update, |o, u| write_config_update(o, u, r)),
        "signatures" => list(o, &cue.signatures, |o, s| config_signature(o, r, s)),
    });
}

fn config_signature<O: Out>(o: &mut O, r: Rendering, cs: &common::ConfigSignature) {
    obj!(o {
        "signature_header" => opaque(o, &cs.signature_header, |o, sh| signature_header(o, r, sh)),
        "signature" => bytes(o, r, &cs.signature),
    });
}

/// A `MESSAGE` payload holds a `ConfigValue` outside any group: its value stays bytes.
fn plain_config_value<O: Out>(o: &mut O, r: Rendering, v: &common::ConfigValue) {
    obj!(o {
        "version" => uint64(o, v.version),
        "value" => bytes(o, r, &v.value),
        "mod_policy" => o.str(&v.mod_policy),
    });
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

fn config_group<O: Out>(o: &mut O, r: Rendering, g: &common::ConfigGroup, kind: Group) {
    obj!(o {
        "version" => uint64(o, g.version),
        "groups" => sorted_map(o, &g.groups, |o, key, child| config_group(o, r, child, kind.child(key))),
        "values" => sorted_map(o, &g.values, |o, key, value| config_value(o, r, value, kind, key)),
        "policies" => sorted_map(o, &g.policies, |o, _, p| config_policy(o, r, p)),
        "mod_policy" => o.str(&g.mod_policy),
    });
}

fn config_value<O: Out>(o: &mut O, r: Rendering, v: &common::ConfigValue, kind: Group, key: &str) {
    obj!(o {
        "version" => uint64(o, v.version),
        "value" => config_value_value(o, r, &v.value, kind, key),
        "mod_policy" => o.str(&v.mod_policy),
    });
}

/// Every value v3.1's configtxlator decodes (a superset of v2.5's, which lacks `Orderers`), by group and key.
fn config_value_value<O: Out>(o: &mut O, r: Rendering, value: &Bytes, kind: Group, key: &str) {
    match (kind, key) {
        (Group::Channel, "HashingAlgorithm") => opaque(
            o,
            value,
            |o, m: &common::HashingAlgorithm| obj!(o { "name" => o.str(&m.name) }),
        ),
        (Group::Channel, "BlockDataHashingStructure") => opaque(
            o,
            value,
            |o, m: &common::BlockDataHashingStructure| obj!(o { "width" => o.u64(m.width.into()) }),
        ),
        (Group::Channel, "OrdererAddresses") | (Group::OrdererOrg, "Endpoints") => opaque(
            o,
            value,
            |o, m: &common::OrdererAddresses| obj!(o { "addresses" => strings(o, &m.addresses) }),
        ),
        (Group::Channel, "Consortium") => opaque(
            o,
            value,
            |o, m: &common::Consortium| obj!(o { "name" => o.str(&m.name) }),
        ),
        (Group::Channel | Group::Orderer | Group::Application, "Capabilities") => {
            opaque(o, value, capabilities)
        }
        (Group::Orderer, "ConsensusType") => opaque(o, value, |o, c| consensus_type(o, r, c)),
        (Group::Orderer, "BatchSize") => opaque(o, value, |o, m: &orderer::BatchSize| {
            obj!(o {
                "max_message_count" => o.u64(m.max_message_count.into()),
                "absolute_max_bytes" => o.u64(m.absolute_max_bytes.into()),
                "preferred_max_bytes" => o.u64(m.preferred_max_bytes.into()),
            })
        }),
        (Group::Orderer, "BatchTimeout") => opaque(
            o,
            value,
            |o, m: &orderer::BatchTimeout| obj!(o { "timeout" => o.str(&m.timeout) }),
        ),
        (Group::Orderer, "KafkaBrokers") => opaque(
            o,
            value,
            |o, m: &orderer::KafkaBrokers| obj!(o { "brokers" => strings(o, &m.brokers) }),
        ),
        (Group::Orderer, "ChannelRestrictions") => opaque(
            o,
            value,
            |o, m: &orderer::ChannelRestrictions| obj!(o { "max_count" => uint64(o, m.max_count) }),
        ),
        (Group::Orderer, "Orderers") => opaque(o, value, |o, os| orderers(o, r, os)),
        (Group::OrdererOrg | Group::ApplicationOrg | Group::ConsortiumOrg, "MSP") => {
            opaque(o, value, |o, c| msp_config(o, r, c))
        }
        (Group::Application, "ACLs") => opaque(o, value, acls),
        (Group::ApplicationOrg, "AnchorPeers") => opaque(o, value, anchor_peers),
        (Group::Consortium, "ChannelCreationPolicy") => opaque(o, value, |o, p| policy(o, r, p)),
        _ => undecodable(o, value),
    }
}

fn config_policy<O: Out>(o: &mut O, r: Rendering, p: &common::ConfigPolicy) {
    obj!(o {
        "version" => uint64(o, p.version),
        "policy" => option(o, &p.policy, |o, p| policy(o, r, p)),
        "mod_policy" => o.str(&p.mod_policy),
    });
}

fn policy<O: Out>(o: &mut O, r: Rendering, p: &common::Policy) {
    use common::policy::PolicyType as T;
    obj!(o {
        "type" => o.i64(p.r#type.into()),
        "value" => match T::try_from(p.r#type) {
            Ok(T::Signature) => opaque(o, &p.value, |o, e| signature_policy_envelope(o, r, e)),
            Ok(T::ImplicitMeta) => opaque(o, &p.value, implicit_meta_policy),
            _ => undecodable(o, &p.value),
        },
    });
}

fn signature_policy_envelope<O: Out>(o: &mut O, r: Rendering, e: &common::SignaturePolicyEnvelope) {
    obj!(o {
        "version" => o.i64(e.version.into()),
        "rule" => option(o, &e.rule, signature_policy),
        "identities" => list(o, &e.identities, |o, p| msp_principal(o, r, p)),
    });
}

fn signature_policy<O: Out>(o: &mut O, p: &common::SignaturePolicy) {
    use common::signature_policy::Type;
    o.begin_object();
    match &p.r#type {
        Some(Type::SignedBy(n)) => {
            o.key("signed_by");
            o.i64((*n).into());
        }
        Some(Type::NOutOf(n_out_of)) => {
            o.key("n_out_of");
            obj!(o {
                "n" => o.i64(n_out_of.n.into()),
                "rules" => list(o, &n_out_of.rules, signature_policy),
            });
        }
        None => {}
    }
    o.end_object();
}

fn implicit_meta_policy<O: Out>(o: &mut O, p: &common::ImplicitMetaPolicy) {
    obj!(o {
        "sub_policy" => o.str(&p.sub_policy),
        "rule" => enumeration(o, p.rule, |v| common::implicit_meta_policy::Rule::try_from(v).ok().map(|e| e.as_str_name())),
    });
}

fn msp_principal<O: Out>(o: &mut O, r: Rendering, p: &common::MspPrincipal) {
    use common::msp_principal::Classification as C;
    obj!(o {
        "principal_classification" => enumeration(o, p.principal_classification, |v| C::try_from(v).ok().map(|e| e.as_str_name())),
        "principal" => match C::try_from(p.principal_classification) {
            Ok(C::Role) => opaque(o, &p.principal, |o, role: &common::MspRole| {
                obj!(o {
                    "msp_identifier" => o.str(&role.msp_identifier),
                    "role" => enumeration(o, role.role, |v| common::msp_role::MspRoleType::try_from(v).ok().map(|e| e.as_str_name())),
                })
            }),
            Ok(C::OrganizationUnit) => opaque(o, &p.principal, |o, ou: &common::OrganizationUnit| {
                obj!(o {
                    "msp_identifier" => o.str(&ou.msp_identifier),
                    "organizational_unit_identifier" => o.str(&ou.organizational_unit_identifier),
                    "certifiers_identifier" => bytes(o, r, &ou.certifiers_identifier),
                })
            }),
            Ok(C::Identity) => opaque(o, &p.principal, |o, id| serialized_identity(o, r, id)),
            _ => undecodable(o, &p.principal),
        },
    });
}

fn capabilities<O: Out>(o: &mut O, c: &common::Capabilities) {
    obj!(o {
        "capabilities" => sorted_map(o, &c.capabilities, |o, _, _| {
            o.begin_object();
            o.end_object();
        }),
    });
}

/// The BFT consenter mapping (`/Channel/Orderer/Orderers`, Fabric v3).
fn orderers<O: Out>(o: &mut O, r: Rendering, os: &common::Orderers) {
    obj!(o {
        "consenter_mapping" => list(o, &os.consenter_mapping, |o, c: &common::Consenter| obj!(o {
            "id" => o.u64(c.id.into()),
            "host" => o.str(&c.host),
            "port" => o.u64(c.port.into()),
            "msp_id" => o.str(&c.msp_id),
            "identity" => bytes(o, r, &c.identity),
            "client_tls_cert" => bytes(o, r, &c.client_tls_cert),
            "server_tls_cert" => bytes(o, r, &c.server_tls_cert),
        })),
    });
}

// ---- msp ----------------------------------------------------------------------------------------------

fn msp_config<O: Out>(o: &mut O, r: Rendering, c: &msp::MspConfig) {
    obj!(o {
        "type" => o.i64(c.r#type.into()),
        "config" => match c.r#type {
            0 => opaque(o, &c.config, |o, f| fabric_msp_config(o, r, f)),
            1 => opaque(o, &c.config, |o, i| idemix_msp_config(o, r, i)),
            _ => undecodable(o, &c.config),
        },
    });
}

fn fabric_msp_config<O: Out>(o: &mut O, r: Rendering, c: &msp::FabricMspConfig) {
    obj!(o {
        "name" => o.str(&c.name),
        "root_certs" => bytes_list(o, &c.root_certs),
        "intermediate_certs" => bytes_list(o, &c.intermediate_certs),
        "admins" => bytes_list(o, &c.admins),
        "revocation_list" => bytes_list(o, &c.revocation_list),
        "signing_identity" => option(o, &c.signing_identity, |o, s: &msp::SigningIdentityInfo| obj!(o {
            "public_signer" => bytes(o, r, &s.public_signer),
            "private_signer" => option(o, &s.private_signer, |o, k: &msp::KeyInfo| obj!(o {
                "key_identifier" => o.str(&k.key_identifier),
                "key_material" => bytes(o, r, &k.key_material),
            })),
        })),
        "organizational_unit_identifiers" => list(o, &c.organizational_unit_identifiers, |o, ou| fabric_ou_identifier(o, r, ou)),
        "crypto_config" => option(o, &c.crypto_config, |o, cc: &msp::FabricCryptoConfig| obj!(o {
            "signature_hash_family" => o.str(&cc.signature_hash_family),
            "identity_identifier_hash_function" => o.str(&cc.identity_identifier_hash_function),
        })),
        "tls_root_certs" => bytes_list(o, &c.tls_root_certs),
        "tls_intermediate_certs" => bytes_list(o, &c.tls_intermediate_certs),
        "fabric_node_ous" => option(o, &c.fabric_node_ous, |o, n: &msp::FabricNodeOUs| obj!(o {
            "enable" => o.bool(n.enable),
            "client_ou_identifier" => option(o, &n.client_ou_identifier, |o, ou| fabric_ou_identifier(o, r, ou)),
            "peer_ou_identifier" => option(o, &n.peer_ou_identifier, |o, ou| fabric_ou_identifier(o, r, ou)),
            "admin_ou_identifier" => option(o, &n.admin_ou_identifier, |o, ou| fabric_ou_identifier(o, r, ou)),
            "orderer_ou_identifier" => option(o, &n.orderer_ou_identifier, |o, ou| fabric_ou_identifier(o, r, ou)),
        })),
    });
}

fn fabric_ou_identifier<O: Out>(o: &mut O, r: Rendering, ou: &msp::FabricOuIdentifier) {
    obj!(o {
        "certificate" => bytes(o, r, &ou.certificate),
        "organizational_unit_identifier" => o.str(&ou.organizational_unit_identifier),
    });
}

fn idemix_msp_config<O: Out>(o: &mut O, r: Rendering, c: &msp::IdemixMspConfig) {
    obj!(o {
        "name" => o.str(&c.name),
        "ipk" => bytes(o, r, &c.ipk),
        "signer" => option(o, &c.signer, |o, s: &msp::IdemixMspSignerConfig| obj!(o {
            "cred" => bytes(o, r, &s.cred),
            "sk" => bytes(o, r, &s.sk),
            "organizational_unit_identifier" => o.str(&s.organizational_unit_identifier),
            "role" => o.i64(s.role.into()),
            "enrollment_id" => o.str(&s.enrollment_id),
            "credential_revocation_information" => bytes(o, r, &s.credential_revocation_information),
        })),
        "revocation_pk" => bytes(o, r, &c.revocation_pk),
        "epoch" => int64(o, c.epoch),
    });
}

// ---- orderer ------------------------------------------------------------------------------------------

/// The consensus type's metadata is opaque and chosen by type, as in configtxlator: `etcdraft` ->
/// `etcdraft.ConfigMetadata`, `BFT` -> `orderer.smartbft.Options`, anything else -> `google.protobuf.Empty`.
fn consensus_type<O: Out>(o: &mut O, r: Rendering, c: &orderer::ConsensusType) {
    obj!(o {
        "type" => o.str(&c.r#type),
        "metadata" => match c.r#type.as_str() {
            "etcdraft" => opaque(o, &c.metadata, |o, m| etcdraft_metadata(o, r, m)),
            "BFT" => opaque(o, &c.metadata, smartbft_options),
            _ if c.metadata.is_empty() => o.null(),
            _ => {
                o.begin_object();
                o.end_object();
            }
        },
        "state" => enumeration(o, c.state, |v| orderer::consensus_type::State::try_from(v).ok().map(|e| e.as_str_name())),
    });
}

fn etcdraft_metadata<O: Out>(o: &mut O, r: Rendering, m: &etcdraft::ConfigMetadata) {
    obj!(o {
        "consenters" => list(o, &m.consenters, |o, c: &etcdraft::Consenter| obj!(o {
            "host" => o.str(&c.host),
            "port" => o.u64(c.port.into()),
            "client_tls_cert" => bytes(o, r, &c.client_tls_cert),
            "server_tls_cert" => bytes(o, r, &c.server_tls_cert),
        })),
        "options" => option(o, &m.options, |o, op: &etcdraft::Options| obj!(o {
            "tick_interval" => o.str(&op.tick_interval),
            "election_tick" => o.u64(op.election_tick.into()),
            "heartbeat_tick" => o.u64(op.heartbeat_tick.into()),
            "max_inflight_blocks" => o.u64(op.max_inflight_blocks.into()),
            "snapshot_interval_size" => o.u64(op.snapshot_interval_size.into()),
        })),
    });
}

fn smartbft_options<O: Out>(o: &mut O, op: &orderer::smartbft::Options) {
    use orderer::smartbft::options::Rotation;
    obj!(o {
        "request_batch_max_count" => uint64(o, op.request_batch_max_count),
        "request_batch_max_bytes" => uint64(o, op.request_batch_max_bytes),
        "request_batch_max_interval" => o.str(&op.request_batch_max_interval),
        "incoming_message_buffer_size" => uint64(o, op.incoming_message_buffer_size),
        "request_pool_size" => uint64(o, op.request_pool_size),
        "request_forward_timeout" => o.str(&op.request_forward_timeout),
        "request_complain_timeout" => o.str(&op.request_complain_timeout),
        "request_auto_remove_timeout" => o.str(&op.request_auto_remove_timeout),
        "request_max_bytes" => uint64(o, op.request_max_bytes),
        "view_change_resend_interval" => o.str(&op.view_change_resend_interval),
        "view_change_timeout" => o.str(&op.view_change_timeout),
        "leader_heartbeat_timeout" => o.str(&op.leader_heartbeat_timeout),
        "leader_heartbeat_count" => uint64(o, op.leader_heartbeat_count),
        "collect_timeout" => o.str(&op.collect_timeout),
        "sync_on_start" => o.bool(op.sync_on_start),
        "speed_up_view_change" => o.bool(op.speed_up_view_change),
        "leader_rotation" => enumeration(o, op.leader_rotation, |v| Rotation::try_from(v).ok().map(|e| e.as_str_name())),
        "decisions_per_leader" => uint64(o, op.decisions_per_leader),
    });
}

// ---- peer ---------------------------------------------------------------------------------------------

fn acls<O: Out>(o: &mut O, a: &protos::AcLs) {
    obj!(o {
        "acls" => sorted_map(o, &a.acls, |o, _, res: &protos::ApiResource| obj!(o { "policy_ref" => o.str(&res.policy_ref) })),
    });
}

fn anchor_peers<O: Out>(o: &mut O, a: &protos::AnchorPeers) {
    obj!(o {
        "anchor_peers" => list(o, &a.anchor_peers, |o, p: &protos::AnchorPeer| obj!(o {
            "host" => o.str(&p.host),
            "port" => o.i64(p.port.into()),
        })),
    });
}

fn chaincode_header_extension<O: Out>(o: &mut O, e: &protos::ChaincodeHeaderExtension) {
    obj!(o {
        "chaincode_id" => option(o, &e.chaincode_id, chaincode_id),
    });
}

fn chaincode_id<O: Out>(o: &mut O, id: &protos::ChaincodeId) {
    obj!(o {
        "path" => o.str(&id.path),
        "name" => o.str(&id.name),
        "version" => o.str(&id.version),
    });
}

fn transaction<O: Out>(o: &mut O, r: Rendering, t: &protos::Transaction) {
    obj!(o { "actions" => list(o, &t.actions, |o, a| transaction_action(o, r, a)) });
}

fn transaction_action<O: Out>(o: &mut O, r: Rendering, a: &protos::TransactionAction) {
    obj!(o {
        "header" => opaque(o, &a.header, |o, sh| signature_header(o, r, sh)),
        "payload" => opaque(o, &a.payload, |o, p| chaincode_action_payload(o, r, p)),
    });
}

fn chaincode_action_payload<O: Out>(o: &mut O, r: Rendering, p: &protos::ChaincodeActionPayload) {
    obj!(o {
        "chaincode_proposal_payload" => opaque(o, &p.chaincode_proposal_payload, chaincode_proposal_payload),
        "action" => option(o, &p.action, |o, a| chaincode_endorsed_action(o, r, a)),
    });
}

fn chaincode_proposal_payload<O: Out>(o: &mut O, p: &protos::ChaincodeProposalPayload) {
    obj!(o {
        "input" => opaque(o, &p.input, |o, i: &protos::ChaincodeInvocationSpec| obj!(o {
            "chaincode_spec" => option(o, &i.chaincode_spec, chaincode_spec),
        })),
        "TransientMap" => bytes_map(o, &p.transient_map),
    });
}

fn chaincode_spec<O: Out>(o: &mut O, s: &protos::ChaincodeSpec) {
    obj!(o {
        "type" => enumeration(o, s.r#type, |v| protos::chaincode_spec::Type::try_from(v).ok().map(|e| e.as_str_name())),
        "chaincode_id" => option(o, &s.chaincode_id, chaincode_id),
        "input" => option(o, &s.input, |o, i: &protos::ChaincodeInput| obj!(o {
            "args" => bytes_list(o, &i.args),
            "decorations" => bytes_map(o, &i.decorations),
            "is_init" => o.bool(i.is_init),
        })),
        "timeout" => o.i64(s.timeout.into()),
    });
}

fn chaincode_endorsed_action<O: Out>(o: &mut O, r: Rendering, a: &protos::ChaincodeEndorsedAction) {
    obj!(o {
        "proposal_response_payload" => opaque(o, &a.proposal_response_payload, |o, p: &protos::ProposalResponsePayload| obj!(o {
            "proposal_hash" => bytes(o, r, &p.proposal_hash),
            "extension" => opaque(o, &p.extension, |o, a| chaincode_action(o, r, a)),
        })),
        "endorsements" => list(o, &a.endorsements, |o, e: &protos::Endorsement| obj!(o {
            "endorser" => bytes(o, r, &e.endorser),
            "signature" => bytes(o, r, &e.signature),
        })),
    });
}

fn chaincode_action<O: Out>(o: &mut O, r: Rendering, a: &protos::ChaincodeAction) {
    obj!(o {
        "results" => opaque(o, &a.results, |o, s| tx_read_write_set(o, r, s)),
        "events" => opaque(o, &a.events, |o, e| chaincode_event(o, r, e)),
        "response" => option(o, &a.response, |o, res: &protos::Response| obj!(o {
            "status" => o.i64(res.status.into()),
            "message" => o.str(&res.message),
            "payload" => bytes(o, r, &res.payload),
        })),
        "chaincode_id" => option(o, &a.chaincode_id, chaincode_id),
    });
}

fn chaincode_event<O: Out>(o: &mut O, r: Rendering, e: &protos::ChaincodeEvent) {
    obj!(o {
        "chaincode_id" => o.str(&e.chaincode_id),
        "tx_id" => o.str(&e.tx_id),
        "event_name" => o.str(&e.event_name),
        "payload" => bytes(o, r, &e.payload),
    });
}

// ---- ledger -------------------------------------------------------------------------------------------

fn tx_read_write_set<O: Out>(o: &mut O, r: Rendering, s: &rwset::TxReadWriteSet) {
    // configtxlator only knows how to open the KV data model.
    let kv = s.data_model == rwset::tx_read_write_set::DataModel::Kv as i32;
    obj!(o {
        "data_model" => enumeration(o, s.data_model, |v| rwset::tx_read_write_set::DataModel::try_from(v).ok().map(|e| e.as_str_name())),
        "ns_rwset" => list(o, &s.ns_rwset, |o, ns| ns_read_write_set(o, r, ns, kv)),
    });
}

fn ns_read_write_set<O: Out>(o: &mut O, r: Rendering, ns: &rwset::NsReadWriteSet, kv: bool) {
    obj!(o {
        "namespace" => o.str(&ns.namespace),
        "rwset" => if kv { opaque(o, &ns.rwset, |o, s| kv_rw_set(o, r, s)) } else { bytes(o, r, &ns.rwset) },
        "collection_hashed_rwset" => list(o, &ns.collection_hashed_rwset, |o, c: &rwset::CollectionHashedReadWriteSet| obj!(o {
            "collection_name" => o.str(&c.collection_name),
            "hashed_rwset" => bytes(o, r, &c.hashed_rwset),
            "pvt_rwset_hash" => bytes(o, r, &c.pvt_rwset_hash),
        })),
    });
}

fn kv_rw_set<O: Out>(o: &mut O, r: Rendering, s: &kvrwset::KvrwSet) {
    obj!(o {
        "reads" => list(o, &s.reads, kv_read),
        "range_queries_info" => list(o, &s.range_queries_info, range_query_info),
        "writes" => list(o, &s.writes, |o, w: &kvrwset::KvWrite| obj!(o {
            "key" => o.str(&w.key),
            "is_delete" => o.bool(w.is_delete),
            "value" => bytes(o, r, &w.value),
        })),
        "metadata_writes" => list(o, &s.metadata_writes, |o, m: &kvrwset::KvMetadataWrite| obj!(o {
            "key" => o.str(&m.key),
            "entries" => list(o, &m.entries, |o, e| kv_metadata_entry(o, r, e)),
        })),
    });
}

fn kv_read<O: Out>(o: &mut O, read: &kvrwset::KvRead) {
    obj!(o {
        "key" => o.str(&read.key),
        "version" => option(o, &read.version, version),
    });
}

fn version<O: Out>(o: &mut O, v: &kvrwset::Version) {
    obj!(o {
        "block_num" => uint64(o, v.block_num),
        "tx_num" => uint64(o, v.tx_num),
    });
}

fn kv_metadata_entry<O: Out>(o: &mut O, r: Rendering, e: &kvrwset::KvMetadataEntry) {
    obj!(o {
        "name" => o.str(&e.name),
        "value" => bytes(o, r, &e.value),
    });
}

fn range_query_info<O: Out>(o: &mut O, q: &kvrwset::RangeQueryInfo) {
    use kvrwset::range_query_info::ReadsInfo;
    o.begin_object();
    o.key("start_key");
    o.str(&q.start_key);
    o.key("end_key");
    o.str(&q.end_key);
    o.key("itr_exhausted");
    o.bool(q.itr_exhausted);
    // jsonpb prints only the member of a oneof that is set.
    match &q.reads_info {
        Some(ReadsInfo::RawReads(reads)) => {
            o.key("raw_reads");
            obj!(o { "kv_reads" => list(o, &reads.kv_reads, kv_read) });
        }
        Some(ReadsInfo::ReadsMerkleHashes(m)) => {
            o.key("reads_merkle_hashes");
            obj!(o {
                "max_degree" => o.u64(m.max_degree.into()),
                "max_level" => o.u64(m.max_level.into()),
                "max_level_hashes" => bytes_list(o, &m.max_level_hashes),
            });
        }
        None => {}
    }
    o.end_object();
}

// ---- scalars ------------------------------------------------------------------------------------------

/// Bytes that should hold an `M`: its JSON, `null` when empty, base64 when they do not parse.
fn opaque<M: Message + Default, O: Out>(o: &mut O, raw: &Bytes, write: impl FnOnce(&mut O, &M)) {
    if raw.is_empty() {
        return o.null();
    }
    match M::decode(raw.clone()) {
        Ok(message) => write(o, &message),
        Err(_) => o.base64(raw),
    }
}

fn option<M, O: Out>(o: &mut O, message: &Option<M>, write: impl FnOnce(&mut O, &M)) {
    match message {
        Some(message) => write(o, message),
        None => o.null(),
    }
}

fn list<M, O: Out>(o: &mut O, items: &[M], write: impl Fn(&mut O, &M)) {
    o.begin_array();
    for item in items {
        write(o, item);
    }
    o.end_array();
}

/// Go encodes maps with sorted keys; doing the same keeps the output stable from run to run.
fn sorted_map<M, O: Out>(o: &mut O, map: &HashMap<String, M>, write: impl Fn(&mut O, &str, &M)) {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    o.begin_object();
    for (key, value) in entries {
        o.key(key);
        write(o, key, value);
    }
    o.end_object();
}

/// A singular bytes field that holds no message: empty prints as the rendering says.
fn bytes<O: Out>(o: &mut O, r: Rendering, raw: &Bytes) {
    if raw.is_empty() {
        o.empty_bytes(r);
    } else {
        o.base64(raw);
    }
}

/// An opaque field whose message configtxlator cannot tell (an unknown config key, policy type, ...): `null`
/// when empty, as every opaque field, else the bytes as base64 where configtxlator would give up.
fn undecodable<O: Out>(o: &mut O, raw: &Bytes) {
    if raw.is_empty() {
        o.null();
    } else {
        o.base64(raw);
    }
}

/// Repeated bytes and map values keep empty entries as `""`.
fn bytes_list<O: Out>(o: &mut O, items: &[Bytes]) {
    list(o, items, |o, b| o.base64(b));
}

fn bytes_map<O: Out>(o: &mut O, map: &HashMap<String, Bytes>) {
    sorted_map(o, map, |o, _, b| o.base64(b));
}

fn strings<O: Out>(o: &mut O, items: &[String]) {
    list(o, items, |o, s| o.str(s));
}

fn uint64<O: Out>(o: &mut O, v: u64) {
    o.display(&v);
}

fn int64<O: Out>(o: &mut O, v: i64) {
    o.display(&v);
}

fn enumeration<O: Out>(o: &mut O, value: i32, name: impl Fn(i32) -> Option<&'static str>) {
    match name(value) {
        Some(name) => o.str(name),
        None => o.i64(value.into()),
    }
}

fn timestamp<O: Out>(o: &mut O, t: &Option<prost_types::Timestamp>) {
    match t {
        Some(t) => o.display(t),
        None => o.null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::json::ValueOut;

    /// What `write` produces, as a value.
    fn json(write: impl FnOnce(&mut ValueOut)) -> Value {
        to_value(write)
    }

    #[test]
    fn empty_singular_bytes_follow_the_rendering_but_empty_list_entries_are_empty_strings() {
        assert_eq!(
            json(|o| bytes(o, Rendering::V2_5, &Bytes::new())),
            Value::Null
        );
        assert_eq!(json(|o| bytes(o, Rendering::V3, &Bytes::new())), "");
        for r in Rendering::ALL {
            assert_eq!(json(|o| bytes(o, r, &Bytes::from_static(b"\x01"))), "AQ==");
            assert_eq!(json(|o| undecodable(o, &Bytes::new())), Value::Null);
        }
        assert_eq!(
            json(|o| bytes_list(o, &[Bytes::new(), Bytes::from_static(b"\x01")])),
            serde_json::json!(["", "AQ=="])
        );
    }

    #[test]
    fn empty_opaque_fields_are_null_in_both_renderings() {
        let header = common::ChannelHeader {
            r#type: common::HeaderType::Config as i32,
            ..Default::default()
        };
        for r in Rendering::ALL {
            let json_header = json(|o| channel_header(o, r, &header));
            assert_eq!(json_header["extension"], Value::Null, "{r}");
            assert_eq!(json_header["tls_cert_hash"], r.empty_bytes(), "{r}");
            let value = json(|o| {
                config_value(
                    o,
                    r,
                    &common::ConfigValue::default(),
                    Group::Orderer,
                    "Unknown",
                )
            });
            assert_eq!(value["value"], Value::Null, "{r}");
        }
    }

    #[test]
    fn bft_metadata_decodes_as_smartbft_options() {
        let options = orderer::smartbft::Options {
            request_batch_max_interval: "500ms".into(),
            request_batch_max_count: 10,
            leader_rotation: 2,
            ..Default::default()
        };
        let consensus = orderer::ConsensusType {
            r#type: "BFT".into(),
            metadata: Bytes::from(options.encode_to_vec()),
            state: 0,
        };
        let json_consensus = json(|o| consensus_type(o, Rendering::V3, &consensus));
        assert_eq!(
            json_consensus["metadata"]["request_batch_max_interval"],
            "500ms"
        );
        assert_eq!(json_consensus["metadata"]["request_batch_max_count"], "10");
        assert_eq!(json_consensus["metadata"]["leader_rotation"], "ROTATION_ON");
        assert_eq!(json_consensus["metadata"]["sync_on_start"], false);
        assert_eq!(
            json_consensus["metadata"]
                .as_object()
                .map(serde_json::Map::len),
            Some(18)
        );
        let unknown = orderer::ConsensusType {
            r#type: "solo".into(),
            ..consensus.clone()
        };
        assert_eq!(
            json(|o| consensus_type(o, Rendering::V3, &unknown))["metadata"],
            serde_json::json!({})
        );
    }

    #[test]
    fn timestamps_keep_0_3_6_or_9_fractional_digits() {
        let ts = |seconds, nanos| {
            json(|o| timestamp(o, &Some(prost_types::Timestamp { seconds, nanos })))
        };
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(0, 500_000_000), "1970-01-01T00:00:00.500Z");
        assert_eq!(ts(0, 1_000), "1970-01-01T00:00:00.000001Z");
        assert_eq!(ts(0, 1), "1970-01-01T00:00:00.000000001Z");
    }

    #[test]
    fn unknown_enum_values_print_as_numbers() {
        let spec = protos::ChaincodeSpec {
            r#type: 42,
            ..Default::default()
        };
        assert_eq!(json(|o| chaincode_spec(o, &spec))["type"], 42);
    }

    #[test]
    fn bytes_that_do_not_parse_stay_base64() {
        let raw = Bytes::from_static(&[0xff, 0xff]);
        assert_eq!(
            json(|o| opaque(o, &raw, |o, e| chaincode_event(o, Rendering::V3, e))),
            "//8="
        );
    }

    #[test]
    fn deeply_nested_envelopes_stop_at_a_fixed_depth() {
        let mut inner = Bytes::from_static(b"innermost");
        for _ in 0..10_000 {
            let channel_header = common::ChannelHeader {
                r#type: common::HeaderType::OrdererTransaction as i32,
                ..Default::default()
            };
            let payload = common::Payload {
                header: Some(common::Header {
                    channel_header: Bytes::from(channel_header.encode_to_vec()),
                    signature_header: Bytes::new(),
                }),
                data: inner,
            };
            let envelope = common::Envelope {
                payload: Bytes::from(payload.encode_to_vec()),
                signature: Bytes::new(),
            };
            inner = Bytes::from(envelope.encode_to_vec());
        }
        let value = json(|o| opaque(o, &inner, |o, e| envelope(o, Rendering::V2_5, e, 0)));
        let mut text = Vec::new();
        to_text(&mut text, |o| {
            opaque(o, &inner, |o, e| envelope(o, Rendering::V2_5, e, 0))
        });
        assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), value);
        let mut node = &value;
        let mut depth = 0;
        while let Some(next) = node.get("payload").and_then(|p| p.get("data")) {
            node = next;
            depth += 1;
        }
        assert_eq!(depth, usize::from(MAX_ENVELOPE_DEPTH) + 1);
        assert!(node.is_string(), "the rest stays base64");
    }

    #[test]
    fn empty_opaque_fields_are_null() {
        assert_eq!(
            json(|o| opaque(o, &Bytes::new(), |o, e| chaincode_event(
                o,
                Rendering::V3,
                e
            ))),
            Value::Null
        );
    }
}
