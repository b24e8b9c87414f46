//! The recorded real Fabric networks (channel `mychannel`), embedded so that the peer simulator and the demo run
//! from the binary alone: their blocks, the User1 client identity of Org1MSP and the org CA.
//!
//! - [`Recording::V2_5`]: Fabric v2.5.16, one etcdraft orderer; blocks 0-23 (config blocks 0 and 8).
//! - [`Recording::V3_1`]: Fabric v3.1.5, four SmartBFT orderers, channel capability `V3_0`; blocks 0-10 (config
//!   block 0; the recording's later blocks 12-20 are kept for decoder tests, as block 11 is missing from it and
//!   a chain served by a peer has no holes).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// The channel the fixture blocks belong to.
pub const CHANNEL: &str = "mychannel";
/// The MSP of the fixture identities.
pub const MSP_ID: &str = "Org1MSP";
/// User1's signing certificate in the v2.5 recording (test material).
pub const USER1_CERT_PEM: &[u8] =
    include_bytes!("../../fixtures/fabric-v2.5/msp/user1_signcert.pem");
/// User1's PKCS#8 P-256 private key in the v2.5 recording (test material only).
pub const USER1_KEY_PEM: &[u8] = include_bytes!("../../fixtures/fabric-v2.5/msp/user1_key.pem");
/// The Org1 CA that issued User1's certificate in the v2.5 recording.
pub const ORG1_CA_PEM: &[u8] = include_bytes!("../../fixtures/fabric-v2.5/msp/org1_ca.pem");

/// The raw `common.Block` bytes of blocks 0..=23 of the v2.5 network, as the real peer delivered them.
const BLOCKS_V2_5: [&[u8]; 24] = [
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_0.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_1.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_2.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_3.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_4.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_5.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_6.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_7.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_8.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_9.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_10.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_11.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_12.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_13.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_14.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_15.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_16.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_17.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_18.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_19.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_20.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_21.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_22.pb"),
    include_bytes!("../../fixtures/fabric-v2.5/blocks/block_23.pb"),
];

/// The raw `common.Block` bytes of blocks 0..=10 of the v3.1 network, as a real peer delivered them.
const BLOCKS_V3_1: [&[u8]; 11] = [
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_0.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_1.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_2.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_3.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_4.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_5.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_6.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_7.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_8.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_9.pb"),
    include_bytes!("../../fixtures/fabric-v3.1/blocks/block_10.pb"),
];

/// The recorded blocks of the v2.5 network, in order from block 0.
pub fn recorded_blocks() -> Vec<Bytes> {
    Recording::V2_5.blocks()
}

/// A recorded real Fabric network the simulator can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recording {
    /// Fabric v2.5.16 with etcdraft ordering.
    #[default]
    V2_5,
    /// Fabric v3.1.5 with SmartBFT ordering and the `V3_0` channel capability.
    V3_1,
}

impl Recording {
    /// Both recordings.
    pub const ALL: [Recording; 2] = [Recording::V2_5, Recording::V3_1];

    /// The name used on the command line: `v2.5` or `v3.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Recording::V2_5 => "v2.5",
            Recording::V3_1 => "v3.1",
        }
    }

    /// The recorded blocks, in order from block 0.
    pub fn blocks(self) -> Vec<Bytes> {
        let blocks: &[&'static [u8]] = match self {
            Recording::V2_5 => &BLOCKS_V2_5,
            Recording::V3_1 => &BLOCKS_V3_1,
        };
        blocks.iter().map(|b| Bytes::from_static(b)).collect()
    }

    /// User1's signing certificate (test material).
    pub fn user1_cert_pem(self) -> &'static [u8] {
        match self {
            Recording::V2_5 => USER1_CERT_PEM,
            Recording::V3_1 => include_bytes!("../../fixtures/fabric-v3.1/msp/user1_signcert.pem"),
        }
    }

    /// User1's PKCS#8 P-256 private key (test material only).
    pub fn user1_key_pem(self) -> &'static [u8] {
        match self {
            Recording::V2_5 => USER1_KEY_PEM,
            Recording::V3_1 => include_bytes!("../../fixtures/fabric-v3.1/msp/user1_key.pem"),
        }
    }

    /// The Org1 CA that issued User1's certificate.
    pub fn org1_ca_pem(self) -> &'static [u8] {
        match self {
            Recording::V2_5 => ORG1_CA_PEM,
            Recording::V3_1 => include_bytes!("../../fixtures/fabric-v3.1/msp/org1_ca.pem"),
        }
    }

    /// The folder of the recording under `fixtures/` (`fabric-v2.5`, `fabric-v3.1`).
    pub fn fixture_dir(self) -> &'static str {
        match self {
            Recording::V2_5 => "fabric-v2.5",
            Recording::V3_1 => "fabric-v3.1",
        }
    }
}

impl fmt::Display for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Recording {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Recording::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| format!("unknown recording `{name}`, expected `v2.5` or `v3.1`"))
    }
}
