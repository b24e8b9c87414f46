//! Parse-don't-validate newtypes for the names and values a configuration file holds.
//!
//! Each type is checked once, when the file is read (serde `try_from`, so a bad value is reported at its own line
//! and column), and can be trusted everywhere after that.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Defines a string newtype whose constructor checks `rule`.
macro_rules! checked_name {
    ($(#[$meta:meta])* $name:ident, $what:literal, $rule:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the rule for this kind of name.
            pub fn new(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                let rule: fn(&str) -> Result<(), String> = $rule;
                rule(&value).map_err(|why| format!("invalid {} `{}`: {why}", $what, value.escape_debug()))?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn identifier(value: &str, max: usize, first_digit_ok: bool, extra: &[char]) -> Result<(), String> {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return Err("it is empty".into());
    };
    if value.chars().count() > max {
        return Err(format!("it is longer than {max} characters"));
    }
    if !(first.is_ascii_alphabetic() || first == '_' || (first_digit_ok && first.is_ascii_digit()))
    {
        return Err(if first_digit_ok {
            "it must start with a letter, a digit or `_`".into()
        } else {
            "it must start with a letter or `_`".into()
        });
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || extra.contains(c)))
    {
        let allowed: String = extra.iter().map(|c| format!(", `{c}`")).collect();
        return Err(format!(
            "`{}` is not allowed (letters, digits, `_`, `-`{allowed} only)",
            bad.escape_debug()
        ));
    }
    Ok(())
}

checked_name!(
    /// A trigger's name: unique in a daemon, used in the admin API's URLs, metrics labels and the store.
    TriggerName,
    "trigger name",
    |v| identifier(v, 64, false, &[])
);

checked_name!(
    /// A Fabric channel name (Fabric's own rule: lower-case letter first, then `[a-z0-9.-]`, under 250 characters).
    ChannelName,
    "channel name",
    |v| {
        let mut chars = v.chars();
        match chars.next() {
            None => Err("it is empty".into()),
            Some(c) if !c.is_ascii_lowercase() => Err("it must start with a lower-case letter".into()),
            _ if v.len() >= 250 => Err("it must be shorter than 250 characters".into()),
            _ => match v.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
                Some(bad) => Err(format!("`{}` is not allowed (a-z, 0-9, `.` and `-` only)", bad.escape_debug())),
                None => Ok(()),
            },
        }
    }
);

checked_name!(
    /// An MSP id, e.g. `Org1MSP`: it names the organisation whose identity signs Deliver requests.
    MspId,
    "MSP id",
    |v| identifier(v, 128, true, &['.'])
);

checked_name!(
    /// The bridge instance id put in every event's `instance_id` (BaaS samples look like `csi-<org>-<random>`).
    InstanceId,
    "instance id",
    |v| identifier(v, 128, true, &['.'])
);

checked_name!(
    /// A Function Compute service or function name (FC's rule: letter or `_` first, then `[A-Za-z0-9_-]`,
    /// at most 128 characters).
    FcName,
    "Function Compute name",
    |v| identifier(v, 128, false, &[])
);

checked_name!(
    /// A Function Compute qualifier: a version number, an alias or `LATEST`.
    FcQualifier,
    "Function Compute qualifier",
    |v| identifier(v, 128, true, &[])
);

/// A duration written as `<number><unit>` with unit `ms`, `s`, `m` or `h`, e.g. `500ms`, `5s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration `{}`: expected a number and a unit (ms, s, m or h), e.g. `500ms` or `5s`",
                text.escape_debug()
            )
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let millis = match unit {
            "ms" => Some(number),
            "s" => number.checked_mul(1_000),
            "m" => number.checked_mul(60_000),
            "h" => number.checked_mul(3_600_000),
            _ => None,
        }
        .ok_or_else(bad)?;
        Ok(HumanDuration(Duration::from_millis(millis)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis.is_multiple_of(1_000) {
            write!(f, "{}s", millis / 1_000)
        } else {
            write!(f, "{millis}ms")
        }
    }
}

/// How many discarded events a trigger tolerates before it enters Failed (`-1`: never fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "i64")]
pub struct FailureThreshold(Option<u64>);

impl FailureThreshold {
    /// A trigger that never enters Failed (BaaS's `-1`).
    pub const UNLIMITED: FailureThreshold = FailureThreshold(None);

    /// A trigger that fails once more than `count` events were discarded.
    pub fn at_most(count: u64) -> Self {
        FailureThreshold(Some(count))
    }

    /// The threshold, or `None` when the trigger never fails.
    pub fn limit(self) -> Option<u64> {
        self.0
    }

    /// BaaS's number: `-1` for unlimited.
    pub fn as_i64(self) -> i64 {
        self.0.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// Whether `failures` discarded events exceed the threshold (the trigger enters Failed).
    pub fn is_exceeded_by(self, failures: u64) -> bool {
        self.0.is_some_and(|limit| failures > limit)
    }
}

impl TryFrom<i64> for FailureThreshold {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        match value {
            -1 => Ok(FailureThreshold::UNLIMITED),
            n if n >= 0 => Ok(FailureThreshold(Some(n as u64))),
            n => Err(format!(
                "invalid failure threshold {n}: expected -1 (never fail) or a count >= 0"
            )),
        }
    }
}

impl fmt::Display for FailureThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_i64())
    }
}

/// Where a trigger without stored progress starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The channel's next block: only events from now on (BaaS's behaviour).
    #[default]
    Latest,
    /// A given block number, e.g. `0` to replay the whole channel.
    Block(u64),
}

impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StartPosition;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"latest\" or a block number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StartPosition, E> {
                if v == "latest" {
                    Ok(StartPosition::Latest)
                } else {
                    Err(E::custom(format!(
                        "invalid start `{}`: expected \"latest\" or a block number",
                        v.escape_debug()
                    )))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StartPosition, E> {
                u64::try_from(v)
                    .map(StartPosition::Block)
                    .map_err(|_| E::custom(format!("invalid start {v}: a block number is >= 0")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StartPosition, E> {
                Ok(StartPosition::Block(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPosition::Latest => f.write_str("latest"),
            StartPosition::Block(n) => write!(f, "block {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        assert!(TriggerName::new("task-created_2").is_ok());
        for (bad, why) in [
            ("", "empty"),
            ("1abc", "start with a letter"),
            ("a b", "` ` is not allowed"),
            ("a/b", "`/` is not allowed"),
            (&"x".repeat(65), "longer than 64"),
        ] {
            let error = TriggerName::new(bad).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
        assert!(ChannelName::new("mychannel").is_ok());
        assert!(ChannelName::new("my.channel-2").is_ok());
        assert!(
            ChannelName::new("MyChannel")
                .unwrap_err()
                .contains("lower-case")
        );
        assert!(
            ChannelName::new("my_channel")
                .unwrap_err()
                .contains("`_` is not allowed")
        );
        assert!(FcName::new("_svc-1").is_ok());
        assert!(FcName::new("9svc").is_err());
        assert!(FcName::new("a".repeat(129)).is_err());
        assert!(FcQualifier::new("LATEST").is_ok());
        assert!(FcQualifier::new("3").is_ok());
        assert!(FcQualifier::new("v.1").is_err());
        assert!(MspId::new("Org1MSP").is_ok());
        assert!(InstanceId::new("csi-org1-abc").is_ok());
        assert!(InstanceId::new("").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        let parse = |s: &str| HumanDuration::try_from(s.to_owned()).map(|d| d.0);
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            "1.5s",
            "-1s",
            "5sec",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(HumanDuration(Duration::from_secs(3)).to_string(), "3s");
    }

    #[test]
    fn failure_threshold_semantics() {
        assert_eq!(
            FailureThreshold::try_from(-1),
            Ok(FailureThreshold::UNLIMITED)
        );
        assert!(FailureThreshold::try_from(-2).is_err());
        let three = FailureThreshold::try_from(3).unwrap();
        assert!(!three.is_exceeded_by(3));
        assert!(three.is_exceeded_by(4));
        assert!(!FailureThreshold::UNLIMITED.is_exceeded_by(u64::MAX));
        assert!(FailureThreshold::at_most(0).is_exceeded_by(1));
        assert_eq!(FailureThreshold::default().as_i64(), -1);
    }
}
