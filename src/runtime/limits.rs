//! Function Compute's limits and the attributes of services and functions, checked into validated values.
//!
//! Pure: the API handlers and the `--functions` loader both turn their input into [`FunctionAttributes`] and
//! call [`FunctionConfig::apply`], so both refuse the same things with the same messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pool::Language;

/// Most functions in one service.
pub const MAX_FUNCTIONS_PER_SERVICE: usize = 50;
/// Largest synchronous invocation payload (the classic 6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest asynchronous invocation payload.
pub const MAX_ASYNC_PAYLOAD: usize = 128 * 1024;
/// Largest total size of a function's environment variables (keys plus values).
pub const MAX_ENVIRONMENT_BYTES: usize = 4 * 1024;
/// `timeout` range in seconds, and its default.
pub const TIMEOUT_RANGE: (u32, u32, u32) = (1, 600, 3);
/// `initializationTimeout` range in seconds, and its default.
pub const INITIALIZATION_TIMEOUT_RANGE: (u32, u32, u32) = (1, 300, 3);
/// `memorySize` range in MB, and its default; it must also be a multiple of [`MEMORY_STEP`].
pub const MEMORY_RANGE: (u32, u32, u32) = (128, 3072, 128);
/// `memorySize` granularity in MB.
pub const MEMORY_STEP: u32 = 64;
/// `instanceConcurrency` range, and its default.
pub const INSTANCE_CONCURRENCY_RANGE: (u32, u32, u32) = (1, 100, 1);
/// `maxAsyncRetryAttempts` range, and its default.
pub const ASYNC_RETRY_RANGE: (u32, u32, u32) = (0, 8, 3);
/// `maxAsyncEventAgeInSeconds` range, and its default.
pub const ASYNC_AGE_RANGE: (u64, u64, u64) = (1, 604_800, 86_400);

/// An attribute was refused: the message names the field, the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAttribute(pub String);

/// The `code` object of CreateFunction / UpdateFunction.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CodeInput {
    /// The base64 zip: the only code source this runtime has.
    pub zip_file: Option<String>,
    /// OSS is not reachable from a local runtime: refused with a message that says to send `zipFile`.
    pub oss_bucket_name: Option<String>,
    /// See `oss_bucket_name`.
    pub oss_object_name: Option<String>,
}

/// The attributes of a function as clients send them (CreateFunction / UpdateFunction bodies, and
/// `function.toml`); every field optional so the same type serves creation, partial updates and files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunctionAttributes {
    /// Required on create; on update it must match the path if sent.
    pub function_name: Option<String>,
    /// `python3`, `python3.N`, `nodejsN`, `javaN`.
    pub runtime: Option<String>,
    /// `module.function`.
    pub handler: Option<String>,
    /// The code; required on create through the API.
    pub code: Option<CodeInput>,
    /// Free text shown back by Get/List.
    pub description: Option<String>,
    /// MB: 128-3072 in steps of 64.
    pub memory_size: Option<u32>,
    /// Seconds: 1-600.
    pub timeout: Option<u32>,
    /// `module.function` run once per instance; an empty string removes it.
    pub initializer: Option<String>,
    /// Seconds: 1-300.
    pub initialization_timeout: Option<u32>,
    /// Added to the handler's environment.
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// Accepted and shown back (1-100); each instance still runs one invocation at a time.
    pub instance_concurrency: Option<u32>,
    /// Accepted and shown back; only `e1` (the elastic default) exists here.
    pub instance_type: Option<String>,
    /// Custom containers cannot run here: refused unless null.
    pub custom_container_config: Option<serde_json::Value>,
    /// Custom runtimes cannot run here: refused unless null.
    pub ca_port: Option<serde_json::Value>,
    /// Layers are not supported: refused unless null or empty.
    pub layers: Option<Vec<String>>,
}

/// A function's validated configuration (everything but its name and code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunctionConfig {
    /// The runtime name as given.
    pub runtime: String,
    /// `module.function`.
    pub handler: String,
    /// Free text.
    pub description: String,
    /// MB.
    pub memory_size: u32,
    /// Seconds.
    pub timeout: u32,
    /// `module.function`, or empty for none.
    pub initializer: String,
    /// Seconds.
    pub initialization_timeout: u32,
    /// The function's own variables.
    pub environment_variables: BTreeMap<String, String>,
    /// Shown back as given.
    pub instance_concurrency: u32,
    /// Shown back as given.
    pub instance_type: String,
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    previous: Option<T>,
    (min, max, default): (T, T, T),
    unit: &str,
) -> Result<T, InvalidAttribute> {
    let value = value.or(previous).unwrap_or(default);
    if value < min || value > max {
        return Err(InvalidAttribute(format!(
            "{field}: {value} is out of range: expected {min}-{max}{unit}"
        )));
    }
    Ok(value)
}

fn check_handler(field: &str, handler: &str, language: Language) -> Result<(), InvalidAttribute> {
    if language == Language::Java {
        return check_java_handler(field, handler);
    }
    match handler.rsplit_once('.') {
        Some((module, function))
            if !module.is_empty()
                && !function.is_empty()
                && !handler.contains(['/', '\\', ' '])
                && !module.starts_with('.') =>
        {
            Ok(())
        }
        _ => Err(InvalidAttribute(format!(
            "{field}: '{handler}' is not of the form 'module.function' (e.g. 'index.handler')"
        ))),
    }
}

/// A Java handler or initializer: `package.Class::method` (the package may be empty, nested classes use `$`).
fn check_java_handler(field: &str, handler: &str) -> Result<(), InvalidAttribute> {
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
            && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    };
    match handler.split_once("::") {
        Some((class, method)) if class.split('.').all(identifier) && identifier(method) => Ok(()),
        _ => Err(InvalidAttribute(format!(
            "{field}: '{handler}' is not of the form 'package.Class::method' (e.g. 'example.HelloFC::handleRequest')"
        ))),
    }
}

/// Checks environment variable names, the `FC_` reservation and the total size.
fn check_environment(vars: &BTreeMap<String, String>) -> Result<(), InvalidAttribute> {
    let mut total = 0;
    for (key, value) in vars {
        let mut bytes = key.bytes();
        let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(InvalidAttribute(format!(
                "environmentVariables: key '{key}' must start with a letter and contain only letters, digits and '_'"
            )));
        }
        if key.starts_with("FC_") {
            return Err(InvalidAttribute(format!(
                "environmentVariables: key '{key}' is reserved (names starting with FC_ belong to the runtime)"
            )));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENVIRONMENT_BYTES {
        return Err(InvalidAttribute(format!(
            "environmentVariables: {total} bytes in total exceed the limit of {MAX_ENVIRONMENT_BYTES} bytes"
        )));
    }
    Ok(())
}

impl FunctionConfig {
    /// Applies attributes on top of an existing configuration (update) or the defaults (create, `previous` =
    /// `None`): absent fields keep the previous value; the result is checked as a whole.
    pub fn apply(
        previous: Option<&FunctionConfig>,
        attributes: &FunctionAttributes,
    ) -> Result<FunctionConfig, InvalidAttribute> {
        if attributes
            .custom_container_config
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err(InvalidAttribute(
                "customContainerConfig: custom containers are not supported by this runtime".into(),
            ));
        }
        if attributes.ca_port.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(InvalidAttribute(
                "caPort: custom runtimes are not supported by this runtime".into(),
            ));
        }
        if attributes.layers.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(InvalidAttribute(
                "layers: layers are not supported by this runtime".into(),
            ));
        }
        let runtime = attributes
            .runtime
            .clone()
            .or_else(|| previous.map(|p| p.runtime.clone()))
            .ok_or_else(|| {
                InvalidAttribute("runtime: required (python3, nodejsN or javaN)".into())
            })?;
        let language = runtime
            .parse::<Language>()
            .map_err(|e| InvalidAttribute(format!("runtime: {e}")))?;
        let handler = attributes
            .handler
            .clone()
            .or_else(|| previous.map(|p| p.handler.clone()))
            .ok_or_else(|| InvalidAttribute("handler: required (e.g. 'index.handler')".into()))?;
        check_handler("handler", &handler, language)?;
        let initializer = attributes
            .initializer
            .clone()
            .or_else(|| previous.map(|p| p.initializer.clone()))
            .unwrap_or_default();
        if !initializer.is_empty() {
            check_handler("initializer", &initializer, language)?;
        }
        let memory_size = in_range(
            "memorySize",
            attributes.memory_size,
            previous.map(|p| p.memory_size),
            MEMORY_RANGE,
            " MB",
        )?;
        if memory_size % MEMORY_STEP != 0 {
            return Err(InvalidAttribute(format!(
                "memorySize: {memory_size} is not a multiple of {MEMORY_STEP} MB"
            )));
        }
        let environment_variables = attributes
            .environment_variables
            .clone()
            .or_else(|| previous.map(|p| p.environment_variables.clone()))
            .unwrap_or_default();
        check_environment(&environment_variables)?;
        let instance_type = attributes
            .instance_type
            .clone()
            .or_else(|| previous.map(|p| p.instance_type.clone()))
            .unwrap_or_else(|| "e1".into());
        if instance_type != "e1" {
            return Err(InvalidAttribute(format!(
                "instanceType: '{instance_type}' is not available here: expected 'e1'"
            )));
        }
        Ok(FunctionConfig {
            runtime,
            handler,
            description: attributes
                .description
                .clone()
                .or_else(|| previous.map(|p| p.description.clone()))
                .unwrap_or_default(),
            memory_size,
            timeout: in_range(
                "timeout",
                attributes.timeout,
                previous.map(|p| p.timeout),
                TIMEOUT_RANGE,
                " seconds",
            )?,
            initializer,
            initialization_timeout: in_range(
                "initializationTimeout",
                attributes.initialization_timeout,
                previous.map(|p| p.initialization_timeout),
                INITIALIZATION_TIMEOUT_RANGE,
                " seconds",
            )?,
            environment_variables,
            instance_concurrency: in_range(
                "instanceConcurrency",
                attributes.instance_concurrency,
                previous.map(|p| p.instance_concurrency),
                INSTANCE_CONCURRENCY_RANGE,
                "",
            )?,
            instance_type,
        })
    }

    /// The interpreter the function needs.
    pub fn language(&self) -> Result<Language, super::pool::PoolError> {
        self.runtime.parse()
    }
}

/// The attributes of a service (CreateService / UpdateService bodies).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceAttributes {
    /// Required on create; on update it must match the path if sent.
    pub service_name: Option<String>,
    /// Free text (the Python SDK sends `null` when not given).
    pub description: Option<String>,
    /// A RAM role ARN: stored and shown back; no credentials are issued from it here.
    pub role: Option<String>,
    /// Shown back; the log project / store are passed to handlers in their context.
    pub log_config: Option<serde_json::Value>,
    /// Stored and shown back; no VPC exists here.
    pub vpc_config: Option<serde_json::Value>,
    /// Stored and shown back.
    pub internet_access: Option<bool>,
    /// Stored and shown back; no NAS is mounted here.
    pub nas_config: Option<serde_json::Value>,
    /// Stored and shown back.
    pub tracing_config: Option<serde_json::Value>,
    /// Stored and shown back; no OSS bucket is mounted here.
    pub oss_mount_config: Option<serde_json::Value>,
}

/// A service's validated, stored attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Free text.
    pub description: String,
    /// Shown back.
    pub role: String,
    /// Shown back; `project` / `logstore` reach handlers' context.
    pub log_config: serde_json::Value,
    /// Shown back.
    pub vpc_config: serde_json::Value,
    /// Shown back (default true as in FC).
    pub internet_access: bool,
    /// Shown back.
    pub nas_config: serde_json::Value,
    /// Shown back.
    pub tracing_config: serde_json::Value,
    /// Shown back.
    pub oss_mount_config: serde_json::Value,
}

impl ServiceConfig {
    /// Applies attributes on top of an existing configuration, or the defaults.
    pub fn apply(
        previous: Option<&ServiceConfig>,
        attributes: &ServiceAttributes,
    ) -> ServiceConfig {
        let base = previous.cloned().unwrap_or(ServiceConfig {
            internet_access: true,
            ..ServiceConfig::default()
        });
        let json = |given: &Option<serde_json::Value>, old: serde_json::Value| match given {
            Some(value) => value.clone(),
            None => old,
        };
        ServiceConfig {
            description: attributes.description.clone().unwrap_or(base.description),
            role: attributes.role.clone().unwrap_or(base.role),
            log_config: json(&attributes.log_config, base.log_config),
            vpc_config: json(&attributes.vpc_config, base.vpc_config),
            internet_access: attributes.internet_access.unwrap_or(base.internet_access),
            nas_config: json(&attributes.nas_config, base.nas_config),
            tracing_config: json(&attributes.tracing_config, base.tracing_config),
            oss_mount_config: json(&attributes.oss_mount_config, base.oss_mount_config),
        }
    }

    /// A field of `logConfig` (`project`, `logstore`), or empty.
    pub fn log_field(&self, name: &str) -> String {
        self.log_config
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A function's async invocation settings (PutFunctionAsyncInvokeConfig body).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AsyncConfigInput {
    /// Retries after a function error: 0-8.
    pub max_async_retry_attempts: Option<u32>,
    /// Events older than this are dropped: 1-604800 seconds.
    pub max_async_event_age_in_seconds: Option<u64>,
    /// Destinations are not supported: refused unless null.
    pub destination_config: Option<serde_json::Value>,
    /// Accepted (stateful invocation ids are always honoured here).
    pub stateful_invocation: Option<bool>,
}

/// Validated async settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncPolicy {
    /// Retries after a function error.
    pub max_retries: u32,
    /// Maximum age of an event in seconds.
    pub max_age_secs: u64,
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        AsyncPolicy {
            max_retries: ASYNC_RETRY_RANGE.2,
            max_age_secs: ASYNC_AGE_RANGE.2,
        }
    }
}

impl AsyncConfigInput {
    /// Validates the input; absent fields take the runtime-wide defaults.
    pub fn validate(&self, defaults: AsyncPolicy) -> Result<AsyncPolicy, InvalidAttribute> {
        if self
            .destination_config
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err(InvalidAttribute(
                "destinationConfig: destinations are not supported by this runtime".into(),
            ));
        }
        Ok(AsyncPolicy {
            max_retries: in_range(
                "maxAsyncRetryAttempts",
                self.max_async_retry_attempts,
                None,
                (
                    ASYNC_RETRY_RANGE.0,
                    ASYNC_RETRY_RANGE.1,
                    defaults.max_retries,
                ),
                "",
            )?,
            max_age_secs: in_range(
                "maxAsyncEventAgeInSeconds",
                self.max_async_event_age_in_seconds,
                None,
                (ASYNC_AGE_RANGE.0, ASYNC_AGE_RANGE.1, defaults.max_age_secs),
                " seconds",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(json: serde_json::Value) -> FunctionAttributes {
        serde_json::from_value(json).unwrap()
    }

    fn error(json: serde_json::Value) -> String {
        FunctionConfig::apply(None, &attrs(json)).unwrap_err().0
    }

    #[test]
    fn defaults_are_function_computes() {
        let config = FunctionConfig::apply(
            None,
            &attrs(serde_json::json!({"runtime": "python3.10", "handler": "index.handler"})),
        )
        .unwrap();
        assert_eq!(
            (
                config.timeout,
                config.memory_size,
                config.initialization_timeout
            ),
            (3, 128, 3)
        );
        assert_eq!(config.language().unwrap(), Language::Python3);
        assert_eq!(config.instance_type, "e1");
    }

    #[test]
    fn java_handlers_name_a_class_and_a_method() {
        let java = |handler: &str, initializer: &str| {
            FunctionConfig::apply(
                None,
                &attrs(serde_json::json!({
                    "runtime": "java8", "handler": handler, "initializer": initializer
                })),
            )
            .map_err(|e| e.0)
        };
        let config = java(
            "example.HelloFC::handleRequest",
            "example.HelloFC::initialize",
        )
        .unwrap();
        assert_eq!(config.language().unwrap(), Language::Java);
        assert!(java("HelloFC::handleRequest", "").is_ok());
        assert!(java("a.b.Outer$Inner::handle", "").is_ok());
        for bad in [
            "index.handler",
            "example.HelloFC",
            "example.HelloFC::",
            "::handleRequest",
            "example..HelloFC::handleRequest",
            "example.HelloFC::handle::Request",
            "example/HelloFC::handleRequest",
            "1example.HelloFC::handleRequest",
        ] {
            let error = java(bad, "").unwrap_err();
            assert!(error.starts_with("handler: '"), "{bad}: {error}");
            assert!(error.contains("package.Class::method"), "{bad}: {error}");
        }
        let error = java("example.HelloFC::handleRequest", "init").unwrap_err();
        assert!(error.starts_with("initializer: 'init'"), "{error}");
        // Moving a Python function to Java keeps its handler, which is then refused by name.
        let python = FunctionConfig::apply(
            None,
            &attrs(serde_json::json!({"runtime": "python3", "handler": "index.handler"})),
        )
        .unwrap();
        let moved = FunctionConfig::apply(
            Some(&python),
            &attrs(serde_json::json!({"runtime": "java11"})),
        );
        assert!(moved.unwrap_err().0.starts_with("handler: 'index.handler'"));
    }

    #[test]
    fn refuses_out_of_range_values_naming_the_field() {
        let base = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"runtime": "nodejs18", "handler": "index.handler"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        assert!(
            error(base(serde_json::json!({"timeout": 0})))
                .starts_with("timeout: 0 is out of range")
        );
        assert!(error(base(serde_json::json!({"timeout": 601}))).contains("1-600"));
        assert!(error(base(serde_json::json!({"memorySize": 100}))).starts_with("memorySize"));
        assert!(error(base(serde_json::json!({"memorySize": 200}))).contains("multiple of 64"));
        assert!(error(base(serde_json::json!({"memorySize": 3136}))).contains("128-3072"));
        assert!(
            error(base(serde_json::json!({"initializationTimeout": 301})))
                .starts_with("initializationTimeout")
        );
        assert!(error(base(serde_json::json!({"handler": "index"}))).starts_with("handler"));
        assert!(error(base(serde_json::json!({"initializer": "x"}))).starts_with("initializer"));
        assert!(error(base(serde_json::json!({"runtime": "java"}))).contains("'java'"));
        assert!(error(base(serde_json::json!({"runtime": "custom"}))).contains("javaN"));
        assert!(error(base(serde_json::json!({"layers": ["x"]}))).starts_with("layers"));
    }

    #[test]
    fn checks_environment_variables() {
        let env = |vars: serde_json::Value| {
            error(
                serde_json::json!({"runtime": "python3", "handler": "i.h", "environmentVariables": vars}),
            )
        };
        assert!(env(serde_json::json!({"1A": "x"})).contains("'1A'"));
        assert!(env(serde_json::json!({"A-B": "x"})).contains("'A-B'"));
        assert!(env(serde_json::json!({"FC_X": "x"})).contains("reserved"));
        assert!(env(serde_json::json!({"BIG": "x".repeat(4096)})).contains("4096"));
        let ok = FunctionConfig::apply(
            None,
            &attrs(
                serde_json::json!({"runtime": "python3", "handler": "i.h", "environmentVariables": {"A_1": "v"}}),
            ),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn updates_keep_unsent_fields() {
        let first = FunctionConfig::apply(
            None,
            &attrs(serde_json::json!({"runtime": "python3", "handler": "i.h", "timeout": 10, "description": "d"})),
        )
        .unwrap();
        let second =
            FunctionConfig::apply(Some(&first), &attrs(serde_json::json!({"memorySize": 256})))
                .unwrap();
        assert_eq!(
            (
                second.timeout,
                second.memory_size,
                second.description.as_str()
            ),
            (10, 256, "d")
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_value::<FunctionAttributes>(serde_json::json!({"timeOut": 3}))
            .unwrap_err();
        assert!(error.to_string().contains("timeOut"), "{error}");
    }

    #[test]
    fn async_policy_ranges() {
        let input = |v: serde_json::Value| serde_json::from_value::<AsyncConfigInput>(v).unwrap();
        let d = AsyncPolicy::default();
        assert_eq!(input(serde_json::json!({})).validate(d).unwrap(), d);
        assert!(
            input(serde_json::json!({"maxAsyncRetryAttempts": 9}))
                .validate(d)
                .is_err()
        );
        assert!(
            input(serde_json::json!({"maxAsyncEventAgeInSeconds": 0}))
                .validate(d)
                .is_err()
        );
        assert!(
            input(serde_json::json!({"maxAsyncEventAgeInSeconds": 604801}))
                .validate(d)
                .is_err()
        );
        assert_eq!(
            input(serde_json::json!({"maxAsyncRetryAttempts": 0, "maxAsyncEventAgeInSeconds": 60}))
                .validate(d)
                .unwrap(),
            AsyncPolicy {
                max_retries: 0,
                max_age_secs: 60
            }
        );
    }
}
