//! Any bytes through the whole decode path: block decoder, event extraction, protolator JSON, serialization.
//! The only acceptable outcomes are a block or a `DecodeError`.

#![no_main]

use chaintrigger::events::{ExtractOptions, extract};
use chaintrigger::fabric::decode::decode_block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = decode_block(data) {
        let options = ExtractOptions {
            instance_id: "fuzz".into(),
            include_invalid: true,
            ..ExtractOptions::default()
        };
        for event in extract(&block, &options) {
            let _ = serde_json::to_vec(event.envelope());
        }
    }
});
