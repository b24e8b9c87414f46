//! Which Fabric generation's configtxlator a channel's `content.data` (and a Config event's `content.input`)
//! must match, node for node. Pure; the one place where the two renderings differ.
//!
//! Fabric v2.5's configtxlator prints JSON through Go's old `jsonpb`, Fabric v3's through `protojson`. The trees
//! are the same (same messages opened, same field names, same number and enum forms) except for one thing: a
//! singular `bytes` field that is empty and holds no nested message prints as `null` in v2.5 and as `""` in
//! v3. That covers `channel_header.tls_cert_hash` of nearly every transaction, a chaincode `response.payload`,
//! a deleted key's write `value`, an empty chaincode event `payload`, `pvt_rwset_hash`, an empty signature or
//! nonce. Opaque fields (bytes holding a nested message: `extension`, `creator`, `events`, a config value, ...)
//! are `null` when empty in both; repeated bytes and map values are `""` when empty in both.
//!
//! A channel gets the rendering of the tools its operators use: [`Rendering::of_config`] picks v3 when the
//! channel configuration requires a Fabric v3 channel capability (`V3_0`), v2.5 otherwise. Serialisers ask
//! [`Rendering::empty_bytes`] / [`Rendering::empty_bytes_json`] and nothing else, so a new serialiser keeps both.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fabric::decode::ConfigTransaction;

/// How events of a channel are rendered: as Fabric v2.5's configtxlator or as Fabric v3's prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Rendering {
    /// Fabric v2.x (checked against v2.5.16): empty bytes are `null`. Channels without a v3 capability.
    #[default]
    #[serde(rename = "v2.5")]
    V2_5,
    /// Fabric v3.x (checked against v3.1.5): empty bytes are `""`. Channels with the `V3_0` capability.
    #[serde(rename = "v3")]
    V3,
}

impl Rendering {
    /// Both renderings.
    pub const ALL: [Rendering; 2] = [Rendering::V2_5, Rendering::V3];

    /// The name used in configuration files and on the command line: `v2.5` or `v3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rendering::V2_5 => "v2.5",
            Rendering::V3 => "v3",
        }
    }

    /// The rendering of a channel whose configuration is `config`: v3 when it requires a channel capability of
    /// Fabric v3 or later (`V3_0`; a later `V3_x` / `V4_0` too), else v2.5.
    pub fn of_config(config: &ConfigTransaction) -> Rendering {
        Rendering::of_capabilities(config.channel_capabilities.iter().map(String::as_str))
    }

    /// [`Rendering::of_config`] from the channel capability names.
    pub fn of_capabilities<'a>(capabilities: impl IntoIterator<Item = &'a str>) -> Rendering {
        let v3_or_later = capabilities.into_iter().any(|name| {
            let major = name
                .strip_prefix('V')
                .and_then(|rest| rest.split('_').next())
                .and_then(|major| major.parse::<u32>().ok());
            major.is_some_and(|major| major >= 3)
        });
        if v3_or_later {
            Rendering::V3
        } else {
            Rendering::V2_5
        }
    }

    /// The JSON text of an empty singular bytes field that holds no message: `null` or `""`.
    pub fn empty_bytes_json(self) -> &'static str {
        match self {
            Rendering::V2_5 => "null",
            Rendering::V3 => "\"\"",
        }
    }

    /// [`Rendering::empty_bytes_json`] as a JSON value.
    pub fn empty_bytes(self) -> Value {
        match self {
            Rendering::V2_5 => Value::Null,
            Rendering::V3 => Value::String(String::new()),
        }
    }
}

impl fmt::Display for Rendering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a rendering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rendering `{0}`, expected `v2.5` or `v3`")]
pub struct UnknownRendering(pub String);

impl FromStr for Rendering {
    type Err = UnknownRendering;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Rendering::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| UnknownRendering(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_capabilities_choose_the_v3_rendering() {
        assert_eq!(Rendering::of_capabilities(["V3_0"]), Rendering::V3);
        assert_eq!(Rendering::of_capabilities(["V2_0", "V3_0"]), Rendering::V3);
        assert_eq!(Rendering::of_capabilities(["V4_0"]), Rendering::V3);
        assert_eq!(Rendering::of_capabilities(["V2_0"]), Rendering::V2_5);
        assert_eq!(Rendering::of_capabilities(["V1_4_3"]), Rendering::V2_5);
        assert_eq!(Rendering::of_capabilities([]), Rendering::V2_5);
        assert_eq!(
            Rendering::of_capabilities(["X3_0", "V_3", "VX_0"]),
            Rendering::V2_5
        );
    }

    #[test]
    fn names_round_trip_and_empty_bytes_differ() {
        for r in Rendering::ALL {
            assert_eq!(r.as_str().parse::<Rendering>(), Ok(r));
            assert_eq!(
                serde_json::from_str::<Value>(r.empty_bytes_json()).unwrap(),
                r.empty_bytes()
            );
        }
        assert_eq!(
            "v4".parse::<Rendering>().unwrap_err().to_string(),
            "unknown rendering `v4`, expected `v2.5` or `v3`"
        );
        assert_eq!(Rendering::default(), Rendering::V2_5);
    }
}
