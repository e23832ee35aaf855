//! Async runs: cancel, retry and resolve runs; the dead-letter list and
//! queue counts of an integration.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminToken, RunReader};
use super::error::{ApiError, ErrorBody};
use super::{AppState, blocking, json_body};
use crate::store::AsyncRunFilter;

type Shared = State<Arc<AppState>>;

/// The async-run routes, each with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(cancel_run))
        .routes(routes!(retry_run))
        .routes(routes!(resolve_run))
        .routes(routes!(dead_letters))
        .routes(routes!(retry_dead_letters))
        .routes(routes!(resolve_dead_letters))
        .routes(routes!(queue_counts))
}

#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = String, Path, description = "run id")), responses((status = 200, description = "the run: `cancelled` at once when queued, retrying or on hold; a running run gets `cancel_requested` and stops shortly", body = Object), (status = 404, description = "no such async run", body = ErrorBody), (status = 409, description = "the run already finished", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 404, description = "also for another invoker's run", body = ErrorBody)))]
async fn cancel_run(
    State(s): Shared,
    auth: RunReader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let queue = s.queue.clone();
    let lookup = id.clone();
    let run = blocking("reading the run", move || queue.store_run(&lookup)).await?;
    let run = run.ok_or_else(|| ApiError::not_found(format!("no async run `{id}`")))?;
    auth.may_follow(run.token_id.as_deref(), &id)?;
    let queue = s.queue.clone();
    let view = blocking("cancelling the run", move || Ok(queue.cancel(&id))).await??;
    Ok(Json(if auth.is_admin() { view } else { invoker_view(view) }))
}

/// What an invoker sees of its own run, sync or async: its status, output
/// and error, never the steps' logs, callout records or saved request.
/// Admins see the whole record.
pub(super) fn invoker_view(run: Value) -> Value {
    const SHOWN: &[&str] = &[
        "id",
        "mode",
        "integration",
        "version",
        "status",
        "attempt_count",
        "next_attempt_at_ms",
        "error_code",
        "cancel_requested",
        "created_at_ms",
        "updated_at_ms",
        "finished_at_ms",
        "started_at_ms",
        "ended_at_ms",
        "duration_ms",
        "output",
        "error",
        "callback",
    ];
    let Value::Object(mut fields) = run else {
        return Value::Null;
    };
    // A sync run's output is its saved response, when payloads are kept.
    if let Some(response) = fields.remove("response")
        && !fields.contains_key("output")
    {
        let output = match response {
            Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            other => other,
        };
        fields.insert("output".into(), output);
    }
    if !fields.contains_key("mode") {
        fields.insert("mode".into(), json!("sync"));
    }
    fields.retain(|k, _| SHOWN.contains(&k.as_str()));
    Value::Object(fields)
}

#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs", params(("id" = String, Path, description = "run id")), responses((status = 200, description = "`retried`: the run went back to the queue with a fresh retry budget (its attempts so far stay listed)", body = Object), (status = 409, description = "the run is not `failed`", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn retry_run(
    State(s): Shared,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act_on_run(&s, id, Action::Retry).await
}

#[utoipa::path(post, path = "/v1/runs/{id}/resolve", tag = "runs", params(("id" = String, Path, description = "run id")), responses((status = 200, description = "`resolved`: the failed run leaves the dead-letter list", body = Object), (status = 409, description = "the run is not `failed`", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn resolve_run(
    State(s): Shared,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act_on_run(&s, id, Action::Resolve).await
}

/// What an admin does to failed runs.
#[derive(Clone, Copy)]
enum Action {
    /// Back to the queue with a fresh retry budget.
    Retry,
    /// Off the dead-letter list.
    Resolve,
}

impl Action {
    /// The past participle: the response's key and the error's wording.
    fn done(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Resolve => "resolved",
        }
    }

    /// Applies the action to `ids`; returns those it changed.
    async fn apply(self, s: &AppState, ids: Vec<String>) -> Result<Vec<String>, ApiError> {
        let queue = s.queue.clone();
        blocking("changing runs", move || {
            Ok(match self {
                Action::Retry => queue.retry(&ids),
                Action::Resolve => queue.resolve(&ids),
            })
        })
        .await?
        .map_err(ApiError::from)
    }
}

/// Retries or resolves one failed run; says why when it cannot.
async fn act_on_run(s: &AppState, id: String, action: Action) -> Result<Json<Value>, ApiError> {
    let done = action.apply(s, vec![id.clone()]).await?;
    if done.is_empty() {
        return Err(conflict_or_missing(s, &id, action.done()).await);
    }
    Ok(Json(json!({ action.done(): done })))
}

async fn conflict_or_missing(s: &AppState, id: &str, what: &str) -> ApiError {
    let queue = s.queue.clone();
    let lookup = id.to_string();
    match blocking("reading the run", move || queue.store_run(&lookup)).await {
        Ok(Some(run)) => ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_failed",
            format!(
                "run `{id}` is {}; only failed runs can be {what}",
                run.status.replace('_', "-")
            ),
        ),
        Ok(None) => ApiError::not_found(format!("no async run `{id}`")),
        Err(e) => e,
    }
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize)]
struct DeadLetterQuery {
    limit: Option<usize>,
    before: Option<String>,
}

#[utoipa::path(get, path = "/v1/integrations/{name}/dead-letters", tag = "runs", params(("name" = String, Path, description = "integration"), ("limit" = Option<usize>, Query, description = "at most 500"), ("before" = Option<String>, Query, description = "run id to page from")), responses((status = 200, description = "failed async runs not yet resolved, newest first", body = Object), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn dead_letters(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let filter = AsyncRunFilter {
        integration: Some(name),
        status: None,
        dead_letters: true,
        limit: q.limit.unwrap_or(100),
        before_id: q.before,
    };
    let queue = s.queue.clone();
    let runs = blocking("listing dead letters", move || Ok(queue.list(&filter)?)).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// Which dead letters a bulk action applies to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    /// These runs.
    #[serde(default)]
    ids: Vec<String>,
    /// Or every dead letter of the integration...
    #[serde(default)]
    all: bool,
    /// ...with this error code.
    error_code: Option<String>,
}

async fn select(
    s: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<String>, ApiError> {
    let text = json_body(headers, body)?;
    let sel: Selection = serde_json::from_str(&text).map_err(|e| {
        ApiError::bad_request(
            "invalid_selection",
            format!("{e}: send {{\"ids\": [...]}} or {{\"all\": true, \"error_code\": \"...\"}}"),
        )
    })?;
    if sel.ids.is_empty() && !sel.all {
        return Err(ApiError::bad_request(
            "invalid_selection",
            "name the runs (`ids`) or ask for `all` (optionally with `error_code`)",
        ));
    }
    if !sel.all {
        return Ok(sel.ids);
    }
    let (queue, integration) = (s.queue.clone(), name.to_string());
    blocking("listing dead letters", move || {
        Ok(queue.dead_letter_ids(&integration, sel.error_code.as_deref())?)
    })
    .await
}

#[utoipa::path(post, path = "/v1/integrations/{name}/dead-letters/retry", tag = "runs", params(("name" = String, Path, description = "integration")), request_body(content = Object, description = "`{\"ids\": [...]}` or `{\"all\": true, \"error_code\": \"upstream_timeout\"}` (at most 500 per call)"), responses((status = 200, description = "`retried`: the runs sent back to the queue", body = Object), (status = 400, description = "bad selection", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn retry_dead_letters(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    act_on_dead_letters(&s, &name, &headers, body, Action::Retry).await
}

#[utoipa::path(post, path = "/v1/integrations/{name}/dead-letters/resolve", tag = "runs", params(("name" = String, Path, description = "integration")), request_body(content = Object, description = "`{\"ids\": [...]}` or `{\"all\": true, \"error_code\": \"...\"}`"), responses((status = 200, description = "`resolved`: the runs leave the dead-letter list", body = Object), (status = 400, description = "bad selection", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn resolve_dead_letters(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    act_on_dead_letters(&s, &name, &headers, body, Action::Resolve).await
}

/// Retries or resolves the dead letters a request body selects.
async fn act_on_dead_letters(
    s: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    action: Action,
) -> Result<Json<Value>, ApiError> {
    let ids = select(s, name, headers, body).await?;
    let done = action.apply(s, ids).await?;
    Ok(Json(json!({ action.done(): done })))
}

#[utoipa::path(get, path = "/v1/integrations/{name}/queue", tag = "runs", params(("name" = String, Path, description = "integration")), responses((status = 200, description = "the integration's async runs counted by status", body = Object), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn queue_counts(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let queue = s.queue.clone();
    let lookup = name.clone();
    let counts = blocking("counting runs", move || queue.counts(&lookup)).await?;
    Ok(Json(json!({ "integration": name, "counts": counts })))
}
