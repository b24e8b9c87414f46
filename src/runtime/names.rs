//! Names of services, functions, qualifiers and stateful async invocations, parsed once at the edge.

use std::fmt;

/// Why a name was refused; the message names the kind of name and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name '{name}': {rule}")]
pub struct NameError {
    /// "service", "function", "qualifier", "stateful async invocation id".
    pub kind: &'static str,
    /// The refused text.
    pub name: String,
    /// The rule it broke.
    pub rule: &'static str,
}

const NAME_RULE: &str = "expected 1-128 characters of letters, digits, '_' and '-', \
                         starting with a letter or '_'";

/// Function Compute's rule for service, function and stateful invocation names: starts with a letter or `_`,
/// then letters, digits, `_`, `-`; 1-128 characters (the documented 1-64 for functions is the stricter of two
/// conflicting documents; 128 accepts everything either allows).
fn check(kind: &'static str, name: &str) -> Result<(), NameError> {
    let error = || NameError {
        kind,
        name: name.to_owned(),
        rule: NAME_RULE,
    };
    let mut bytes = name.bytes();
    let first = bytes.next().ok_or_else(error)?;
    if name.len() > 128 || !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(error());
    }
    if bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(())
    } else {
        Err(error())
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses a name, refusing anything outside Function Compute's name rule.
            pub fn parse(name: &str) -> Result<Self, NameError> {
                check($kind, name).map(|()| $name(name.to_owned()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A service name.
    ServiceName,
    "service"
);
name_type!(
    /// A function name.
    FunctionName,
    "function"
);
name_type!(
    /// A trigger of a function.
    TriggerName,
    "trigger"
);
name_type!(
    /// An alias of a service's version.
    AliasName,
    "alias"
);
name_type!(
    /// The `X-Fc-Stateful-Async-Invocation-Id` of an async call: de-duplicates repeated submissions.
    InvocationId,
    "stateful async invocation id"
);

/// The qualifier of the unpublished, changeable service (and of a path without a qualifier).
pub const LATEST: &str = "LATEST";

/// What the `{service}[.{qualifier}]` path segment asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualifier {
    /// No qualifier, or `LATEST`.
    Latest,
    /// A version number (digits, as written).
    Version(String),
    /// An alias name.
    Alias(String),
}

impl Qualifier {
    /// A qualifier as written after the service's dot (or in `X-Fc-Qualifier`): `LATEST`, digits (a version), or
    /// an alias name.
    pub fn parse(text: &str) -> Result<Qualifier, NameError> {
        if text == LATEST {
            Ok(Qualifier::Latest)
        } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Qualifier::Version(text.to_owned()))
        } else {
            check("qualifier", text)?;
            Ok(Qualifier::Alias(text.to_owned()))
        }
    }
}

/// Splits a path's service segment into the service name and the qualifier.
pub fn parse_service_segment(segment: &str) -> Result<(ServiceName, Qualifier), NameError> {
    let (name, qualifier) = match segment.split_once('.') {
        None => (segment, Qualifier::Latest),
        Some((name, q)) => (name, Qualifier::parse(q)?),
    };
    Ok((ServiceName::parse(name)?, qualifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_function_computes_rule() {
        for good in ["a", "_x", "svc-1_b", &"a".repeat(128)] {
            assert!(ServiceName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "-a", "a.b", "a b", "ä", &"a".repeat(129)] {
            let error = FunctionName::parse(bad).unwrap_err();
            assert_eq!(error.kind, "function");
            assert!(
                error.to_string().contains("starting with a letter"),
                "{error}"
            );
        }
    }

    #[test]
    fn service_segment_carries_the_qualifier() {
        let latest = |s: &str| parse_service_segment(s).map(|(n, q)| (n.to_string(), q));
        assert_eq!(latest("demo"), Ok(("demo".into(), Qualifier::Latest)));
        assert_eq!(
            latest("demo.LATEST"),
            Ok(("demo".into(), Qualifier::Latest))
        );
        assert_eq!(
            latest("demo.3"),
            Ok(("demo".into(), Qualifier::Version("3".into())))
        );
        assert_eq!(
            latest("demo.prod"),
            Ok(("demo".into(), Qualifier::Alias("prod".into())))
        );
        assert!(latest("demo.").is_err());
        assert!(latest("9demo").is_err());
    }
}
