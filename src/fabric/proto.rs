//! The Fabric messages, generated at build time from `proto/` (field-compatible with `hyperledger/fabric-protos`).
//!
//! Module names follow the protobuf packages: `common` (envelopes, blocks, configuration, policies, MSP
//! principals), `msp` (identities, MSP configuration), `orderer` (SeekInfo, orderer configuration; with
//! `orderer::smartbft` for BFT options), `etcdraft`, `protos` (the peer: transactions, proposals, chaincode, the
//! Deliver service), `rwset` and `kvrwset`.
//! Bytes fields are `bytes::Bytes`, so nested envelopes decode without copying.

/// Envelopes, headers, blocks, channel configuration, policies and MSP principals (`package common`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod common {
    tonic::include_proto!("common");
}

/// Serialized identities and MSP configuration (`package msp`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod msp {
    tonic::include_proto!("msp");
}

/// SeekInfo, the orderer's broadcast service and orderer configuration values (`package orderer`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod orderer {
    tonic::include_proto!("orderer");

    /// SmartBFT consensus options: the metadata of a "BFT" ConsensusType (`package orderer.smartbft`).
    #[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    pub mod smartbft {
        tonic::include_proto!("orderer.smartbft");
    }
}

/// Raft consensus metadata (`package etcdraft`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod etcdraft {
    tonic::include_proto!("etcdraft");
}

/// The peer: transactions, proposals, chaincode, events and the Deliver service (`package protos`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod protos {
    tonic::include_proto!("protos");
}

/// Transaction read/write sets (`package rwset`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod rwset {
    tonic::include_proto!("rwset");
}

/// Key/value read/write sets, public and hashed (`package kvrwset`).
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod kvrwset {
    tonic::include_proto!("kvrwset");
}
