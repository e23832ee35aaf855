//! Errors as the HTTP API returns them: a status and a JSON body
//! `{"error": {"code", "message", "step"?, "run_id"?, "problems"?, "used_by"?}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::integrations::{IntegrationError, StepFailure};
use crate::sandbox::InvocationError;

/// An API error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Extra fields (`step`, `run_id`, `problems`, `details`).
    pub extra: Value,
}

impl ApiError {
    /// An error with no extra fields.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            extra: json!({}),
        }
    }

    /// 401.
    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500, for the host's own failures.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub(crate) fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra[key] = value;
        self
    }

    /// A failed pipeline step, with the status its cause deserves.
    pub fn from_step(f: &StepFailure, run_id: &str) -> ApiError {
        let status = step_status(f);
        let mut e = ApiError::new(status, f.error.code(), f.error.to_string())
            .with("step", json!(f.step.as_str()))
            .with("run_id", json!(run_id))
            .with("retryable", json!(f.error.retryable()));
        if let InvocationError::Plugin { details: Some(d), .. } = &f.error {
            e = e.with("details", d.clone());
        }
        e
    }
}

/// The status for a failed step: the caller's input (400, 413, 422), the
/// plugin or the external system failing (502), time (504), capacity (503).
/// 500 is left for the host's own bugs.
fn step_status(f: &StepFailure) -> StatusCode {
    use crate::integrations::Step;
    match &f.error {
        InvocationError::InputNotJson(_) => StatusCode::BAD_REQUEST,
        InvocationError::InputTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        InvocationError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        InvocationError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        // Two plugin codes are conventions every example plugin and the
        // author's guide use: `invalid_input` is the caller's fault,
        // `upstream_timeout` a gateway timeout.
        InvocationError::Plugin { code, retryable, .. } => {
            let input_step = f.step == Step::InputProcessor;
            if code == "invalid_input" || (input_step && !retryable) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else if code == "upstream_timeout" {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            }
        }
        InvocationError::OutputTooLarge { .. }
        | InvocationError::OutputNotJson { .. }
        | InvocationError::MemoryLimit { .. }
        | InvocationError::ResourceLimit { .. }
        | InvocationError::StackOverflow { .. }
        | InvocationError::Trapped { .. } => StatusCode::BAD_GATEWAY,
        InvocationError::UnknownOperation { .. }
        | InvocationError::WrongKind { .. }
        | InvocationError::Binding(_)
        | InvocationError::Instantiate { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<IntegrationError> for ApiError {
    fn from(e: IntegrationError) -> ApiError {
        let message = e.to_string();
        match e {
            IntegrationError::NotFound(_) => ApiError::not_found(message),
            IntegrationError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            IntegrationError::Invalid(problems) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_definition", message)
                    .with("problems", json!(problems))
            }
            IntegrationError::Refused(problems) => {
                ApiError::new(StatusCode::CONFLICT, "activation_refused", message)
                    .with("problems", json!(problems))
            }
            IntegrationError::NotRunnable { reasons, .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_runnable", message).with("problems", json!(reasons))
            }
            IntegrationError::NotActive { .. } => ApiError::new(StatusCode::CONFLICT, "not_active", message),
            IntegrationError::Degraded { reasons, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "integration_degraded", message)
                    .with("problems", json!(reasons))
            }
            IntegrationError::AtConcurrency { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "integration_busy", message)
                    .with("retry_after_secs", json!(1))
            }
            IntegrationError::Store(_) => ApiError::internal(message),
        }
    }
}

impl From<crate::queue::engine::QueueError> for ApiError {
    fn from(e: crate::queue::engine::QueueError) -> ApiError {
        use crate::queue::engine::QueueError;
        let message = e.to_string();
        match e {
            QueueError::Integration(i) => i.into(),
            QueueError::Full { retry_after, .. } => {
                let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", message);
                err.extra["retry_after_secs"] = json!(retry_after.as_secs().max(1));
                err
            }
            QueueError::KeyReused(run) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            )
            .with("run_id", json!(run)),
            QueueError::BadCallback(_) => ApiError::bad_request("invalid_callback", message),
            QueueError::NotFound(_) => ApiError::not_found(message),
            QueueError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            QueueError::Store(_) => ApiError::internal(message),
        }
    }
}

/// The answers every route that needs a token may give besides its own:
/// no valid token, or the host's own failure.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TokenErrors {
    /// No `Authorization: Bearer` header, or an unknown or revoked token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The host failed (its store); the message says where.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// [`TokenErrors`] and the refusal of a valid token without the `admin` role.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminErrors {
    /// No `Authorization: Bearer` header, or an unknown or revoked token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token is valid but has the `invoker` role; this route needs `admin`.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The host failed (its store); the message says where.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// What every route that reads a JSON body may answer about the body itself,
/// before reading what it says (`400` for a body that is not JSON is listed
/// by each route with its other `400` causes).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// The body is larger than the host's `max_body_bytes` (8 MiB by default).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not sent as `Content-Type: application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
}

/// The body of every error response.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code (`not_found`, `invalid_json`, a plugin's own code...).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The failing pipeline step, for invocation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The run that failed, for invocation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Whether trying again later may succeed, for invocation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Every problem found, for invalid definitions and degraded integrations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
    /// The integrations that still use a credential, for `credential_in_use`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_by: Option<Vec<String>>,
    /// A plugin error's structured details.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let extra = |k: &str| self.extra.get(k).cloned();
        let detail = ErrorDetail {
            step: extra("step").and_then(|v| v.as_str().map(str::to_string)),
            run_id: extra("run_id").and_then(|v| v.as_str().map(str::to_string)),
            retryable: extra("retryable").and_then(|v| v.as_bool()),
            problems: extra("problems").and_then(|v| serde_json::from_value(v).ok()),
            used_by: extra("used_by").and_then(|v| serde_json::from_value(v).ok()),
            details: extra("details"),
            code: self.code,
            message: self.message,
        };
        let run_id = detail.run_id.clone();
        let mut response = (self.status, Json(ErrorBody { error: detail })).into_response();
        if let Some(id) = run_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            response.headers_mut().insert(super::RUN_ID_HEADER, id);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        if let Some(secs) = self.extra.get("retry_after_secs").and_then(Value::as_u64)
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }
}
