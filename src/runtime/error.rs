//! API errors as Function Compute answers them: a status, `{"ErrorCode","ErrorMessage"}` and
//! `Content-Type: application/json` (the request id header is added to every response by a middleware).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::AuthError;
use super::code::CodeError;
use super::limits::InvalidAttribute;
use super::names::NameError;
use super::storage::StorageError;

/// One API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `ErrorCode`: what SDKs switch on.
    pub code: &'static str,
    /// `ErrorMessage`: what a person reads.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 InvalidArgument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    /// 400 EntityTooLarge with Function Compute's message.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            format!("payload size exceeds maximum allowed size ({limit} bytes)"),
        )
    }

    /// 400 PathNotSupported.
    pub fn path_not_supported(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "PathNotSupported",
            format!("'{method}' against '{path}' is not supported"),
        )
    }

    /// 404 ServiceNotFound.
    pub fn service_not_found(service: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ServiceNotFound",
            format!("service '{service}' does not exist"),
        )
    }

    /// 404 FunctionNotFound.
    pub fn function_not_found(service: &str, function: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "FunctionNotFound",
            format!("function '{function}' does not exist in service '{service}'"),
        )
    }

    /// 404 VersionNotFound: no published version of that number (never published, or deleted).
    pub fn version_not_found(service: &str, version: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "VersionNotFound",
            format!("version '{version}' does not exist in service '{service}'"),
        )
    }

    /// 404 AliasNotFound.
    pub fn alias_not_found(service: &str, alias: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "AliasNotFound",
            format!("alias '{alias}' does not exist in service '{service}'"),
        )
    }

    /// 409 ServiceNotEmpty: versions and aliases go before their service.
    pub fn service_has_versions(service: &str, versions: usize, aliases: usize) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ServiceNotEmpty",
            format!(
                "service '{service}' still has {versions} published version(s) and {aliases} alias(es): delete \
                 them first"
            ),
        )
    }

    /// 409 FunctionNotEmpty: triggers go before their function.
    pub fn function_not_empty(service: &str, function: &str, triggers: usize) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "FunctionNotEmpty",
            format!(
                "function '{function}' in service '{service}' has {triggers} trigger(s): delete them first"
            ),
        )
    }

    /// 409 TriggerAlreadyExists.
    pub fn trigger_exists(service: &str, function: &str, trigger: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "TriggerAlreadyExists",
            format!(
                "trigger '{trigger}' already exists in function '{function}' of service '{service}'"
            ),
        )
    }

    /// 404 TriggerNotFound.
    pub fn trigger_not_found(service: &str, function: &str, trigger: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "TriggerNotFound",
            format!(
                "trigger '{trigger}' does not exist in function '{function}' of service '{service}'"
            ),
        )
    }

    /// 400 LimitExceededError: too many triggers on one function.
    pub fn too_many_triggers(service: &str, function: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "LimitExceededError",
            format!(
                "function '{function}' in service '{service}' already has {limit} triggers, the most a function \
                 can have"
            ),
        )
    }

    /// 409 AliasAlreadyExists.
    pub fn alias_exists(service: &str, alias: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AliasAlreadyExists",
            format!("alias '{alias}' already exists in service '{service}'"),
        )
    }

    /// 404 AsyncConfigNotExists: GetFunctionAsyncInvokeConfig of a function without one.
    pub fn async_config_not_found(service: &str, function: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "AsyncConfigNotExists",
            format!(
                "async invoke config of function '{function}' in service '{service}' does not exist"
            ),
        )
    }

    /// 409 ServiceAlreadyExists.
    pub fn service_exists(service: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ServiceAlreadyExists",
            format!("service '{service}' already exists"),
        )
    }

    /// 409 FunctionAlreadyExists.
    pub fn function_exists(service: &str, function: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "FunctionAlreadyExists",
            format!("function '{function}' already exists in service '{service}'"),
        )
    }

    /// 409 ServiceNotEmpty.
    pub fn service_not_empty(service: &str, functions: usize) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "ServiceNotEmpty",
            format!("service '{service}' still has {functions} function(s): delete them first"),
        )
    }

    /// 400 LimitExceededError: too many functions in a service.
    pub fn too_many_functions(service: &str, limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "LimitExceededError",
            format!(
                "service '{service}' already has {limit} functions, the most a service can have"
            ),
        )
    }

    /// 412 PreconditionFailed: `If-Match` did not match the current ETag.
    pub fn precondition_failed(given: &str, current: &str) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            format!("If-Match '{given}' does not match the current ETag '{current}'"),
        )
    }

    /// 429 ResourceExhausted: the account-wide concurrency limit is reached.
    pub fn throttled(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ResourceExhausted",
            format!(
                "Rate exceeded: {limit} concurrent invocations are running, the limit of this runtime"
            ),
        )
    }

    /// 403 AccessDenied.
    pub fn new_access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    /// 500 InternalServerError: our own failure (the message says what broke).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }

    /// 503 ResourceThrottled: the runtime is shutting down, or too many uploads are being unpacked.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ResourceThrottled",
            message,
        )
    }
}

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        ApiError::invalid(error.to_string())
    }
}

impl From<InvalidAttribute> for ApiError {
    fn from(error: InvalidAttribute) -> Self {
        ApiError::invalid(error.0)
    }
}

impl From<CodeError> for ApiError {
    fn from(error: CodeError) -> Self {
        match error {
            CodeError::ZipTooLarge { limit, .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                format!("code.zipFile: {error} (limit {limit} bytes)"),
            ),
            error if error.is_client_error() => ApiError::invalid(error.to_string()),
            error => ApiError::internal(error.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, error.code(), error.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        ApiError::internal(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"ErrorCode": self.code, "ErrorMessage": self.message});
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
