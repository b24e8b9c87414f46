//! Triggers: CreateTrigger, GetTrigger, ListTriggers, UpdateTrigger, DeleteTrigger (`.../functions/{f}/triggers`)
//! with Function Compute's shapes, each type's `triggerConfig` checked ([`check_config`], pure), and the timer
//! scheduler ([`timer`]) that fires `timer` triggers.
//!
//! Which triggers fire here: `timer` ones (see [`timer`]). The others of the user guide (`oss`, `log`,
//! `cdn_events`, `tablestore`) are accepted, checked and shown back, but their event sources are cloud services
//! this machine does not have: they never fire. `http` triggers answer requests to their proxy path (see
//! [`http`]; a function has at most one).
//!
//! Invariants: a trigger's configuration is stored as the client sent it (Function Compute shows it back
//! unchanged) and only after [`check_config`] accepted it; a trigger belongs to a function at LATEST and names the
//! version or alias it invokes in `qualifier`, which must exist when it is set; a function with triggers cannot be
//! deleted (409 `FunctionNotEmpty`).

pub mod http;
pub mod schedule;
pub mod timer;

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use self::schedule::Schedule;
use super::Core;
use super::error::ApiError;
use super::limits::MAX_ASYNC_PAYLOAD;
use super::names::{FunctionName, LATEST, Qualifier, ServiceName, TriggerName};
use super::registry::{ListQuery, check_if_match, iso, now_ms, page};
use super::storage::{StorageError, TriggerRecord};

/// Most triggers on one function (Function Compute 2.0's limit).
pub const MAX_TRIGGERS_PER_FUNCTION: usize = 10;

/// Largest timer `payload`: the event carrying it must fit an async invocation.
pub const MAX_TIMER_PAYLOAD: usize = MAX_ASYNC_PAYLOAD - 1024;

/// A CreateTrigger / UpdateTrigger body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerInput {
    /// Required on create; on update it must match the path if sent.
    pub trigger_name: Option<String>,
    /// Required on create; cannot change.
    pub trigger_type: Option<String>,
    /// The type's configuration.
    pub trigger_config: Option<Value>,
    /// The event source (`acs:oss:<region>:<account>:<bucket>`, ...).
    pub source_arn: Option<String>,
    /// The role the event source assumes: stored and shown back.
    pub invocation_role: Option<String>,
    /// The version or alias the trigger invokes; absent or `LATEST`: LATEST.
    pub qualifier: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// What a checked configuration means here.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// Fires on its schedule when `enable`.
    Timer {
        schedule: Schedule,
        payload: String,
        enable: bool,
    },
    /// Accepted and shown back.
    Http,
    /// Accepted and shown back; its event source is a cloud service, so it never fires here.
    CloudSource,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("triggerConfig.{field}: {message}"))
}

fn object<'a>(
    value: &'a Value,
    field: &str,
) -> Result<&'a serde_json::Map<String, Value>, ApiError> {
    value
        .as_object()
        .ok_or_else(|| invalid(field, format!("expected an object, found {value}")))
}

fn string<'a>(
    map: &'a serde_json::Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<Option<&'a str>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(invalid(
            &format!("{path}{field}"),
            format!("expected a string, found {other}"),
        )),
    }
}

fn required_string<'a>(
    map: &'a serde_json::Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<&'a str, ApiError> {
    string(map, field, path)?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(&format!("{path}{field}"), "required"))
}

fn boolean(
    map: &serde_json::Map<String, Value>,
    field: &str,
    default: bool,
) -> Result<bool, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(value)) => Ok(*value),
        Some(other) => Err(invalid(
            field,
            format!("expected true or false, found {other}"),
        )),
    }
}

fn integer_in(
    map: &serde_json::Map<String, Value>,
    field: &str,
    path: &str,
    (min, max): (i64, i64),
) -> Result<(), ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(invalid(
                &format!("{path}{field}"),
                format!("{value} is out of range: expected an integer from {min} to {max}"),
            )),
        },
    }
}

/// `acs:<service>:...` with the expected service.
fn check_arn(source_arn: &str, service: &str) -> Result<(), ApiError> {
    let prefix = format!("acs:{service}:");
    if source_arn.starts_with(&prefix)
        && source_arn.len() <= 512
        && source_arn.split(':').count() >= 4
    {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "sourceArn: '{}' is not an ARN of the {service} service: expected acs:{service}:<region>:<account>[:<resource>]",
            source_arn.chars().take(100).collect::<String>()
        )))
    }
}

const OSS_EVENTS: [&str; 14] = [
    "oss:ObjectCreated:*",
    "oss:ObjectCreated:PutObject",
    "oss:ObjectCreated:PutSymlink",
    "oss:ObjectCreated:PostObject",
    "oss:ObjectCreated:CopyObject",
    "oss:ObjectCreated:InitiateMultipartUpload",
    "oss:ObjectCreated:UploadPart",
    "oss:ObjectCreated:UploadPartCopy",
    "oss:ObjectCreated:CompleteMultipartUpload",
    "oss:ObjectCreated:AppendObject",
    "oss:ObjectRemoved:*",
    "oss:ObjectRemoved:DeleteObject",
    "oss:ObjectRemoved:DeleteObjects",
    "oss:ObjectRemoved:AbortMultipartUpload",
];

const CDN_EVENTS: [&str; 4] = [
    "CachedObjectsRefreshed",
    "CachedObjectsBlocked",
    "CachedObjectsPushed",
    "LogFileCreated",
];

/// Checks a trigger's type, configuration and source ARN against the user guide; says what it means here.
/// `min_interval` is the shortest timer interval allowed (a minute, shorter only in tests).
pub fn check_config(
    trigger_type: &str,
    config: &Value,
    source_arn: &str,
    min_interval: Duration,
) -> Result<TriggerKind, ApiError> {
    let empty = serde_json::Map::new();
    let map = match config {
        Value::Null => &empty,
        other => object(other, "").map_err(|_| {
            ApiError::invalid(format!("triggerConfig: expected an object, found {other}"))
        })?,
    };
    match trigger_type {
        "timer" => {
            let expression = required_string(map, "cronExpression", "")?;
            let schedule = Schedule::parse_with(expression, min_interval)
                .map_err(|e| invalid("cronExpression", e.reason))?;
            let payload = string(map, "payload", "")?.unwrap_or_default().to_owned();
            if payload.len() > MAX_TIMER_PAYLOAD {
                return Err(ApiError::too_large(MAX_TIMER_PAYLOAD));
            }
            let enable = boolean(map, "enable", true)?;
            Ok(TriggerKind::Timer {
                schedule,
                payload,
                enable,
            })
        }
        "http" => {
            match string(map, "authType", "")? {
                Some("anonymous" | "function") => {}
                Some(other) => {
                    return Err(invalid(
                        "authType",
                        format!("'{other}' is neither 'anonymous' nor 'function'"),
                    ));
                }
                None => return Err(invalid("authType", "required ('anonymous' or 'function')")),
            }
            let methods = map
                .get("methods")
                .and_then(Value::as_array)
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "methods",
                        "required: a non-empty list such as [\"GET\", \"POST\"]",
                    )
                })?;
            for method in methods {
                match method.as_str() {
                    Some("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "PATCH" | "OPTIONS") => {}
                    _ => {
                        return Err(invalid(
                            "methods",
                            format!(
                                "{method} is not one of GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS"
                            ),
                        ));
                    }
                }
            }
            Ok(TriggerKind::Http)
        }
        "oss" => {
            check_arn(source_arn, "oss")?;
            let events = map
                .get("events")
                .and_then(Value::as_array)
                .filter(|e| !e.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "events",
                        "required: a non-empty list such as [\"oss:ObjectCreated:*\"]",
                    )
                })?;
            for event in events {
                if !event.as_str().is_some_and(|e| OSS_EVENTS.contains(&e)) {
                    return Err(invalid(
                        "events",
                        format!(
                            "{event} is not an OSS event (oss:ObjectCreated:*, oss:ObjectCreated:PutObject, ...)"
                        ),
                    ));
                }
            }
            if let Some(filter) = map.get("filter").filter(|f| !f.is_null()) {
                let filter = object(filter, "filter")?;
                if let Some(key) = filter.get("key").filter(|k| !k.is_null()) {
                    let key = object(key, "filter.key")?;
                    string(key, "prefix", "filter.key.")?;
                    string(key, "suffix", "filter.key.")?;
                }
            }
            Ok(TriggerKind::CloudSource)
        }
        "log" => {
            check_arn(source_arn, "log")?;
            let source = object(
                map.get("sourceConfig").unwrap_or(&Value::Null),
                "sourceConfig",
            )?;
            required_string(source, "logstore", "sourceConfig.")?;
            if let Some(job) = map.get("jobConfig").filter(|j| !j.is_null()) {
                let job = object(job, "jobConfig")?;
                integer_in(job, "triggerInterval", "jobConfig.", (3, 600))?;
                integer_in(job, "maxRetryTime", "jobConfig.", (0, 100))?;
            }
            if let Some(parameter) = map.get("functionParameter").filter(|p| !p.is_null()) {
                object(parameter, "functionParameter")?;
            }
            let log = object(map.get("logConfig").unwrap_or(&Value::Null), "logConfig")?;
            required_string(log, "project", "logConfig.")?;
            required_string(log, "logstore", "logConfig.")?;
            boolean(map, "enable", true)?;
            Ok(TriggerKind::CloudSource)
        }
        "cdn_events" => {
            check_arn(source_arn, "cdn")?;
            let name = required_string(map, "eventName", "")?;
            if !CDN_EVENTS.contains(&name) {
                return Err(invalid(
                    "eventName",
                    format!("'{name}' is not a CDN event ({})", CDN_EVENTS.join(", ")),
                ));
            }
            if required_string(map, "eventVersion", "")? != "1.0.0" {
                return Err(invalid("eventVersion", "expected '1.0.0'"));
            }
            string(map, "notes", "")?;
            let filter = object(map.get("filter").unwrap_or(&Value::Null), "filter")?;
            if filter.is_empty() {
                return Err(invalid(
                    "filter",
                    "needs at least one key, e.g. {\"domain\": [\"example.com\"]}",
                ));
            }
            for (key, values) in filter {
                let ok = values
                    .as_array()
                    .is_some_and(|v| !v.is_empty() && v.iter().all(Value::is_string));
                if !ok {
                    return Err(invalid(
                        &format!("filter.{key}"),
                        "expected a non-empty list of strings",
                    ));
                }
            }
            Ok(TriggerKind::CloudSource)
        }
        "tablestore" => {
            check_arn(source_arn, "ots")?;
            if !source_arn.contains("/table/") {
                return Err(ApiError::invalid(
                    "sourceArn: a Table Store trigger names its table: acs:ots:<region>:<account>:instance/<instance>/table/<table>",
                ));
            }
            Ok(TriggerKind::CloudSource)
        }
        other => Err(ApiError::invalid(format!(
            "triggerType: '{}' is not supported: expected timer, http, oss, log, cdn_events or tablestore",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

/// GetTrigger's body.
pub(crate) fn trigger_json(trigger: &TriggerRecord) -> Value {
    json!({
        "triggerName": trigger.name,
        "triggerId": trigger.id,
        "triggerType": trigger.trigger_type,
        "triggerConfig": trigger.config,
        "sourceArn": trigger.source_arn,
        "invocationRole": trigger.invocation_role,
        "qualifier": if trigger.qualifier.is_empty() { LATEST } else { trigger.qualifier.as_str() },
        "description": trigger.description,
        "createdTime": iso(trigger.created_ms),
        "lastModifiedTime": iso(trigger.modified_ms),
    })
}

impl Core {
    /// A trigger's qualifier as stored ("" for LATEST), after checking the version or alias exists.
    fn trigger_qualifier(
        &self,
        service: &ServiceName,
        given: Option<&str>,
    ) -> Result<String, ApiError> {
        let Some(text) = given.filter(|t| !t.is_empty()) else {
            return Ok(String::new());
        };
        let qualifier = Qualifier::parse(text)?;
        self.resolve_version(service, &qualifier, None)?;
        Ok(match qualifier {
            Qualifier::Latest => String::new(),
            _ => text.to_owned(),
        })
    }

    fn trigger_record(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        name: &str,
    ) -> Result<TriggerRecord, ApiError> {
        self.function_record(service, function)?;
        self.storage
            .trigger(service.as_str(), function.as_str(), name)?
            .ok_or_else(|| ApiError::trigger_not_found(service.as_str(), function.as_str(), name))
    }

    pub(crate) fn create_trigger(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        input: TriggerInput,
    ) -> Result<Value, ApiError> {
        self.function_record(service, function)?;
        let name = input
            .trigger_name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("triggerName: required"))?;
        let name = TriggerName::parse(name)?;
        let trigger_type = input
            .trigger_type
            .as_deref()
            .ok_or_else(|| ApiError::invalid("triggerType: required"))?;
        let config = input.trigger_config.unwrap_or(Value::Null);
        let source_arn = input.source_arn.unwrap_or_default();
        check_config(
            trigger_type,
            &config,
            &source_arn,
            self.config.timer_min_interval,
        )?;
        let qualifier = self.trigger_qualifier(service, input.qualifier.as_deref())?;
        if trigger_type == "http" {
            self.refuse_second_http_trigger(service, function)?;
        }
        let now = now_ms();
        let record = TriggerRecord {
            service: service.to_string(),
            function: function.to_string(),
            name: name.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            trigger_type: trigger_type.to_owned(),
            config,
            source_arn,
            invocation_role: input.invocation_role.unwrap_or_default(),
            qualifier,
            description: input.description.unwrap_or_default(),
            created_ms: now,
            modified_ms: now,
            anchor_ms: now,
            fired_through_ms: None,
        };
        match self
            .storage
            .insert_trigger(&record, MAX_TRIGGERS_PER_FUNCTION)
        {
            Ok(()) => {}
            Err(StorageError::AlreadyExists) => {
                return Err(ApiError::trigger_exists(
                    service.as_str(),
                    function.as_str(),
                    name.as_str(),
                ));
            }
            Err(StorageError::TooManyTriggers(_)) => {
                return Err(ApiError::too_many_triggers(
                    service.as_str(),
                    function.as_str(),
                    MAX_TRIGGERS_PER_FUNCTION,
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(%service, %function, trigger = %name, kind = trigger_type, "created a trigger");
        self.timer_wakeup.notify_one();
        Ok(trigger_json(&record))
    }

    /// The user guide: "A function must have only one HTTP trigger".
    fn refuse_second_http_trigger(
        &self,
        service: &ServiceName,
        function: &FunctionName,
    ) -> Result<(), ApiError> {
        let existing = self.storage.triggers(
            service.as_str(),
            function.as_str(),
            "",
            "",
            MAX_TRIGGERS_PER_FUNCTION + 1,
        )?;
        match existing.iter().find(|t| t.trigger_type == "http") {
            Some(other) => Err(ApiError::invalid(format!(
                "triggerType: function '{function}' of service '{service}' already has the HTTP trigger '{}': a \
                 function has at most one",
                other.name
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn get_trigger(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        name: &str,
    ) -> Result<Value, ApiError> {
        Ok(trigger_json(&self.trigger_record(service, function, name)?))
    }

    pub(crate) fn list_triggers(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        self.function_record(service, function)?;
        let limit = query.limit()?;
        let triggers = self.storage.triggers(
            service.as_str(),
            function.as_str(),
            query.prefix.as_deref().unwrap_or_default(),
            &query.start(),
            limit + 1,
        )?;
        Ok(page(
            "triggers",
            triggers,
            limit,
            |item| item.name.clone(),
            trigger_json,
        ))
    }

    pub(crate) fn update_trigger(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        name: &str,
        input: TriggerInput,
        if_match: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut record = self.trigger_record(service, function, name)?;
        check_if_match(if_match, &trigger_json(&record))?;
        if let Some(given) = input.trigger_name.as_deref()
            && given != name
        {
            return Err(ApiError::invalid(format!(
                "triggerName: '{given}' in the body differs from '{name}' in the path (renaming is not supported)"
            )));
        }
        if let Some(given) = input.trigger_type.as_deref()
            && given != record.trigger_type
        {
            return Err(ApiError::invalid(format!(
                "triggerType: a {} trigger cannot become a {given} trigger; delete it and create another",
                record.trigger_type
            )));
        }
        if let Some(arn) = input.source_arn.as_deref()
            && arn != record.source_arn
        {
            return Err(ApiError::invalid("sourceArn: cannot be changed"));
        }
        let config = input
            .trigger_config
            .unwrap_or_else(|| record.config.clone());
        check_config(
            &record.trigger_type,
            &config,
            &record.source_arn,
            self.config.timer_min_interval,
        )?;
        if input.qualifier.is_some() {
            record.qualifier = self.trigger_qualifier(service, input.qualifier.as_deref())?;
        }
        let now = now_ms();
        if config != record.config {
            // A new schedule (or a re-enabled timer) counts from now: no firing is owed for the past.
            record.anchor_ms = now;
            record.fired_through_ms = None;
        }
        record.config = config;
        if let Some(role) = input.invocation_role {
            record.invocation_role = role;
        }
        if let Some(description) = input.description {
            record.description = description;
        }
        record.modified_ms = now;
        self.storage.update_trigger(&record)?;
        tracing::info!(%service, %function, trigger = name, "updated a trigger");
        self.timer_wakeup.notify_one();
        Ok(trigger_json(&record))
    }

    pub(crate) fn delete_trigger(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ApiError> {
        let record = self.trigger_record(service, function, name)?;
        check_if_match(if_match, &trigger_json(&record))?;
        if !self
            .storage
            .delete_trigger(service.as_str(), function.as_str(), name)?
        {
            return Err(ApiError::trigger_not_found(
                service.as_str(),
                function.as_str(),
                name,
            ));
        }
        tracing::info!(%service, %function, trigger = name, "deleted a trigger");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_guides_trigger_configurations_are_accepted() {
        let timer = check_config(
            "timer",
            &json!({"payload": "aaaaa", "cronExpression": "0 1/1000 * * * *", "enable": true}),
            "",
            MINUTE,
        )
        .unwrap();
        assert!(
            matches!(timer, TriggerKind::Timer { enable: true, ref payload, .. } if payload == "aaaaa")
        );
        assert_eq!(
            check_config(
                "http",
                &json!({"authType": "anonymous", "methods": ["GET", "POST"]}),
                "",
                MINUTE
            ),
            Ok(TriggerKind::Http)
        );
        let oss = json!({"events": ["oss:ObjectCreated:PostObject", "oss:ObjectCreated:PutObject"],
                         "filter": {"key": {"prefix": "source/", "suffix": ".png"}}});
        assert_eq!(
            check_config("oss", &oss, "acs:oss:cn-shanghai:123:bucket", MINUTE),
            Ok(TriggerKind::CloudSource)
        );
        let log = json!({"sourceConfig": {"logstore": "etl-log"},
                         "jobConfig": {"maxRetryTime": 3, "triggerInterval": 60},
                         "functionParameter": {"a": "b"},
                         "logConfig": {"project": "ali-fc-test", "logstore": "test-store"}, "enable": true});
        assert_eq!(
            check_config("log", &log, "acs:log:cn-shanghai:123:project/p", MINUTE),
            Ok(TriggerKind::CloudSource)
        );
        let cdn = json!({"eventName": "LogFileCreated", "eventVersion": "1.0.0", "notes": "n",
                         "filter": {"domain": ["www.taobao.com", "www.tmall.com"]}});
        assert_eq!(
            check_config("cdn_events", &cdn, "acs:cdn:*:123", MINUTE),
            Ok(TriggerKind::CloudSource)
        );
        assert_eq!(
            check_config(
                "tablestore",
                &Value::Null,
                "acs:ots:cn-hangzhou:123:instance/i/table/t",
                MINUTE
            ),
            Ok(TriggerKind::CloudSource)
        );
    }

    #[test]
    fn wrong_configurations_name_the_field() {
        for (kind, config, arn, says) in [
            ("timer", json!({}), "", "cronExpression: required"),
            (
                "timer",
                json!({"cronExpression": "* * * * * *"}),
                "",
                "once a minute",
            ),
            (
                "timer",
                json!({"cronExpression": "0 * * * * *", "enable": "yes"}),
                "",
                "enable",
            ),
            (
                "timer",
                json!({"cronExpression": "0 * * * * *", "payload": 5}),
                "",
                "payload",
            ),
            ("timer", json!("0 * * * * *"), "", "expected an object"),
            (
                "http",
                json!({"authType": "none", "methods": ["GET"]}),
                "",
                "authType",
            ),
            (
                "http",
                json!({"authType": "function", "methods": []}),
                "",
                "methods",
            ),
            (
                "http",
                json!({"authType": "function", "methods": ["TRACE"]}),
                "",
                "methods",
            ),
            (
                "oss",
                json!({"events": ["oss:ObjectCreated:*"]}),
                "bucket",
                "sourceArn",
            ),
            (
                "oss",
                json!({"events": ["s3:Put"]}),
                "acs:oss:r:1:b",
                "events",
            ),
            (
                "oss",
                json!({"events": ["oss:ObjectCreated:*"], "filter": {"key": {"prefix": 1}}}),
                "acs:oss:r:1:b",
                "filter.key.prefix",
            ),
            (
                "log",
                json!({"logConfig": {"project": "p", "logstore": "l"}}),
                "acs:log:r:1:project/p",
                "sourceConfig",
            ),
            (
                "log",
                json!({"sourceConfig": {"logstore": "s"}, "jobConfig": {"triggerInterval": 1}, "logConfig": {"project": "p", "logstore": "l"}}),
                "acs:log:r:1:project/p",
                "triggerInterval",
            ),
            (
                "cdn_events",
                json!({"eventName": "Nope", "eventVersion": "1.0.0", "filter": {"domain": ["a"]}}),
                "acs:cdn:*:1",
                "eventName",
            ),
            (
                "cdn_events",
                json!({"eventName": "LogFileCreated", "eventVersion": "1.0.0", "filter": {}}),
                "acs:cdn:*:1",
                "filter",
            ),
            ("tablestore", Value::Null, "acs:ots:r:1:instance/i", "table"),
            ("mystery", Value::Null, "", "triggerType"),
        ] {
            let error = check_config(kind, &config, arn, MINUTE).unwrap_err();
            assert_eq!(error.code, "InvalidArgument", "{kind} {config}");
            assert!(
                error.message.contains(says),
                "{kind} {config}: {}",
                error.message
            );
        }
        let huge = "x".repeat(MAX_TIMER_PAYLOAD + 1);
        let error = check_config(
            "timer",
            &json!({"cronExpression": "0 * * * * *", "payload": huge}),
            "",
            MINUTE,
        )
        .unwrap_err();
        assert_eq!(error.code, "EntityTooLarge");
    }
}
