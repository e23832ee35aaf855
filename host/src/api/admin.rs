//! The admin API: integrations, plugins, credentials and runs. Every route
//! needs an `admin` token.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminToken, RunReader};
use super::error::{ApiError, ErrorBody};
use super::{AppState, json_body};
use crate::store::RunFilter;

type Shared = State<Arc<AppState>>;

/// The admin routes, each with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_integrations, create_integration))
        .routes(routes!(get_integration, update_integration, delete_integration))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(list_plugins))
        .routes(routes!(get_plugin))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("json_body checked it")
}

#[utoipa::path(get, path = "/v1/integrations", tag = "admin", responses((status = 200, description = "every integration, with status, version and problems", body = Object), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn list_integrations(State(s): Shared, _admin: AdminToken) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "integrations": s.integrations.list()? })))
}

#[utoipa::path(post, path = "/v1/integrations", tag = "admin", request_body(content = Object, description = "an integration definition"), responses((status = 201, description = "created as a draft", body = Object), (status = 409, description = "the name is taken", body = ErrorBody), (status = 422, description = "invalid definition; `problems` lists why", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn create_integration(
    State(s): Shared,
    _admin: AdminToken,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let def = parse(&json_body(&headers, body)?);
    let view = s.integrations.create(def)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/integrations/{name}", tag = "admin", params(("name" = String, Path, description = "integration name")), responses((status = 200, description = "the integration with its version history", body = Object), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn get_integration(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = s.integrations.get(&name)?;
    let versions = s.integrations.versions(&name)?;
    let mut v = serde_json::to_value(view).map_err(|e| ApiError::internal(e.to_string()))?;
    v["versions"] = json!(versions);
    Ok(Json(v))
}

#[utoipa::path(put, path = "/v1/integrations/{name}", tag = "admin", params(("name" = String, Path, description = "integration name")), request_body(content = Object, description = "the new definition"), responses((status = 200, description = "updated; `changed` says whether a version was added", body = Object), (status = 404, description = "not found", body = ErrorBody), (status = 422, description = "invalid definition", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn update_integration(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let def = parse(&json_body(&headers, body)?);
    let (view, changed) = s.integrations.update(&name, def).await?;
    let mut v = serde_json::to_value(view).map_err(|e| ApiError::internal(e.to_string()))?;
    v["changed"] = json!(changed);
    Ok(Json(v))
}

#[utoipa::path(delete, path = "/v1/integrations/{name}", tag = "admin", params(("name" = String, Path, description = "integration name")), responses((status = 204, description = "deleted; its runs stay"), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn delete_integration(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.integrations.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/integrations/{name}/activate", tag = "admin", params(("name" = String, Path, description = "integration name")), responses((status = 200, description = "active", body = Object), (status = 422, description = "refused; `problems` lists every problem", body = ErrorBody), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn activate(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.integrations.activate(&name).await?)))
}

#[utoipa::path(post, path = "/v1/integrations/{name}/deactivate", tag = "admin", params(("name" = String, Path, description = "integration name")), responses((status = 200, description = "inactive", body = Object), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn deactivate(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.integrations.deactivate(&name)?)))
}

#[utoipa::path(get, path = "/v1/plugins", tag = "admin", responses((status = 200, description = "every file of the plugin folder with its status, load error and plugin", body = Object), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn list_plugins(State(s): Shared, _admin: AdminToken) -> Result<Json<Value>, ApiError> {
    let files = s.registry.files_json();
    Ok(Json(json!({ "files": files })))
}

#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "admin", params(("name" = String, Path, description = "plugin name")), responses((status = 200, description = "manifest, kind, limits, files and load errors", body = Object), (status = 404, description = "not found", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn get_plugin(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let plugin = s.registry.get(&name);
    let files = s.registry.files_for(&name);
    if plugin.is_none() && files.is_empty() {
        return Err(ApiError::not_found(format!("no plugin `{name}`")));
    }
    Ok(Json(
        json!({"plugin": plugin.as_deref().map(crate::plugins::Plugin::to_json), "files": files}),
    ))
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// `async` lists async runs (queued, running, ... final) instead.
    mode: Option<String>,
    integration: Option<String>,
    status: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<usize>,
    before: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", tag = "admin", params(("mode" = Option<String>, Query, description = "`async` for async runs"), ("integration" = Option<String>, Query), ("status" = Option<String>, Query, description = "`succeeded` or `failed`; for async runs also `queued`, `running`, `retrying`, `on-hold`, `cancelled`"), ("since_ms" = Option<u64>, Query), ("until_ms" = Option<u64>, Query), ("limit" = Option<usize>, Query, description = "at most 500"), ("before" = Option<String>, Query, description = "run id to page from")), responses((status = 200, description = "runs, newest first", body = Object), (status = 400, description = "bad query", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn list_runs(
    State(s): Shared,
    _admin: AdminToken,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if q.mode.as_deref() == Some("async") {
        let filter = crate::store::AsyncRunFilter {
            integration: q.integration,
            status: q.status.map(|st| st.replace('-', "_")),
            dead_letters: false,
            limit: q.limit.unwrap_or(50),
            before_id: q.before,
        };
        let queue = s.queue.clone();
        let runs = super::blocking("listing async runs", move || Ok(queue.list(&filter)?)).await?;
        return Ok(Json(json!({ "runs": runs })));
    }
    let filter = RunFilter {
        integration: q.integration,
        status: q.status,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        limit: q.limit.unwrap_or(50),
        before_id: q.before,
    };
    let runs = read_runs(&s, move |store| store.list_runs(&filter)).await?;
    Ok(Json(json!({ "runs": runs })))
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "admin", params(("id" = String, Path, description = "run id"), ("wait" = Option<String>, Query, description = "for an async run: wait up to this long (`30s`, `500ms`; at most 60 s) for it to finish")), responses((status = 200, description = "the run. Admin tokens see the whole record: for a sync run its steps, callouts, logs and saved payloads; for an async run its status, attempts, output or error and callback state. The invoker token that started a run sees its status, output and error only", body = Object), (status = 404, description = "no such run (also for another invoker's run)", body = ErrorBody), (status = 400, description = "bad `wait`", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody)))]
async fn get_run(
    State(s): Shared,
    auth: RunReader,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<Json<Value>, ApiError> {
    let wait = match q.wait.as_deref() {
        None => None,
        Some(w) => Some(
            humantime::parse_duration(w)
                .map_err(|e| {
                    ApiError::bad_request("invalid_query", format!("`wait={w}`: {e} (use `30s`, `500ms`)"))
                })?
                .min(std::time::Duration::from_secs(60)),
        ),
    };
    let queue = s.queue.clone();
    let lookup = id.clone();
    let found = super::blocking("reading the run", move || queue.store_run(&lookup)).await?;
    if let Some(run) = found {
        auth.may_follow(run.token_id.as_deref(), &id)?;
        let view = match wait {
            Some(w) => s.queue.wait(&id, w).await?,
            None => s.queue.get(&id)?,
        };
        let view = view.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
        return Ok(Json(if auth.is_admin() {
            view
        } else {
            super::runs::invoker_view(view)
        }));
    }
    if !auth.is_admin() {
        // An invoker may read its own sync runs' outcome too; checked
        // after the read so that a missing run and another caller's run
        // look the same.
        let lookup = id.clone();
        let run = read_runs(&s, move |store| store.get_run(&lookup)).await?;
        let run = run.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
        auth.may_follow(run.token_id.as_deref(), &id)?;
        return Ok(Json(super::runs::invoker_view(json!(run))));
    }
    let lookup = id.clone();
    let run = read_runs(&s, move |store| store.get_run(&lookup)).await?;
    let run = run.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    Ok(Json(json!(run)))
}

/// Query of `GET /v1/runs/{id}`.
#[derive(Debug, Deserialize)]
struct RunQuery {
    wait: Option<String>,
}

/// Reads runs after committing what the run writer has queued: runs are
/// written off the invoke path in batches, and a caller must always find the
/// runs it was answered about.
async fn read_runs<T: Send + 'static>(
    s: &AppState,
    read: impl FnOnce(&crate::store::Store) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let (store, integrations) = (s.store.clone(), s.integrations.clone());
    super::blocking("reading runs", move || {
        integrations.flush_runs()?;
        read(&store)
    })
    .await
}
