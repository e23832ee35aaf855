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
use super::bodies::{
    IntegrationDetail, IntegrationList, IntegrationUpdated, PluginDetail, PluginList, RunList, RunView,
};
use super::error::{AdminErrors, ApiError, BodyErrors, ErrorBody, TokenErrors};
use super::{AppState, typed_body};
use crate::integrations::IntegrationView;
use crate::integrations::definition::Definition;
use crate::store::{MAX_RUN_PAGE, RunFilter};

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

/// The free-form parts of a definition: the steps' plugin configurations.
const PLUGIN_CONFIGS: &[&str] = &[
    "/connector/config",
    "/input_processor/config",
    "/output_processor/config",
];

/// Path of one integration, with the name's rules.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct IntegrationPath {
    /// Integration name: lowercase letters, digits, `-` and `_`, starting
    /// with a letter, at most 64 characters.
    #[param(pattern = r"^[a-z][a-z0-9_-]{0,63}$")]
    #[allow(dead_code)]
    name: String,
}

#[utoipa::path(
    get, path = "/v1/integrations", tag = "admin",
    responses(
        (status = 200, description = "every integration, with status, version and problems", body = IntegrationList),
        AdminErrors,
    )
)]
async fn list_integrations(State(s): Shared, _admin: AdminToken) -> Result<Json<IntegrationList>, ApiError> {
    Ok(Json(IntegrationList {
        integrations: s.integrations.list()?,
    }))
}

#[utoipa::path(
    post, path = "/v1/integrations", tag = "admin",
    request_body(content = Definition, content_type = "application/json", description = "an integration definition"),
    responses(
        (status = 201, description = "created as a draft", body = IntegrationView, links(
            ("GetIntegration" = (operation_id = "get_integration", parameters(("name" = "$response.body#/name")))),
            ("UpdateIntegration" = (operation_id = "update_integration", parameters(("name" = "$response.body#/name")))),
            ("ActivateIntegration" = (operation_id = "activate", parameters(("name" = "$response.body#/name")))),
            ("DeactivateIntegration" = (operation_id = "deactivate", parameters(("name" = "$response.body#/name")))),
            ("InvokeIntegration" = (operation_id = "invoke", parameters(("name" = "$response.body#/name")))),
            ("QueueCounts" = (operation_id = "queue_counts", parameters(("name" = "$response.body#/name")))),
            ("DeadLetters" = (operation_id = "dead_letters", parameters(("name" = "$response.body#/name")))),
            ("DeleteIntegration" = (operation_id = "delete_integration", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, description = "the body is not JSON, or not a definition (unknown field, wrong type)", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
        (status = 422, description = "the definition breaks a rule that spans fields (see `Definition`); `problems` lists every one", body = ErrorBody),
        BodyErrors, AdminErrors,
    )
)]
async fn create_integration(
    State(s): Shared,
    _admin: AdminToken,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let def: Definition = typed_body(
        &headers,
        body,
        "the body is not an integration definition",
        PLUGIN_CONFIGS,
    )?;
    let view = s.integrations.create(def)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(
    get, path = "/v1/integrations/{name}", tag = "admin",
    params(IntegrationPath),
    responses(
        (status = 200, description = "the integration with its version history", body = IntegrationDetail),
        (status = 404, description = "no such integration", body = ErrorBody),
        AdminErrors,
    )
)]
async fn get_integration(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<IntegrationDetail>, ApiError> {
    Ok(Json(IntegrationDetail {
        integration: s.integrations.get(&name)?,
        versions: s.integrations.versions(&name)?,
    }))
}

#[utoipa::path(
    put, path = "/v1/integrations/{name}", tag = "admin",
    params(IntegrationPath),
    request_body(content = Definition, content_type = "application/json", description = "the new definition; its `name` must be the path's (renaming is not supported)"),
    responses(
        (status = 200, description = "updated; `changed` says whether a version was added", body = IntegrationUpdated, links(
            ("GetIntegration" = (operation_id = "get_integration", parameters(("name" = "$request.path.name")))),
        )),
        (status = 400, description = "the body is not JSON, or not a definition (unknown field, wrong type)", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "the integration is active and the new definition fails activation's checks; `problems` lists them", body = ErrorBody),
        (status = 422, description = "the definition names another integration, or breaks a rule that spans fields (see `Definition`); `problems` lists every one", body = ErrorBody),
        BodyErrors, AdminErrors,
    )
)]
async fn update_integration(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IntegrationUpdated>, ApiError> {
    let def: Definition = typed_body(
        &headers,
        body,
        "the body is not an integration definition",
        PLUGIN_CONFIGS,
    )?;
    let (integration, changed) = s.integrations.update(&name, def).await?;
    Ok(Json(IntegrationUpdated { integration, changed }))
}

#[utoipa::path(
    delete, path = "/v1/integrations/{name}", tag = "admin",
    params(IntegrationPath),
    responses(
        (status = 204, description = "deleted; its runs stay"),
        (status = 404, description = "no such integration", body = ErrorBody),
        AdminErrors,
    )
)]
async fn delete_integration(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.integrations.delete(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/integrations/{name}/activate", tag = "admin",
    params(IntegrationPath),
    responses(
        (status = 200, description = "active", body = IntegrationView, links(
            ("InvokeIntegration" = (operation_id = "invoke", parameters(("name" = "$request.path.name")))),
            ("DeactivateIntegration" = (operation_id = "deactivate", parameters(("name" = "$request.path.name")))),
        )),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "`activation_refused`: the plugins, bindings or step configurations do not check out; `problems` lists every problem", body = ErrorBody),
        AdminErrors,
    )
)]
async fn activate(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(s.integrations.activate(&name).await?))
}

#[utoipa::path(
    post, path = "/v1/integrations/{name}/deactivate", tag = "admin",
    params(IntegrationPath),
    responses(
        (status = 200, description = "inactive", body = IntegrationView, links(
            ("ActivateIntegration" = (operation_id = "activate", parameters(("name" = "$request.path.name")))),
        )),
        (status = 404, description = "no such integration", body = ErrorBody),
        AdminErrors,
    )
)]
async fn deactivate(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(s.integrations.deactivate(&name)?))
}

#[utoipa::path(
    get, path = "/v1/plugins", tag = "admin",
    responses(
        (status = 200, description = "every file of the plugin folder with its status, load error and plugin", body = PluginList, links(
            ("GetPlugin" = (operation_id = "get_plugin", parameters(("name" = "$response.body#/files/0/plugin/name")))),
        )),
        AdminErrors,
    )
)]
async fn list_plugins(State(s): Shared, _admin: AdminToken) -> Result<Json<Value>, ApiError> {
    let files = s.registry.files_json();
    Ok(Json(json!({ "files": files })))
}

#[utoipa::path(
    get, path = "/v1/plugins/{name}", tag = "admin",
    params(("name" = String, Path, description = "plugin name")),
    responses(
        (status = 200, description = "the plugin (manifest, kind, limits) and its files with their load errors", body = PluginDetail),
        (status = 404, description = "no plugin of that name, loaded or failed", body = ErrorBody),
        AdminErrors,
    )
)]
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

/// Which runs `GET /v1/runs` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum ListMode {
    /// Sync runs (the default).
    #[default]
    Sync,
    /// Async runs.
    Async,
}

/// A run status to filter on.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
enum StatusFilter {
    Succeeded,
    Failed,
    Queued,
    Running,
    Retrying,
    OnHold,
    Cancelled,
}

impl StatusFilter {
    /// The status as stored.
    fn stored(self) -> &'static str {
        match self {
            StatusFilter::Succeeded => "succeeded",
            StatusFilter::Failed => "failed",
            StatusFilter::Queued => "queued",
            StatusFilter::Running => "running",
            StatusFilter::Retrying => "retrying",
            StatusFilter::OnHold => "on_hold",
            StatusFilter::Cancelled => "cancelled",
        }
    }
}

/// The largest millisecond timestamp a filter takes: the store keeps
/// times as signed 64-bit integers.
const MAX_TIME_MS: u64 = i64::MAX as u64;

/// Query of `GET /v1/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    /// `async` lists async runs (queued, running, ... final) instead of sync ones.
    #[param(inline)]
    mode: Option<ListMode>,
    /// Only this integration's runs.
    integration: Option<String>,
    /// Only runs with this status: sync runs are `succeeded` or `failed`.
    #[param(inline)]
    status: Option<StatusFilter>,
    /// Sync runs started at or after this time (ms since the Unix epoch).
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    since_ms: Option<u64>,
    /// Sync runs started before this time (ms since the Unix epoch).
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    until_ms: Option<u64>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The last run id of the previous page.
    before: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/runs", tag = "admin",
    params(RunsQuery),
    responses(
        (status = 200, description = "runs, newest first", body = RunList, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/runs/0/id")))),
        )),
        (status = 400, description = "`invalid_query`: an unknown parameter, or a value outside its bounds", body = ErrorBody),
        AdminErrors,
    )
)]
async fn list_runs(
    State(s): Shared,
    _admin: AdminToken,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = page_limit(q.limit, 50)?;
    for (name, value) in [("since_ms", q.since_ms), ("until_ms", q.until_ms)] {
        if value.is_some_and(|v| v > MAX_TIME_MS) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("`{name}` must be at most {MAX_TIME_MS}"),
            ));
        }
    }
    let status = q.status.map(|st| st.stored().to_string());
    if q.mode.unwrap_or_default() == ListMode::Async {
        let filter = crate::store::AsyncRunFilter {
            integration: q.integration,
            status,
            dead_letters: false,
            limit,
            before_id: q.before,
        };
        let queue = s.queue.clone();
        let runs = super::blocking("listing async runs", move || anyhow::Ok(queue.list(&filter)?)).await?;
        return Ok(Json(json!({ "runs": runs })));
    }
    let filter = RunFilter {
        integration: q.integration,
        status,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        limit,
        before_id: q.before,
    };
    let runs = read_runs(&s, move |store| store.list_runs(&filter)).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// A page size as asked (`limit`), or `default`: 1 to [`MAX_RUN_PAGE`].
pub(super) fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_RUN_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit={n}`: a page holds 1 to {MAX_RUN_PAGE} runs"),
        )),
    }
}

/// Query of `GET /v1/runs/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunQuery {
    /// For an async run: wait up to this long for it to finish, in whole
    /// seconds (`30s`) or milliseconds (`500ms`); waits past 60 s are cut to 60 s.
    #[param(pattern = "^[0-9]{1,9}(ms|s)$")]
    wait: Option<String>,
}

/// The longest `wait` a request holds.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `wait` as [`RunQuery`] documents it: digits and `ms` or `s`.
fn parse_wait(w: &str) -> Result<std::time::Duration, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_query",
            format!("`wait={w}`: use whole seconds or milliseconds (`30s`, `500ms`)"),
        )
    };
    let (digits, unit_ms) = match w.strip_suffix("ms") {
        Some(d) => (d, 1),
        None => (w.strip_suffix('s').ok_or_else(invalid)?, 1000),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    Ok(std::time::Duration::from_millis(n * unit_ms).min(MAX_WAIT))
}

#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "admin",
    params(("id" = String, Path, description = "run id"), RunQuery),
    responses(
        (status = 200, description = "the run. Admin tokens see the whole record: for a sync run its steps, callouts, logs and saved payloads; for an async run its status, attempts, output or error and callback state. The invoker token that started a run sees its status, output and error only", body = RunView),
        (status = 400, description = "`invalid_query`: a `wait` not of the documented form", body = ErrorBody),
        (status = 404, description = "no such run (also for another invoker's run)", body = ErrorBody),
        TokenErrors,
    )
)]
async fn get_run(
    State(s): Shared,
    auth: RunReader,
    Path(id): Path<String>,
    query: Result<Query<RunQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let wait = q.wait.as_deref().map(parse_wait).transpose()?;
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

/// Reads runs after committing what the run writer has queued: runs are
/// written off the invoke path in batches, and a caller must always find the
/// runs it was answered about.
async fn read_runs<T: Send + 'static>(
    s: &AppState,
    read: impl FnOnce(&crate::store::Store) -> crate::store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let (store, integrations) = (s.store.clone(), s.integrations.clone());
    super::blocking("reading runs", move || {
        integrations.flush_runs()?;
        anyhow::Ok(read(&store)?)
    })
    .await
}
