//! Service versions and aliases: PublishServiceVersion, ListServiceVersions, DeleteServiceVersion,
//! Create/Get/List/Update/DeleteAlias, and what a qualifier (`{service}.{qualifier}` in a path) resolves to.
//!
//! Invariants:
//! - A version is a snapshot taken in one SQLite transaction: the service record and every function (its
//!   configuration and its code checksum). Nothing changes it afterwards; UpdateFunction / UpdateService /
//!   DeleteFunction act on LATEST only. Its code stays in the content-addressed store for as long as the
//!   version exists: [`super::storage::Storage::code_checksums`] counts version snapshots as references.
//! - Version numbers are 1, 2, ... per service and never reused, not even after the newest is deleted.
//! - Publishing without any change since the newest version is refused (as Function Compute does).
//! - An alias names one primary version and at most one additional version with a weight in [0, 1]: each
//!   invocation through the alias goes to the additional version with that probability ([`choose_version`]).
//!   Reads through an alias (GetService, GetFunction, ListFunctions, GetFunctionCode) show the primary version.
//! - A version an alias names can be deleted (Function Compute allows it); calls through the alias then answer
//!   404 `VersionNotFound` until the alias is moved.
//!
//! The parsing and routing ([`parse_version_id`], [`parse_weights`], [`choose_version`], [`fingerprint`]) are
//! pure; the [`Core`] methods read and write the storage.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Core;
use super::error::ApiError;
use super::limits::MAX_FUNCTIONS_PER_SERVICE;
use super::names::{FunctionName, LATEST, Qualifier, ServiceName};
use super::registry::{ListQuery, check_if_match, function_json, iso, now_ms, page, service_json};
use super::storage::{AliasRecord, FunctionRecord, ServiceRecord, StorageError, VersionRecord};

/// A PublishServiceVersion body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishInput {
    /// The version's description (GetService at this version shows it).
    pub description: Option<String>,
}

/// A CreateAlias / UpdateAlias body. `versionId` and the weights are kept as JSON so that a wrong type gets a
/// message naming the field, like any other wrong value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AliasInput {
    /// Required on create; on update it must match the path if sent.
    pub alias_name: Option<String>,
    /// The primary version: a version number as a string (or a number).
    pub version_id: Option<Value>,
    /// Free text.
    pub description: Option<String>,
    /// `{"<version>": weight}`: at most one additional version, weight 0-1. On update, `{}` removes it.
    pub additional_version_weight: Option<Value>,
}

/// ListServiceVersions' query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionQuery {
    /// Page size: 1-100, default 100.
    pub limit: Option<String>,
    /// The `nextToken` of the previous page: the first version of this page.
    pub next_token: Option<String>,
    /// Start at this version (inclusive).
    pub start_key: Option<String>,
    /// `BACKWARD` (newest first, the default) or `FORWARD`.
    pub direction: Option<String>,
}

/// A version number as written in a path or a body: digits only, at least 1. A number too large for any version
/// is a version that does not exist (`None`), not a malformed one.
pub fn parse_version_id(field: &str, text: &str) -> Result<Option<u64>, ApiError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(format!(
            "{field}: '{}' is not a version number: expected digits (1, 2, ...)",
            text.chars().take(64).collect::<String>()
        )));
    }
    Ok(text.parse::<u64>().ok().filter(|id| *id > 0))
}

/// `versionId` of an alias body (a string of digits, or a JSON number).
fn version_field(value: &Value) -> Result<Option<u64>, ApiError> {
    match value {
        Value::String(text) => parse_version_id("versionId", text),
        Value::Number(number) => match number.as_u64() {
            Some(id) => parse_version_id("versionId", &id.to_string()),
            None => Err(ApiError::invalid(format!(
                "versionId: {number} is not a version number"
            ))),
        },
        other => Err(ApiError::invalid(format!(
            "versionId: expected a version number as a string, found {other}"
        ))),
    }
}

/// Checks `additionalVersionWeight`: an object of at most one `"<version>": weight` with a weight from 0 to 1.
/// Returns the version numbers that must exist with their weights (`None` for an unknown, too-large number).
pub fn parse_weights(value: &Value) -> Result<Vec<(Option<u64>, String, f64)>, ApiError> {
    let entries = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(entries) => entries,
        other => {
            return Err(ApiError::invalid(format!(
                "additionalVersionWeight: expected an object {{\"<version>\": weight}}, found {other}"
            )));
        }
    };
    if entries.len() > 1 {
        return Err(ApiError::invalid(format!(
            "additionalVersionWeight: {} versions given: an alias sends calls to at most one additional version",
            entries.len()
        )));
    }
    entries
        .iter()
        .map(|(key, weight)| {
            let id = parse_version_id("additionalVersionWeight", key)?;
            let weight = weight
                .as_f64()
                .filter(|w| w.is_finite() && (0.0..=1.0).contains(w))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "additionalVersionWeight: the weight of version {key} is {weight}: expected a number from 0 \
                         to 1"
                    ))
                })?;
            Ok((id, key.clone(), weight))
        })
        .collect()
}

/// The version one invocation through `alias` runs: the additional version when `roll` (uniform in [0, 1))
/// falls under its weight, else the primary.
pub fn choose_version(alias: &AliasRecord, roll: f64) -> u64 {
    let mut threshold = 0.0;
    for (version, weight) in &alias.weights {
        threshold += weight;
        if roll < threshold {
            return *version;
        }
    }
    alias.version
}

/// What makes two publications the same: the service's configuration and each function's name, configuration
/// and code. Times and ids are left out (an update that changes nothing is no change).
pub fn fingerprint(service: &ServiceRecord, functions: &[FunctionRecord]) -> String {
    use sha2::Digest as _;
    let text = json!({
        "service": service.config,
        "functions": functions
            .iter()
            .map(|f| json!([f.name, f.config, f.code_checksum.to_string()]))
            .collect::<Vec<_>>(),
    })
    .to_string();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// PublishServiceVersion / ListServiceVersions' item.
pub(crate) fn version_json(version: &VersionRecord) -> Value {
    json!({
        "versionId": version.id.to_string(),
        "description": version.description,
        "createdTime": iso(version.created_ms),
        "lastModifiedTime": iso(version.created_ms),
    })
}

/// GetAlias' body.
pub(crate) fn alias_json(alias: &AliasRecord) -> Value {
    let weights: serde_json::Map<String, Value> = alias
        .weights
        .iter()
        .map(|(version, weight)| (version.to_string(), json!(weight)))
        .collect();
    json!({
        "aliasName": alias.name,
        "versionId": alias.version.to_string(),
        "description": alias.description,
        "additionalVersionWeight": weights,
        "createdTime": iso(alias.created_ms),
        "lastModifiedTime": iso(alias.modified_ms),
    })
}

impl Core {
    /// The published version a qualifier leads to (`None`: LATEST), after checking the service exists. Through
    /// an alias, `roll` picks between its versions (an invocation); without one, the primary is shown (a read).
    pub(crate) fn resolve_version(
        &self,
        service: &ServiceName,
        qualifier: &Qualifier,
        roll: Option<f64>,
    ) -> Result<Option<VersionRecord>, ApiError> {
        self.service_record(service)?;
        let id = match qualifier {
            Qualifier::Latest => return Ok(None),
            Qualifier::Version(text) => parse_version_id("qualifier", text)?,
            Qualifier::Alias(name) => {
                let alias = self
                    .storage
                    .alias(service.as_str(), name)?
                    .ok_or_else(|| ApiError::alias_not_found(service.as_str(), name))?;
                Some(roll.map_or(alias.version, |roll| choose_version(&alias, roll)))
            }
        };
        let shown = match (qualifier, id) {
            (Qualifier::Version(text), _) => text.clone(),
            (_, Some(id)) => id.to_string(),
            (_, None) => String::new(),
        };
        match id {
            Some(id) => self
                .storage
                .version(service.as_str(), id)?
                .map(Some)
                .ok_or_else(|| ApiError::version_not_found(service.as_str(), &shown)),
            None => Err(ApiError::version_not_found(service.as_str(), &shown)),
        }
    }

    /// GetService at a version: the service as published, with the version's description.
    pub(crate) fn service_at(
        &self,
        service: &ServiceName,
        version: Option<&VersionRecord>,
    ) -> Result<Value, ApiError> {
        match version {
            None => Ok(service_json(&self.service_record(service)?)),
            Some(version) => {
                let mut body = service_json(&version.snapshot);
                body["description"] = json!(version.description);
                Ok(body)
            }
        }
    }

    /// A function as LATEST has it, or as a version published it, with the service it belongs to.
    pub(crate) fn function_at(
        &self,
        service: &ServiceName,
        version: Option<&VersionRecord>,
        function: &FunctionName,
    ) -> Result<(ServiceRecord, FunctionRecord), ApiError> {
        let Some(version) = version else {
            return self.function_record(service, function);
        };
        let record = self
            .storage
            .version_function(service.as_str(), version.id, function.as_str())?
            .ok_or_else(|| ApiError::function_not_found(service.as_str(), function.as_str()))?;
        Ok((version.snapshot.clone(), record))
    }

    /// The service and function an async event runs, at its version; `None` when either is gone.
    pub(crate) fn records_at(
        &self,
        service: &str,
        version: Option<u64>,
        function: &str,
    ) -> Result<Option<(ServiceRecord, FunctionRecord)>, StorageError> {
        match version {
            None => Ok(self
                .storage
                .service(service)?
                .zip(self.storage.function(service, function)?)),
            Some(id) => {
                let Some(version) = self.storage.version(service, id)? else {
                    return Ok(None);
                };
                Ok(self
                    .storage
                    .version_function(service, id, function)?
                    .map(|record| (version.snapshot, record)))
            }
        }
    }

    /// ListFunctions at a version.
    pub(crate) fn list_functions_at(
        &self,
        service: &ServiceName,
        version: &VersionRecord,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        let limit = query.limit()?;
        let functions = self.storage.version_functions(
            service.as_str(),
            version.id,
            query.prefix.as_deref().unwrap_or_default(),
            &query.start(),
            limit + 1,
        )?;
        Ok(page(
            "functions",
            functions,
            limit,
            |item| item.name.clone(),
            function_json,
        ))
    }

    pub(crate) fn publish_version(
        &self,
        service: &ServiceName,
        input: PublishInput,
        if_match: Option<&str>,
    ) -> Result<Value, ApiError> {
        let record = self.service_record(service)?;
        check_if_match(if_match, &service_json(&record))?;
        let description = input.description.unwrap_or_default();
        match self
            .storage
            .publish_version(service.as_str(), &description, &fingerprint, now_ms())
        {
            Ok(version) => {
                tracing::info!(%service, version = version.id, "published a version");
                Ok(version_json(&version))
            }
            Err(StorageError::NoChanges(latest)) => Err(ApiError::invalid(format!(
                "cannot publish a version of service '{service}': nothing changed since version {latest}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn list_versions(
        &self,
        service: &ServiceName,
        query: &VersionQuery,
    ) -> Result<Value, ApiError> {
        self.service_record(service)?;
        let limit = ListQuery {
            limit: query.limit.clone(),
            ..ListQuery::default()
        }
        .limit()?;
        let backward = match query.direction.as_deref().unwrap_or("BACKWARD") {
            "" | "BACKWARD" => true,
            "FORWARD" => false,
            other => {
                return Err(ApiError::invalid(format!(
                    "direction: '{other}' is neither 'BACKWARD' nor 'FORWARD'"
                )));
            }
        };
        let mut start = None;
        for (field, given) in [
            ("startKey", &query.start_key),
            ("nextToken", &query.next_token),
        ] {
            if let Some(text) = given.as_deref().filter(|t| !t.is_empty()) {
                let id = parse_version_id(field, text)?.unwrap_or(u64::MAX);
                // The later of the two in the listing's direction, as for the other lists.
                start = Some(match (start, backward) {
                    (None, _) => id,
                    (Some(s), true) => id.min(s),
                    (Some(s), false) => id.max(s),
                });
            }
        }
        let mut versions = self
            .storage
            .versions(service.as_str(), start, backward, limit + 1)?;
        let next = (versions.len() > limit).then(|| versions.remove(limit).id);
        let mut body = json!({
            "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
            "direction": if backward { "BACKWARD" } else { "FORWARD" },
        });
        if let Some(next) = next {
            body["nextToken"] = json!(next.to_string());
        }
        Ok(body)
    }

    pub(crate) async fn delete_version(
        &self,
        service: &ServiceName,
        id: &str,
    ) -> Result<(), ApiError> {
        self.service_record(service)?;
        let number = parse_version_id("versionId", id)?
            .ok_or_else(|| ApiError::version_not_found(service.as_str(), id))?;
        let functions = self.storage.version_functions(
            service.as_str(),
            number,
            "",
            "",
            MAX_FUNCTIONS_PER_SERVICE,
        )?;
        let _code_lock = self.code_lock.lock().await;
        if !self.storage.delete_version(service.as_str(), number)? {
            return Err(ApiError::version_not_found(service.as_str(), id));
        }
        tracing::info!(%service, version = id, "deleted a version");
        // Its warm instances go (with those of LATEST: the pool evicts per function), and then its code, unless
        // something else still refers to it.
        for function in &functions {
            self.pool.evict(service.as_str(), &function.name).await;
        }
        self.collect_code();
        Ok(())
    }

    /// The weights of an alias body, each naming a version that exists.
    fn checked_weights(
        &self,
        service: &ServiceName,
        value: &Value,
    ) -> Result<BTreeMap<u64, f64>, ApiError> {
        let mut weights = BTreeMap::new();
        for (id, text, weight) in parse_weights(value)? {
            let id = self.existing_version(service, id, &text)?;
            weights.insert(id, weight);
        }
        Ok(weights)
    }

    fn existing_version(
        &self,
        service: &ServiceName,
        id: Option<u64>,
        text: &str,
    ) -> Result<u64, ApiError> {
        match id {
            Some(id) if self.storage.version(service.as_str(), id)?.is_some() => Ok(id),
            _ => Err(ApiError::version_not_found(service.as_str(), text)),
        }
    }

    fn alias_record(&self, service: &ServiceName, name: &str) -> Result<AliasRecord, ApiError> {
        self.service_record(service)?;
        self.storage
            .alias(service.as_str(), name)?
            .ok_or_else(|| ApiError::alias_not_found(service.as_str(), name))
    }

    pub(crate) fn create_alias(
        &self,
        service: &ServiceName,
        input: AliasInput,
    ) -> Result<Value, ApiError> {
        self.service_record(service)?;
        let name = input
            .alias_name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("aliasName: required"))?;
        let name = super::names::AliasName::parse(name)?;
        if name.as_str() == LATEST {
            return Err(ApiError::invalid(
                "aliasName: 'LATEST' names the unpublished service; choose another name",
            ));
        }
        let version_value = input
            .version_id
            .as_ref()
            .ok_or_else(|| ApiError::invalid("versionId: required"))?;
        let version_text = version_value
            .as_str()
            .map_or_else(|| version_value.to_string(), str::to_owned);
        let version =
            self.existing_version(service, version_field(version_value)?, &version_text)?;
        let weights = match &input.additional_version_weight {
            Some(value) => self.checked_weights(service, value)?,
            None => BTreeMap::new(),
        };
        let now = now_ms();
        let record = AliasRecord {
            service: service.to_string(),
            name: name.to_string(),
            version,
            description: input.description.unwrap_or_default(),
            weights,
            created_ms: now,
            modified_ms: now,
        };
        match self.storage.insert_alias(&record) {
            Ok(()) => Ok(alias_json(&record)),
            Err(StorageError::AlreadyExists) => {
                Err(ApiError::alias_exists(service.as_str(), name.as_str()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn get_alias(&self, service: &ServiceName, name: &str) -> Result<Value, ApiError> {
        Ok(alias_json(&self.alias_record(service, name)?))
    }

    pub(crate) fn list_aliases(
        &self,
        service: &ServiceName,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        self.service_record(service)?;
        let limit = query.limit()?;
        let aliases = self.storage.aliases(
            service.as_str(),
            query.prefix.as_deref().unwrap_or_default(),
            &query.start(),
            limit + 1,
        )?;
        Ok(page(
            "aliases",
            aliases,
            limit,
            |item| item.name.clone(),
            alias_json,
        ))
    }

    pub(crate) fn update_alias(
        &self,
        service: &ServiceName,
        name: &str,
        input: AliasInput,
        if_match: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut record = self.alias_record(service, name)?;
        if let Some(given) = input.alias_name.as_deref()
            && given != name
        {
            return Err(ApiError::invalid(format!(
                "aliasName: '{given}' in the body differs from '{name}' in the path (renaming is not supported)"
            )));
        }
        check_if_match(if_match, &alias_json(&record))?;
        if let Some(value) = &input.version_id {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            record.version = self.existing_version(service, version_field(value)?, &text)?;
        }
        if let Some(value) = &input.additional_version_weight {
            record.weights = self.checked_weights(service, value)?;
        }
        if let Some(description) = input.description {
            record.description = description;
        }
        record.modified_ms = now_ms();
        self.storage.update_alias(&record)?;
        tracing::info!(%service, alias = name, version = record.version, weights = ?record.weights, "updated an alias");
        Ok(alias_json(&record))
    }

    pub(crate) fn delete_alias(
        &self,
        service: &ServiceName,
        name: &str,
        if_match: Option<&str>,
    ) -> Result<(), ApiError> {
        let record = self.alias_record(service, name)?;
        check_if_match(if_match, &alias_json(&record))?;
        if self.storage.delete_alias(service.as_str(), name)? {
            Ok(())
        } else {
            Err(ApiError::alias_not_found(service.as_str(), name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(version: u64, weights: &[(u64, f64)]) -> AliasRecord {
        AliasRecord {
            service: "s".into(),
            name: "prod".into(),
            version,
            description: String::new(),
            weights: weights.iter().copied().collect(),
            created_ms: 0,
            modified_ms: 0,
        }
    }

    #[test]
    fn version_ids_are_digits() {
        assert_eq!(parse_version_id("f", "3").unwrap(), Some(3));
        assert_eq!(
            parse_version_id("f", "99999999999999999999999").unwrap(),
            None,
            "too large: no such version"
        );
        assert_eq!(parse_version_id("f", "0").unwrap(), None);
        for bad in ["", "-1", "1.5", "x", "1 ", "../1"] {
            let error = parse_version_id("versionId", bad).unwrap_err();
            assert_eq!(error.code, "InvalidArgument");
            assert!(
                error.message.starts_with("versionId: "),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn weights_are_one_version_from_0_to_1() {
        assert!(parse_weights(&Value::Null).unwrap().is_empty());
        assert_eq!(
            parse_weights(&json!({"2": 0.25})).unwrap(),
            [(Some(2), "2".to_owned(), 0.25)]
        );
        assert_eq!(parse_weights(&json!({"1": 1})).unwrap()[0].2, 1.0);
        for (bad, says) in [
            (json!({"2": 1.5}), "from 0"),
            (json!({"2": -0.1}), "from 0"),
            (json!({"2": "0.5"}), "from 0"),
            (json!({"2": 0.1, "3": 0.1}), "at most one"),
            (json!({"x": 0.1}), "not a version number"),
            (json!([0.5]), "expected an object"),
        ] {
            let error = parse_weights(&bad).unwrap_err();
            assert_eq!(error.code, "InvalidArgument");
            assert!(error.message.contains(says), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn an_alias_sends_its_weight_to_the_additional_version() {
        let prod = alias(1, &[(2, 0.3)]);
        assert_eq!(choose_version(&prod, 0.0), 2);
        assert_eq!(choose_version(&prod, 0.29), 2);
        assert_eq!(choose_version(&prod, 0.3), 1);
        assert_eq!(choose_version(&prod, 0.99), 1);
        assert_eq!(choose_version(&alias(1, &[]), 0.0), 1);
        assert_eq!(choose_version(&alias(1, &[(2, 1.0)]), 0.999), 2);
        assert_eq!(choose_version(&alias(1, &[(2, 0.0)]), 0.0), 1);
    }
}
