//! The two hashes that chain Fabric blocks, as Fabric computes them (v2.5 and v3.1 alike), and the checks a
//! follower makes with them. Pure.
//!
//! - The **header hash** (`protoutil.BlockHeaderHash`): SHA-256 of the ASN.1 DER encoding of
//!   `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`. The next block's
//!   `header.previous_hash` holds it, so a block's header vouches for every block before it.
//! - The **data hash** (`protoutil.BlockDataHash` in v2.5, `ComputeBlockDataHash` in v3.1, same definition):
//!   SHA-256 of the block's envelopes (`data.data[i]`) concatenated, with nothing between them. A channel's
//!   `BlockDataHashingStructure` width is always 2^32-1, which means this flat hash. `header.data_hash` holds it,
//!   so the header vouches for every transaction byte.
//!
//! Metadata (signatures, validation codes, last config) is outside both hashes: the committing peer writes the
//! validation codes after the orderer cut the block.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::Block;

/// A block that does not hash as Fabric made it: a transaction byte changed in transit or at rest, or a block
/// that does not follow the one before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `header.data_hash` is not the hash of the block's data.
    #[error(
        "block {block}: header.data_hash is {}, but the block's {envelopes} envelopes hash to {} \
         (a transaction was changed after the orderer cut the block)",
        hex::encode(header),
        hex::encode(computed)
    )]
    DataHash {
        block: u64,
        /// The hash the header claims.
        header: Bytes,
        /// SHA-256 of the data as received.
        computed: [u8; 32],
        /// How many envelopes the data holds.
        envelopes: usize,
    },
    /// `header.previous_hash` is not the previous block's header hash.
    #[error(
        "block {block}: header.previous_hash is {}, but block {}'s header hashes to {} \
         (the block does not chain onto the previous one)",
        hex::encode(previous_hash), block.saturating_sub(1), hex::encode(expected)
    )]
    PreviousHash {
        block: u64,
        /// The hash the header claims for the previous block.
        previous_hash: Bytes,
        /// The previous block's header hash, as computed.
        expected: [u8; 32],
    },
    /// The blocks checked as a pair are not consecutive.
    #[error("block {block} cannot follow block {previous}: expected block {}", previous.saturating_add(1))]
    NotConsecutive { block: u64, previous: u64 },
}

impl Block {
    /// Checks that `header.data_hash` is Fabric's data hash of the block's envelopes.
    pub fn verify_data_hash(&self) -> Result<(), VerifyError> {
        let computed = block_data_hash(&self.envelopes);
        if self.data_hash[..] == computed[..] {
            Ok(())
        } else {
            Err(VerifyError::DataHash {
                block: self.number,
                header: self.data_hash.clone(),
                computed,
                envelopes: self.envelopes.len(),
            })
        }
    }

    /// Checks that `header.previous_hash` is `expected`, the header hash of block `number - 1` (for a follower
    /// that keeps only the last hash it accepted).
    pub fn verify_previous_hash(&self, expected: &[u8; 32]) -> Result<(), VerifyError> {
        if self.previous_hash[..] == expected[..] {
            Ok(())
        } else {
            Err(VerifyError::PreviousHash {
                block: self.number,
                previous_hash: self.previous_hash.clone(),
                expected: *expected,
            })
        }
    }

    /// Checks that this block comes right after `previous` and chains onto its header.
    pub fn verify_follows(&self, previous: &Block) -> Result<(), VerifyError> {
        if previous.number.checked_add(1) != Some(self.number) {
            return Err(VerifyError::NotConsecutive {
                block: self.number,
                previous: previous.number,
            });
        }
        self.verify_previous_hash(&previous.hash)
    }
}

/// Fabric's block data hash: SHA-256 of the envelopes concatenated.
pub fn block_data_hash<B: AsRef<[u8]>>(envelopes: &[B]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for envelope in envelopes {
        hasher.update(envelope.as_ref());
    }
    hasher.finalize().into()
}

/// Fabric's block header hash: SHA-256 of [`header_bytes`].
pub fn header_hash(number: u64, previous_hash: &[u8], data_hash: &[u8]) -> [u8; 32] {
    Sha256::digest(header_bytes(number, previous_hash, data_hash)).into()
}

/// Fabric's `BlockHeaderBytes`: the DER encoding of
/// `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }` (what the header hash
/// hashes, and what orderers sign with the block metadata).
pub fn header_bytes(number: u64, previous_hash: &[u8], data_hash: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + previous_hash.len() + data_hash.len());
    der_integer(&mut body, number);
    der_tlv(&mut body, 0x04, previous_hash);
    der_tlv(&mut body, 0x04, data_hash);
    let mut der = Vec::with_capacity(body.len() + 6);
    der_tlv(&mut der, 0x30, &body);
    der
}

fn der_integer(out: &mut Vec<u8>, value: u64) {
    let bytes = value.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut content = Vec::with_capacity(9);
    // A set top bit would read as negative: DER prefixes a zero byte.
    if bytes[first] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(&bytes[first..]);
    der_tlv(out, 0x02, &content);
}

fn der_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len_bytes = (len as u64).to_be_bytes();
        let first = len_bytes.iter().position(|b| *b != 0).unwrap_or(7);
        out.push(0x80 | (8 - first) as u8);
        out.extend_from_slice(&len_bytes[first..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integer_encoding_matches_asn1_rules() {
        let mut out = Vec::new();
        der_integer(&mut out, 0);
        assert_eq!(out, [0x02, 0x01, 0x00]);
        out.clear();
        der_integer(&mut out, 128);
        assert_eq!(out, [0x02, 0x02, 0x00, 0x80]);
        out.clear();
        der_integer(&mut out, 0x0102);
        assert_eq!(out, [0x02, 0x02, 0x01, 0x02]);
        out.clear();
        der_integer(&mut out, 5);
        assert_eq!(out, [0x02, 0x01, 0x05]);
        out.clear();
        der_integer(&mut out, 256);
        assert_eq!(out, [0x02, 0x02, 0x01, 0x00]);
        out.clear();
        der_integer(&mut out, u64::MAX);
        assert_eq!(out, [&[0x02, 0x09, 0x00][..], &[0xff; 8][..]].concat());
    }

    #[test]
    fn long_der_lengths_use_the_long_form() {
        let mut out = Vec::new();
        der_tlv(&mut out, 0x04, &[7u8; 300]);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(out.len(), 304);
    }

    #[test]
    fn the_data_hash_is_of_the_plain_concatenation() {
        let split = block_data_hash(&[&b"ab"[..], &b"cd"[..]]);
        assert_eq!(split, block_data_hash(&[&b"abcd"[..]]));
        assert_eq!(split, <[u8; 32]>::from(Sha256::digest(b"abcd")));
        assert_eq!(
            block_data_hash::<&[u8]>(&[]),
            <[u8; 32]>::from(Sha256::digest(b""))
        );
    }
}
