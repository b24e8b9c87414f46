//! Service and function management: the operations behind the API's management routes (and
//! [`super::Runtime::deploy`]), with Function Compute's JSON shapes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Core;
use super::code::{StagedCode, StoredCode};
use super::error::ApiError;
use super::limits::{
    AsyncConfigInput, FunctionAttributes, FunctionConfig, MAX_FUNCTIONS_PER_SERVICE,
    ServiceAttributes, ServiceConfig,
};
use super::names::{FunctionName, LATEST, ServiceName};
use super::pool::FunctionSpec;
use super::storage::{FunctionRecord, ServiceRecord, StorageError};

/// Code sent with a create / update.
pub(crate) enum CodeUpload {
    /// `code.zipFile` as sent.
    Base64(String),
    /// `code.zipFile` where it lies in the request body, not copied out of it.
    Base64In(ZipText),
    /// A zip built or read by the caller (`--functions`, [`super::Runtime::deploy`]).
    Zip(Vec<u8>),
}

/// The base64 text of `code.zipFile` inside a request body: the body is the only copy.
pub(crate) struct ZipText {
    /// The whole request body.
    pub body: bytes::Bytes,
    /// Where the base64 text lies in it.
    pub range: std::ops::Range<usize>,
}

/// What [`super::Runtime::deploy`] reports about the deployed function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The service.
    pub service: String,
    /// The function.
    pub function: String,
    /// `functionId`.
    pub function_id: String,
    /// `codeChecksum` (CRC-64 of the zip, decimal).
    pub code_checksum: String,
    /// True when it was created, false when an existing function was updated.
    pub created: bool,
}

/// Paging of ListServices / ListFunctions. Other query parameters are ignored rather than refused: the SDKs
/// send tag filters (`tag_<key>=value`) this runtime does not keep.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Page size: 1-100, default 100.
    pub limit: Option<String>,
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// The `nextToken` of the previous page: the first name of this page.
    pub next_token: Option<String>,
    /// Start at this name (inclusive).
    pub start_key: Option<String>,
}

impl ListQuery {
    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref().filter(|l| !l.is_empty()) {
            None => Ok(100),
            Some(text) => match text.parse::<usize>() {
                Ok(limit @ 1..=100) => Ok(limit),
                _ => Err(ApiError::invalid(format!(
                    "limit: '{text}' is not a number in the range 1-100"
                ))),
            },
        }
    }

    pub(crate) fn start(&self) -> String {
        let start = self.start_key.clone().unwrap_or_default();
        let token = self.next_token.clone().unwrap_or_default();
        start.max(token)
    }
}

/// One page of a List call: the first `limit` items (the caller read one more when there is more) as JSON under
/// `field`, and `nextToken`, the name of the next page's first item, when there is a next page.
pub(crate) fn page<T>(
    field: &str,
    mut items: Vec<T>,
    limit: usize,
    name: impl Fn(&T) -> String,
    to_json: impl Fn(&T) -> Value,
) -> Value {
    let next = (items.len() > limit).then(|| name(&items.remove(limit)));
    let mut body = serde_json::Map::new();
    body.insert(
        field.to_owned(),
        Value::Array(items.iter().map(to_json).collect()),
    );
    if let Some(next) = next {
        body.insert("nextToken".to_owned(), json!(next));
    }
    Value::Object(body)
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// ISO-8601 UTC with a `Z`, as Function Compute writes `createdTime`.
pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The ETag of a resource: a hash of its JSON representation, so it changes whenever what GET shows does.
pub(crate) fn etag(body: &Value) -> String {
    format!("{:016x}", super::code::crc64(body.to_string().as_bytes()))
}

fn or_default(value: &Value, default: Value) -> Value {
    if value.is_null() {
        default
    } else {
        value.clone()
    }
}

/// GetService's body.
pub(crate) fn service_json(service: &ServiceRecord) -> Value {
    let c = &service.config;
    json!({
        "serviceName": service.name,
        "serviceId": service.id,
        "description": c.description,
        "role": c.role,
        "logConfig": or_default(&c.log_config, json!({"project": "", "logstore": ""})),
        "vpcConfig": or_default(&c.vpc_config, json!({"vpcId": "", "vSwitchIds": null, "securityGroupId": ""})),
        "internetAccess": c.internet_access,
        "nasConfig": or_default(&c.nas_config, json!({"userId": -1, "groupId": -1, "mountPoints": null})),
        "tracingConfig": or_default(&c.tracing_config, json!({})),
        "ossMountConfig": or_default(&c.oss_mount_config, json!({"mountPoints": null})),
        "createdTime": iso(service.created_ms),
        "lastModifiedTime": iso(service.modified_ms),
    })
}

/// GetFunction's body.
pub(crate) fn function_json(function: &FunctionRecord) -> Value {
    let c = &function.config;
    json!({
        "functionId": function.id,
        "functionName": function.name,
        "description": c.description,
        "runtime": c.runtime,
        "handler": c.handler,
        "timeout": c.timeout,
        "initializer": c.initializer,
        "initializationTimeout": c.initialization_timeout,
        "memorySize": c.memory_size,
        "codeSize": function.code_size,
        "codeChecksum": function.code_checksum.to_string(),
        "environmentVariables": c.environment_variables,
        "instanceConcurrency": c.instance_concurrency,
        "instanceType": c.instance_type,
        "layers": null,
        "createdTime": iso(function.created_ms),
        "lastModifiedTime": iso(function.modified_ms),
    })
}

/// Refuses the call when `If-Match` is given and differs from the resource's current ETag.
pub(crate) fn check_if_match(if_match: Option<&str>, current: &Value) -> Result<(), ApiError> {
    let Some(given) = if_match else { return Ok(()) };
    let current = etag(current);
    let given_bare = given.trim().trim_start_matches("W/").trim_matches('"');
    if given_bare == "*" || given_bare == current {
        Ok(())
    } else {
        Err(ApiError::precondition_failed(given, &current))
    }
}

fn name_matches(kind: &str, in_body: Option<&str>, in_path: &str) -> Result<(), ApiError> {
    match in_body {
        Some(name) if name != in_path => Err(ApiError::invalid(format!(
            "{kind}Name: '{name}' in the body differs from '{in_path}' in the path (renaming is not supported)"
        ))),
        _ => Ok(()),
    }
}

impl Core {
    pub(crate) fn service_record(&self, service: &ServiceName) -> Result<ServiceRecord, ApiError> {
        self.storage
            .service(service.as_str())?
            .ok_or_else(|| ApiError::service_not_found(service.as_str()))
    }

    pub(crate) fn function_record(
        &self,
        service: &ServiceName,
        function: &FunctionName,
    ) -> Result<(ServiceRecord, FunctionRecord), ApiError> {
        let service_record = self.service_record(service)?;
        let function_record = self
            .storage
            .function(service.as_str(), function.as_str())?
            .ok_or_else(|| ApiError::function_not_found(service.as_str(), function.as_str()))?;
        Ok((service_record, function_record))
    }

    /// What the pool needs to run a function.
    pub(crate) fn function_spec(
        &self,
        service: &ServiceRecord,
        function: &FunctionRecord,
    ) -> Result<FunctionSpec, ApiError> {
        let c = &function.config;
        let language = c.language().map_err(|e| {
            ApiError::internal(format!(
                "stored function {}/{}: {e}",
                service.name, function.name
            ))
        })?;
        Ok(FunctionSpec {
            service: service.name.clone(),
            function: function.name.clone(),
            qualifier: LATEST.into(),
            language,
            runtime_name: c.runtime.clone(),
            handler: c.handler.clone(),
            initializer: (!c.initializer.is_empty()).then(|| c.initializer.clone()),
            initialization_timeout: Duration::from_secs(c.initialization_timeout.into()),
            timeout: Duration::from_secs(c.timeout.into()),
            memory_mb: c.memory_size,
            environment: c.environment_variables.clone(),
            code_dir: self.code.dir(function.code_checksum),
            code_checksum: function.code_checksum.to_string(),
            account_id: self.config.account_id.clone(),
            region: self.config.region.clone(),
            log_project: service.config.log_field("project"),
            log_store: service.config.log_field("logstore"),
            credentials: None,
        })
    }

    pub(crate) fn create_service(&self, attributes: ServiceAttributes) -> Result<Value, ApiError> {
        let name = attributes
            .service_name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("serviceName: required"))?;
        let name = ServiceName::parse(name)?;
        let now = now_ms();
        let record = ServiceRecord {
            name: name.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            config: ServiceConfig::apply(None, &attributes),
            created_ms: now,
            modified_ms: now,
        };
        match self.storage.insert_service(&record) {
            Ok(()) => Ok(service_json(&record)),
            Err(StorageError::AlreadyExists) => Err(ApiError::service_exists(name.as_str())),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn list_services(&self, query: &ListQuery) -> Result<Value, ApiError> {
        let limit = query.limit()?;
        let services = self.storage.services(
            query.prefix.as_deref().unwrap_or_default(),
            &query.start(),
            limit + 1,
        )?;
        Ok(page(
            "services",
            services,
            limit,
            |item| item.name.clone(),
            service_json,
        ))
    }

    pub(crate) fn update_service(
        &self,
        name: &ServiceName,
        attributes: ServiceAttributes,
        if_match: Option<&str>,
    ) -> Result<Value, ApiError> {
        name_matches("service", attributes.service_name.as_deref(), name.as_str())?;
        let mut record = self.service_record(name)?;
        check_if_match(if_match, &service_json(&record))?;
        record.config = ServiceConfig::apply(Some(&record.config), &attributes);
        record.modified_ms = now_ms();
        self.storage.update_service(&record)?;
        Ok(service_json(&record))
    }

    pub(crate) fn delete_service(
        &self,
        name: &ServiceName,
        if_match: Option<&str>,
    ) -> Result<(), ApiError> {
        let record = self.service_record(name)?;
        check_if_match(if_match, &service_json(&record))?;
        match self.storage.delete_service(name.as_str()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::service_not_found(name.as_str())),
            Err(StorageError::NotEmpty(count)) => {
                Err(ApiError::service_not_empty(name.as_str(), count))
            }
            Err(StorageError::HasVersions { versions, aliases }) => Err(
                ApiError::service_has_versions(name.as_str(), versions, aliases),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks and unpacks an upload into the code store's staging area (on a blocking thread: it writes files).
    async fn stage_code(&self, upload: CodeUpload) -> Result<StagedCode, ApiError> {
        let store = self.code.clone();
        tokio::task::spawn_blocking(move || match upload {
            CodeUpload::Base64(text) => store.stage_base64(&text),
            CodeUpload::Base64In(text) => match std::str::from_utf8(&text.body[text.range.clone()])
            {
                Ok(base64) => store.stage_base64(base64),
                Err(e) => Err(super::code::CodeError::Base64(e.to_string())),
            },
            CodeUpload::Zip(bytes) => store.stage(&bytes),
        })
        .await
        .map_err(|e| ApiError::internal(format!("unpacking the code failed: {e}")))?
        .map_err(ApiError::from)
    }

    /// Makes staged code visible under its checksum; hold the code lock (see [`Core::code_lock`]).
    fn commit_code(&self, staged: StagedCode) -> Result<StoredCode, ApiError> {
        self.code.commit(staged).map_err(ApiError::from)
    }

    /// Removes stored code that no function refers to and no running instance uses (an instance still
    /// finishing an invocation with old code keeps it until a later collection). Hold the code lock.
    pub(crate) fn collect_code(&self) {
        let referenced = match self.storage.code_checksums() {
            Ok(referenced) => referenced,
            Err(error) => {
                tracing::warn!("code store: cannot list the code functions use: {error}");
                return;
            }
        };
        let stored = match self.code.checksums() {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!("code store: cannot list stored code: {error}");
                return;
            }
        };
        let in_use = self.pool.code_dirs_in_use();
        for checksum in stored {
            if referenced.contains(&checksum) || in_use.contains(&self.code.dir(checksum)) {
                continue;
            }
            match self.code.remove(checksum) {
                Ok(()) => tracing::debug!(checksum, "code store: removed code no function uses"),
                Err(error) => {
                    tracing::warn!(checksum, "code store: cannot remove unused code: {error}")
                }
            }
        }
    }

    /// The code of a create / update request: the upload given with the attributes (the zip of a deploy, or
    /// `code.zipFile` found in the body), else `code.zipFile` of the attributes, or nothing.
    fn code_source(
        attributes: &FunctionAttributes,
        given: Option<CodeUpload>,
    ) -> Result<Option<CodeUpload>, ApiError> {
        match &attributes.code {
            None => Ok(given),
            Some(code) if code.oss_bucket_name.is_some() || code.oss_object_name.is_some() => {
                Err(ApiError::invalid(
                    "code: OSS buckets are not reachable from this runtime; send code.zipFile",
                ))
            }
            Some(code) => match given {
                Some(upload) => Ok(Some(upload)),
                None => code
                    .zip_file
                    .clone()
                    .map(|text| Some(CodeUpload::Base64(text)))
                    .ok_or_else(|| ApiError::invalid("code.zipFile: required (a base64 zip)")),
            },
        }
    }

    pub(crate) async fn create_function(
        &self,
        service: &ServiceName,
        attributes: FunctionAttributes,
        code: Option<CodeUpload>,
    ) -> Result<FunctionRecord, ApiError> {
        let name = attributes
            .function_name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("functionName: required"))?;
        let name = FunctionName::parse(name)?;
        self.service_record(service)?;
        if self
            .storage
            .function(service.as_str(), name.as_str())?
            .is_some()
        {
            return Err(ApiError::function_exists(service.as_str(), name.as_str()));
        }
        let config = FunctionConfig::apply(None, &attributes)?;
        let upload = Self::code_source(&attributes, code)?
            .ok_or_else(|| ApiError::invalid("code: required (code.zipFile with a base64 zip)"))?;
        let staged = self.stage_code(upload).await?;
        let _code_lock = self.code_lock.lock().await;
        let stored = self.commit_code(staged)?;
        let now = now_ms();
        let record = FunctionRecord {
            service: service.to_string(),
            name: name.to_string(),
            id: uuid::Uuid::new_v4().to_string(),
            config,
            code_checksum: stored.checksum,
            code_size: stored.size,
            created_ms: now,
            modified_ms: now,
        };
        let inserted = self
            .storage
            .insert_function(&record, MAX_FUNCTIONS_PER_SERVICE);
        if inserted.is_err() {
            self.collect_code();
        }
        match inserted {
            Ok(()) => Ok(record),
            Err(StorageError::AlreadyExists) => {
                Err(ApiError::function_exists(service.as_str(), name.as_str()))
            }
            Err(StorageError::TooManyFunctions(_)) => Err(ApiError::too_many_functions(
                service.as_str(),
                MAX_FUNCTIONS_PER_SERVICE,
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn list_functions(
        &self,
        service: &ServiceName,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        let limit = query.limit()?;
        self.service_record(service)?;
        let functions = self.storage.functions(
            service.as_str(),
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

    pub(crate) async fn update_function(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        attributes: FunctionAttributes,
        code: Option<CodeUpload>,
        if_match: Option<&str>,
    ) -> Result<FunctionRecord, ApiError> {
        name_matches(
            "function",
            attributes.function_name.as_deref(),
            function.as_str(),
        )?;
        let (_, mut record) = self.function_record(service, function)?;
        check_if_match(if_match, &function_json(&record))?;
        record.config = FunctionConfig::apply(Some(&record.config), &attributes)?;
        let staged = match Self::code_source(&attributes, code)? {
            Some(upload) => Some(self.stage_code(upload).await?),
            None => None,
        };
        let _code_lock = self.code_lock.lock().await;
        if let Some(staged) = staged {
            let stored = self.commit_code(staged)?;
            record.code_checksum = stored.checksum;
            record.code_size = stored.size;
        }
        record.modified_ms = now_ms();
        let updated = self.storage.update_function(&record);
        self.pool.evict(service.as_str(), function.as_str()).await;
        self.collect_code();
        updated?;
        Ok(record)
    }

    pub(crate) async fn delete_function(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        if_match: Option<&str>,
    ) -> Result<(), ApiError> {
        let (_, record) = self.function_record(service, function)?;
        check_if_match(if_match, &function_json(&record))?;
        let _code_lock = self.code_lock.lock().await;
        match self
            .storage
            .delete_function(service.as_str(), function.as_str())
        {
            Ok(_) => {}
            Err(StorageError::HasTriggers(count)) => {
                return Err(ApiError::function_not_empty(
                    service.as_str(),
                    function.as_str(),
                    count,
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.pool.evict(service.as_str(), function.as_str()).await;
        self.collect_code();
        Ok(())
    }

    /// GetFunctionCode: the checksum and a URL of ours serving the zip (signed when the runtime has a key), on
    /// the `host` the client used when known.
    pub(crate) fn function_code(&self, record: &FunctionRecord, host: Option<&str>) -> Value {
        let base = match host {
            Some(host) => format!("http://{host}"),
            None => self.base_url.get().cloned().unwrap_or_default(),
        };
        let checksum = record.code_checksum;
        let expires = now_ms() / 1000 + 3600;
        let url = match &self.config.access_key {
            None => format!("{base}/code-archives/{checksum}.zip"),
            Some(_) => format!(
                "{base}/code-archives/{checksum}.zip?Expires={expires}&Signature={}",
                self.archive_signature(checksum, expires)
            ),
        };
        json!({"checksum": checksum.to_string(), "url": url})
    }

    /// The token of a code archive URL: HMAC of the checksum and expiry under the access key secret.
    pub(crate) fn archive_signature(&self, checksum: u64, expires: i64) -> String {
        let secret = self
            .config
            .access_key
            .as_ref()
            .map(|k| k.secret.expose().to_owned())
            .unwrap_or_default();
        crate::fcsign::signature(&secret, &format!("code-archive\n{checksum}\n{expires}"))
            .replace('+', "-")
            .replace('/', "_")
            .replace('=', "")
    }

    fn async_config_json(
        &self,
        service: &str,
        function: &str,
        record: &super::storage::AsyncConfigRecord,
    ) -> Value {
        json!({
            "service": service,
            "function": function,
            "qualifier": LATEST,
            "maxAsyncRetryAttempts": record.policy.max_retries,
            "maxAsyncEventAgeInSeconds": record.policy.max_age_secs,
            "destinationConfig": null,
            "statefulInvocation": true,
            "createdTime": iso(record.created_ms),
            "lastModifiedTime": iso(record.modified_ms),
        })
    }

    pub(crate) fn get_async_config(
        &self,
        service: &ServiceName,
        function: &FunctionName,
    ) -> Result<Value, ApiError> {
        self.function_record(service, function)?;
        let record = self
            .storage
            .async_config(service.as_str(), function.as_str())?
            .ok_or_else(|| ApiError::async_config_not_found(service.as_str(), function.as_str()))?;
        Ok(self.async_config_json(service.as_str(), function.as_str(), &record))
    }

    pub(crate) fn put_async_config(
        &self,
        service: &ServiceName,
        function: &FunctionName,
        input: AsyncConfigInput,
    ) -> Result<Value, ApiError> {
        self.function_record(service, function)?;
        let policy = input.validate(self.config.async_defaults)?;
        let record =
            self.storage
                .put_async_config(service.as_str(), function.as_str(), policy, now_ms())?;
        Ok(self.async_config_json(service.as_str(), function.as_str(), &record))
    }

    pub(crate) fn delete_async_config(
        &self,
        service: &ServiceName,
        function: &FunctionName,
    ) -> Result<(), ApiError> {
        self.function_record(service, function)?;
        if self
            .storage
            .delete_async_config(service.as_str(), function.as_str())?
        {
            Ok(())
        } else {
            Err(ApiError::async_config_not_found(
                service.as_str(),
                function.as_str(),
            ))
        }
    }

    /// Creates the service if needed, then creates or updates the function.
    pub(crate) async fn deploy(
        &self,
        service: &str,
        function: &str,
        mut attributes: FunctionAttributes,
        zip: &[u8],
    ) -> Result<FunctionInfo, ApiError> {
        let service_name = ServiceName::parse(service)?;
        let function_name = FunctionName::parse(function)?;
        if attributes.code.is_some() {
            return Err(ApiError::invalid(
                "code: give the code as the zip, not as an attribute",
            ));
        }
        if self.storage.service(service)?.is_none() {
            match self.create_service(ServiceAttributes {
                service_name: Some(service.to_owned()),
                ..ServiceAttributes::default()
            }) {
                Ok(_) => {}
                Err(e) if e.code == "ServiceAlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        attributes.function_name = Some(function.to_owned());
        let _upload = self.code.upload().await;
        let exists = self.storage.function(service, function)?.is_some();
        let record = if exists {
            self.update_function(
                &service_name,
                &function_name,
                attributes,
                Some(CodeUpload::Zip(zip.to_vec())),
                None,
            )
            .await?
        } else {
            self.create_function(
                &service_name,
                attributes,
                Some(CodeUpload::Zip(zip.to_vec())),
            )
            .await?
        };
        Ok(FunctionInfo {
            service: record.service,
            function: record.name,
            function_id: record.id,
            code_checksum: record.code_checksum.to_string(),
            created: !exists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paging_takes_the_later_of_start_key_and_next_token() {
        let query = |limit: Option<&str>, start: Option<&str>, token: Option<&str>| ListQuery {
            limit: limit.map(Into::into),
            prefix: None,
            next_token: token.map(Into::into),
            start_key: start.map(Into::into),
        };
        assert_eq!(query(None, None, None).limit(), Ok(100));
        assert_eq!(query(Some("5"), None, None).limit(), Ok(5));
        for bad in ["0", "101", "x", "-1"] {
            let error = query(Some(bad), None, None).limit().unwrap_err();
            assert!(error.message.contains(bad), "{}", error.message);
        }
        assert_eq!(query(None, Some("b"), Some("d")).start(), "d");
        assert_eq!(query(None, Some("e"), None).start(), "e");
    }

    #[test]
    fn if_match_compares_with_the_current_etag() {
        let body = json!({"serviceName": "s"});
        let tag = etag(&body);
        assert_eq!(tag.len(), 16);
        assert!(check_if_match(None, &body).is_ok());
        assert!(check_if_match(Some(&tag), &body).is_ok());
        assert!(check_if_match(Some(&format!("\"{tag}\"")), &body).is_ok());
        assert!(check_if_match(Some("*"), &body).is_ok());
        let error = check_if_match(Some("0000"), &body).unwrap_err();
        assert_eq!(
            (error.status.as_u16(), error.code),
            (412, "PreconditionFailed")
        );
    }

    #[test]
    fn times_are_iso_8601_utc_seconds() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_585_893_448_123), "2020-04-03T05:57:28Z");
    }
}
