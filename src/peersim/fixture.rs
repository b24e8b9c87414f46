//! The recorded Fabric v2.5.16 network (channel `mychannel`), embedded so that the peer simulator and the demo
//! run from the binary alone: its 24 blocks, the User1 client identity of Org1MSP and the org CA.

use bytes::Bytes;

/// The channel the fixture blocks belong to.
pub const CHANNEL: &str = "mychannel";
/// The MSP of the fixture identities.
pub const MSP_ID: &str = "Org1MSP";
/// User1's signing certificate (test material).
pub const USER1_CERT_PEM: &[u8] =
    include_bytes!("../../fixtures/fabric-v2.5/msp/user1_signcert.pem");
/// User1's PKCS#8 P-256 private key (test material only).
pub const USER1_KEY_PEM: &[u8] = include_bytes!("../../fixtures/fabric-v2.5/msp/user1_key.pem");
/// The Org1 CA that issued User1's certificate.
pub const ORG1_CA_PEM: &[u8] = include_bytes!("../../fixtures/fabric-v2.5/msp/org1_ca.pem");

/// The raw `common.Block` bytes of blocks 0..=23, as the real peer delivered them.
const BLOCKS: [&[u8]; 24] = [
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

/// The recorded blocks, in order from block 0.
pub fn recorded_blocks() -> Vec<Bytes> {
    BLOCKS.iter().map(|b| Bytes::from_static(b)).collect()
}
