//! The admin API: integrations, plugins, credentials and runs. Every route
//! needs an `admin` token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Authenticated;
use super::error::ApiError;
use super::{AppState, json_body};
use crate::store::RunFilter;

type Shared = State<Arc<AppState>>;

/// The admin routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/integrations",
            get(list_integrations).post(create_integration),
        )
        .route(
            "/v1/integrations/{name}",
            get(get_integration)
                .put(update_integration)
                .delete(delete_integration),
        )
        .route("/v1/integrations/{name}/activate", post(activate))
        .route("/v1/integrations/{name}/deactivate", post(deactivate))
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/plugins/{name}", get(get_plugin))
        .route("/v1/credentials", get(list_credentials))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("json_body checked it")
}

async fn list_integrations(State(s): Shared, auth: Authenticated) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    Ok(Json(json!({ "integrations": s.integrations.list()? })))
}

async fn create_integration(
    State(s): Shared,
    auth: Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth.require_admin()?;
    let def = parse(&json_body(&headers, body)?);
    let view = s.integrations.create(def)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn get_integration(
    State(s): Shared,
    auth: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let view = s.integrations.get(&name)?;
    let versions = s.integrations.versions(&name)?;
    let mut v = serde_json::to_value(view).map_err(|e| ApiError::internal(e.to_string()))?;
    v["versions"] = json!(versions);
    Ok(Json(v))
}

async fn update_integration(
    State(s): Shared,
    auth: Authenticated,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let def = parse(&json_body(&headers, body)?);
    let (view, changed) = s.integrations.update(&name, def)?;
    let mut v = serde_json::to_value(view).map_err(|e| ApiError::internal(e.to_string()))?;
    v["changed"] = json!(changed);
    Ok(Json(v))
}

async fn delete_integration(
    State(s): Shared,
    auth: Authenticated,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.require_admin()?;
    s.integrations.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn activate(
    State(s): Shared,
    auth: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    Ok(Json(json!(s.integrations.activate(&name)?)))
}

async fn deactivate(
    State(s): Shared,
    auth: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    Ok(Json(json!(s.integrations.deactivate(&name)?)))
}

async fn list_plugins(State(s): Shared, auth: Authenticated) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let files: Vec<Value> = s
        .registry
        .files()
        .iter()
        .map(|f| {
            let plugin = f.plugin.as_deref().and_then(|n| s.registry.get(n));
            json!({"file": f, "plugin": plugin.as_deref().map(crate::plugins::Plugin::to_json)})
        })
        .collect();
    Ok(Json(json!({ "files": files })))
}

async fn get_plugin(
    State(s): Shared,
    auth: Authenticated,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let plugin = s.registry.get(&name);
    let files = s.registry.files_for(&name);
    if plugin.is_none() && files.is_empty() {
        return Err(ApiError::not_found(format!("no plugin `{name}`")));
    }
    Ok(Json(
        json!({"plugin": plugin.as_deref().map(crate::plugins::Plugin::to_json), "files": files}),
    ))
}

async fn list_credentials(State(s): Shared, auth: Authenticated) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let creds: Vec<_> = s
        .registry
        .sandbox()
        .policy()
        .credentials()
        .map(|c| c.summary())
        .collect();
    Ok(Json(json!({ "credentials": creds })))
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    integration: Option<String>,
    status: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<usize>,
    before: Option<String>,
}

async fn list_runs(
    State(s): Shared,
    auth: Authenticated,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let filter = RunFilter {
        integration: q.integration,
        status: q.status,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        limit: q.limit.unwrap_or(50),
        before_id: q.before,
    };
    let (store, integrations) = (s.store.clone(), s.integrations.clone());
    // Runs are written off the invoke path in batches; commit what is queued
    // first so a caller always reads the runs it was answered about.
    let runs =
        tokio::task::spawn_blocking(move || integrations.flush_runs().and_then(|_| store.list_runs(&filter)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    Ok(Json(json!({ "runs": runs })))
}

async fn get_run(
    State(s): Shared,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require_admin()?;
    let (store, integrations) = (s.store.clone(), s.integrations.clone());
    let lookup = id.clone();
    let run =
        tokio::task::spawn_blocking(move || integrations.flush_runs().and_then(|_| store.get_run(&lookup)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let run = run.ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))?;
    Ok(Json(json!(run)))
}
