//! Block -> BaaS event envelopes (Block / Tx / Contract / Config), pure.

use serde::{Deserialize, Serialize};

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
