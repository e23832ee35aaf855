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

use super::admin::IntegrationPath;
use super::auth::{AdminToken, RunReader};
use super::bodies::{AsyncRunList, QueueCountsView, RunView, RunsResolved, RunsRetried};
use super::error::{AdminErrors, ApiError, BodyErrors, ErrorBody, TokenErrors};
use super::{AppState, blocking, typed_body};
use crate::store::{AsyncRunFilter, MAX_RUN_PAGE};

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

#[utoipa::path(
    post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "the run: `cancelled` at once when queued, retrying or on hold; a running run gets `cancel_requested` and stops shortly", body = RunView, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$request.path.id")))),
        )),
        (status = 404, description = "no such async run (also for another invoker's run)", body = ErrorBody),
        (status = 409, description = "the run already finished", body = ErrorBody),
        TokenErrors,
    )
)]
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
    let view = blocking("cancelling the run", move || anyhow::Ok(queue.cancel(&id))).await??;
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

#[utoipa::path(
    post, path = "/v1/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "`retried`: the run went back to the queue with a fresh retry budget (its attempts so far stay listed)", body = RunsRetried, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$request.path.id")))),
        )),
        (status = 404, description = "no such async run", body = ErrorBody),
        (status = 409, description = "the run is not `failed`", body = ErrorBody),
        AdminErrors,
    )
)]
async fn retry_run(
    State(s): Shared,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<Json<RunsRetried>, ApiError> {
    let retried = act_on_run(&s, id, Action::Retry).await?;
    Ok(Json(RunsRetried { retried }))
}

#[utoipa::path(
    post, path = "/v1/runs/{id}/resolve", tag = "runs",
    params(("id" = String, Path, description = "run id")),
    responses(
        (status = 200, description = "`resolved`: the failed run leaves the dead-letter list", body = RunsResolved),
        (status = 404, description = "no such async run", body = ErrorBody),
        (status = 409, description = "the run is not `failed`", body = ErrorBody),
        AdminErrors,
    )
)]
async fn resolve_run(
    State(s): Shared,
    _admin: AdminToken,
    Path(id): Path<String>,
) -> Result<Json<RunsResolved>, ApiError> {
    let resolved = act_on_run(&s, id, Action::Resolve).await?;
    Ok(Json(RunsResolved { resolved }))
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
            anyhow::Ok(match self {
                Action::Retry => queue.retry(&ids),
                Action::Resolve => queue.resolve(&ids),
            })
        })
        .await?
        .map_err(ApiError::from)
    }
}

/// Retries or resolves one failed run; says why when it cannot.
async fn act_on_run(s: &AppState, id: String, action: Action) -> Result<Vec<String>, ApiError> {
    let done = action.apply(s, vec![id.clone()]).await?;
    if done.is_empty() {
        return Err(conflict_or_missing(s, &id, action.done()).await);
    }
    Ok(done)
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

/// Refuses with 404 unless integration `name` exists: its queue and dead
/// letters are its sub-resources (a deleted integration's runs stay
/// readable through `/v1/runs`).
async fn require_integration(s: &AppState, name: &str) -> Result<(), ApiError> {
    let (integrations, name) = (s.integrations.clone(), name.to_string());
    tokio::task::spawn_blocking(move || integrations.get_record(&name).map(drop))
        .await
        .map_err(|e| ApiError::internal(format!("reading the integration was interrupted: {e}")))?
        .map_err(ApiError::from)
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadLetterQuery {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The last run id of the previous page.
    before: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/integrations/{name}/dead-letters", tag = "runs",
    params(IntegrationPath, DeadLetterQuery),
    responses(
        (status = 200, description = "failed async runs not yet resolved, newest first", body = AsyncRunList, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/runs/0/id")))),
            ("RetryRun" = (operation_id = "retry_run", parameters(("id" = "$response.body#/runs/0/id")))),
            ("ResolveRun" = (operation_id = "resolve_run", parameters(("id" = "$response.body#/runs/0/id")))),
        )),
        (status = 400, description = "`invalid_query`: a value outside its bounds", body = ErrorBody),
        (status = 404, description = "no such integration (a deleted integration's runs stay listed in `GET /v1/runs?mode=async`)", body = ErrorBody),
        AdminErrors,
    )
)]
async fn dead_letters(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = super::admin::page_limit(q.limit, 100)?;
    require_integration(&s, &name).await?;
    let filter = AsyncRunFilter {
        integration: Some(name),
        status: None,
        dead_letters: true,
        limit,
        before_id: q.before,
    };
    let queue = s.queue.clone();
    let runs = blocking("listing dead letters", move || anyhow::Ok(queue.list(&filter)?)).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// Which dead letters a bulk action applies to, as sent: exactly one of
/// [`DeadLetterSelection`]'s forms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    ids: Option<Vec<String>>,
    all: Option<bool>,
    error_code: Option<String>,
}

/// Which dead letters a bulk action applies to: named runs, or every dead
/// letter of the integration (optionally only those with one error code).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum DeadLetterSelection {
    /// `{"ids": [...]}`: these runs, 1 to 500 of them.
    ByIds(SelectIds),
    /// `{"all": true, "error_code": "..."}`: every dead letter (at most
    /// 500 per call), or those whose error has this code.
    All(SelectAll),
}

/// `{"ids": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SelectIds {
    /// Run ids.
    #[schema(min_items = 1, max_items = 500)]
    ids: Vec<String>,
}

/// `{"all": true, "error_code": "..."}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SelectAll {
    /// Must be `true`.
    #[schema(schema_with = only_true)]
    all: bool,
    /// Only dead letters whose error has this `code`.
    error_code: Option<String>,
}

/// The schema of `true` alone.
fn only_true() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

async fn select(
    s: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<String>, ApiError> {
    const HOW: &str =
        "send {\"ids\": [...]} (1 to 500 run ids) or {\"all\": true} (optionally with \"error_code\")";
    let sel: Selection = typed_body(headers, body, HOW, &[])?;
    let error_code = match (sel.ids, sel.all, sel.error_code) {
        (Some(ids), None, None) if (1..=MAX_RUN_PAGE).contains(&ids.len()) => return Ok(ids),
        (None, Some(true), code) => code,
        _ => return Err(ApiError::bad_request("invalid_selection", HOW)),
    };
    let (queue, integration) = (s.queue.clone(), name.to_string());
    blocking("listing dead letters", move || {
        anyhow::Ok(queue.dead_letter_ids(&integration, error_code.as_deref())?)
    })
    .await
}

#[utoipa::path(
    post, path = "/v1/integrations/{name}/dead-letters/retry", tag = "runs",
    params(IntegrationPath),
    request_body(content = DeadLetterSelection, content_type = "application/json"),
    responses(
        (status = 200, description = "`retried`: the runs sent back to the queue (failed runs of the selection only)", body = RunsRetried),
        (status = 400, description = "the body is not JSON, or not one of the selection's forms", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        BodyErrors, AdminErrors,
    )
)]
async fn retry_dead_letters(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunsRetried>, ApiError> {
    let retried = act_on_dead_letters(&s, &name, &headers, body, Action::Retry).await?;
    Ok(Json(RunsRetried { retried }))
}

#[utoipa::path(
    post, path = "/v1/integrations/{name}/dead-letters/resolve", tag = "runs",
    params(IntegrationPath),
    request_body(content = DeadLetterSelection, content_type = "application/json"),
    responses(
        (status = 200, description = "`resolved`: the runs leave the dead-letter list (failed runs of the selection only)", body = RunsResolved),
        (status = 400, description = "the body is not JSON, or not one of the selection's forms", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        BodyErrors, AdminErrors,
    )
)]
async fn resolve_dead_letters(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunsResolved>, ApiError> {
    let resolved = act_on_dead_letters(&s, &name, &headers, body, Action::Resolve).await?;
    Ok(Json(RunsResolved { resolved }))
}

/// Retries or resolves the dead letters a request body selects.
async fn act_on_dead_letters(
    s: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    action: Action,
) -> Result<Vec<String>, ApiError> {
    let ids = select(s, name, headers, body).await?;
    require_integration(s, name).await?;
    action.apply(s, ids).await
}

#[utoipa::path(
    get, path = "/v1/integrations/{name}/queue", tag = "runs",
    params(IntegrationPath),
    responses(
        (status = 200, description = "the integration's async runs counted by status", body = QueueCountsView),
        (status = 404, description = "no such integration", body = ErrorBody),
        AdminErrors,
    )
)]
async fn queue_counts(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<QueueCountsView>, ApiError> {
    require_integration(&s, &name).await?;
    let queue = s.queue.clone();
    let lookup = name.clone();
    let counts = blocking("counting runs", move || queue.counts(&lookup)).await?;
    Ok(Json(QueueCountsView {
        integration: name,
        counts,
    }))
}
