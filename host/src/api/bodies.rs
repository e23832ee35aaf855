//! The bodies the API answers with, as typed OpenAPI schemas.
//!
//! Handlers serialise the wrappers here (lists, acknowledgements); views
//! that other modules build as JSON (credentials, async runs, plugins) are
//! described here field by field, so `/v1/openapi.json` states every body
//! the host sends. The suite's schemathesis run checks each answer against
//! these schemas, so a field that drifts fails there. Nested documents whose
//! shape belongs to a plugin or the pipeline (step records, attempts,
//! manifests' operations) are typed as free-form objects and say so.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::integrations::IntegrationView;
use crate::integrations::definition::Definition;
use crate::store::{IntegrationVersion, RunRecord, RunSummary};

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `GET /v1/integrations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationList {
    /// Every integration, by name.
    pub integrations: Vec<IntegrationView>,
}

/// `GET /v1/integrations/{name}`: the integration and its version history.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationDetail {
    /// The integration.
    #[serde(flatten)]
    pub integration: IntegrationView,
    /// Every version, oldest first.
    #[schema(value_type = Vec<VersionSchema>)]
    pub versions: Vec<IntegrationVersion>,
}

/// The schema of one [`IntegrationVersion`] as the API shows it. The store
/// keeps definitions as opaque JSON and names no integration type (so the
/// store does not depend on the modules above it); their shape is stated here.
#[derive(ToSchema)]
#[schema(as = IntegrationVersion)]
#[allow(dead_code)]
pub struct VersionSchema {
    /// Version number, from 1.
    version: u32,
    /// The definition as of this version.
    definition: Definition,
    /// When this version was written.
    created_at_ms: u64,
}

/// `PUT /v1/integrations/{name}`: the integration after the update.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationUpdated {
    /// The integration.
    #[serde(flatten)]
    pub integration: IntegrationView,
    /// Whether the definition changed (and a version was added).
    pub changed: bool,
}

/// `202 Accepted` for an async integration: the run is stored and queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    /// The run's id.
    pub run_id: String,
    /// Always `queued`.
    #[schema(value_type = String, pattern = "^queued$")]
    pub status: &'static str,
    /// Where to poll the run (`/v1/runs/{run_id}`).
    pub location: String,
    /// Whether this answers a repeated `Idempotency-Key` (no new run).
    pub replayed: bool,
}

/// Runs an admin action changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunsRetried {
    /// The runs sent back to the queue.
    pub retried: Vec<String>,
}

/// Runs an admin action changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunsResolved {
    /// The runs taken off the dead-letter list.
    pub resolved: Vec<String>,
}

/// `GET /v1/integrations/{name}/queue`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueCountsView {
    /// The integration.
    pub integration: String,
    /// Its async runs counted by status (`queued`, `running`, `retrying`,
    /// `on_hold`, `succeeded`, `failed`, `cancelled`).
    pub counts: BTreeMap<String, u64>,
}

/// An async run's status as shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AsyncStatus {
    /// Waiting for its turn.
    Queued,
    /// An attempt is under way.
    Running,
    /// Failed, to be tried again at `next_attempt_at_ms`.
    Retrying,
    /// Held while its integration is inactive.
    OnHold,
    /// Done.
    Succeeded,
    /// Failed for good (a dead letter until resolved).
    Failed,
    /// Stopped on request.
    Cancelled,
}

/// `async`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AsyncMode {
    /// An async run.
    Async,
}

/// An async run in listings.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsyncRunSummary {
    /// The run's id.
    pub id: String,
    /// Always `async`.
    pub mode: AsyncMode,
    /// The integration.
    pub integration: String,
    /// The integration version it runs.
    pub version: u32,
    /// Where it stands.
    pub status: AsyncStatus,
    /// Attempts started so far.
    pub attempt_count: u32,
    /// When the next attempt may start (queued and retrying runs).
    pub next_attempt_at_ms: Option<u64>,
    /// The last error's code.
    pub error_code: Option<String>,
    /// Whether a stop was asked for while it ran.
    pub cancel_requested: bool,
    /// When an admin marked the failed run resolved.
    pub resolved_at_ms: Option<u64>,
    /// Acknowledged at (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Last change.
    pub updated_at_ms: u64,
    /// Reached a final status at.
    pub finished_at_ms: Option<u64>,
}

/// An async run as an admin sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsyncRun {
    /// The summary.
    #[serde(flatten)]
    pub summary: AsyncRunSummary,
    /// Every attempt so far, oldest first: free-form objects written by the
    /// queue (`attempt`, `started_at_ms`, `ended_at_ms`, `outcome`, `error`...).
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<Value>,
    /// The output document once succeeded: any JSON value.
    #[schema(value_type = Option<Value>)]
    pub output: Option<Value>,
    /// The last error (`code`, `message`, `retryable`, `step`).
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Callback delivery state (`state`, `attempts`, `last_status`, ...).
    #[schema(value_type = Option<Object>)]
    pub callback: Option<Value>,
}

/// `sync` or `async`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Ran while the caller waited.
    Sync,
    /// Ran from the queue.
    Async,
}

/// A run as the invoker token that started it sees it: its status, output
/// and error, never the steps, logs, callouts or saved request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokerRunView {
    /// The run's id.
    pub id: String,
    /// How it ran.
    pub mode: RunMode,
    /// The integration.
    pub integration: String,
    /// The integration version.
    pub version: u32,
    /// `succeeded` or `failed`; for async runs also `queued`, `running`,
    /// `retrying`, `on-hold`, `cancelled`.
    pub status: String,
    /// Async: attempts started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_count: Option<u32>,
    /// Async: when the next attempt may start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<u64>,
    /// Async: the last error's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Async: whether a stop was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    /// Async: acknowledged at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<u64>,
    /// Async: last change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<u64>,
    /// Async: reached a final status at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// Sync: started at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// Sync: ended at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    /// Sync: wall time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The output document (any JSON value), when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Async: callback delivery state.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub callback: Option<Value>,
}

/// One run, as `GET /v1/runs/{id}` and `POST /v1/runs/{id}/cancel` show it:
/// an admin sees a sync run's whole record or an async run's; the invoker
/// that started a run sees [`InvokerRunView`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RunView {
    /// A sync run, for admins: steps, callouts, logs, saved payloads.
    Sync(RunRecord),
    /// An async run, for admins: attempts, output or error, callback.
    Async(AsyncRun),
    /// Either kind, for the invoker that started it.
    Invoker(InvokerRunView),
}

/// A run in `GET /v1/runs`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum RunListEntry {
    /// A sync run (the default listing).
    Sync(RunSummary),
    /// An async run (`mode=async`, and dead letters).
    Async(AsyncRunSummary),
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// The runs; page on with `before=<last id>`.
    pub runs: Vec<RunListEntry>,
}

/// A page of async runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AsyncRunList {
    /// The runs; page on with `before=<last id>`.
    pub runs: Vec<AsyncRunSummary>,
}

/// Where a plugin file stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Being compiled and checked.
    Compiling,
    /// Loaded; its plugin is serving.
    Ready,
    /// Could not be loaded; see `error`.
    Failed,
}

/// One `.wasm` file of the plugin folder.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginFileView {
    /// File name.
    pub file: String,
    /// Where it stands.
    pub status: FileStatus,
    /// Why it failed to load (the last attempt).
    pub error: Option<String>,
    /// The plugin it provides and is serving, if any.
    pub plugin: Option<String>,
    /// SHA-256 of the content last seen.
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// When the current compilation started (`secs_since_epoch`,
    /// `nanos_since_epoch`), while compiling.
    #[schema(value_type = Option<Object>)]
    pub compiling_since: Option<Value>,
}

/// A loaded plugin.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// `connector` or `processor`.
    pub kind: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: Option<String>,
    /// A connector's operations from its manifest: free-form objects.
    #[schema(value_type = Option<Vec<Object>>)]
    pub operations: Option<Vec<Value>>,
    /// A connector's credential slots from its manifest: free-form objects.
    #[schema(value_type = Option<Vec<Object>>)]
    pub credential_slots: Option<Vec<Value>>,
    /// Its resource limits (memory, time, sizes, callouts).
    #[schema(value_type = Object)]
    pub limits: Value,
    /// The file it came from.
    pub file: String,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// How it was compiled (`cached`, `duration_ms`).
    #[schema(value_type = Object)]
    pub compile: Value,
    /// Whether it checks its configuration at activation.
    pub checks_config: bool,
}

/// `GET /v1/plugins`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    /// Every file of the plugin folder; `plugin` is the loaded plugin it
    /// serves, or null.
    pub files: Vec<PluginFileEntry>,
}

/// A file in `GET /v1/plugins`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginFileEntry {
    /// File name.
    pub file: String,
    /// Where it stands.
    pub status: FileStatus,
    /// Why it failed to load (the last attempt).
    pub error: Option<String>,
    /// The plugin it serves, when loaded.
    pub plugin: Option<PluginInfo>,
    /// SHA-256 of the content last seen.
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// When the current compilation started, while compiling.
    #[schema(value_type = Option<Object>)]
    pub compiling_since: Option<Value>,
}

/// `GET /v1/plugins/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDetail {
    /// The plugin, when one of that name is loaded.
    pub plugin: Option<PluginInfo>,
    /// The files that provide it or failed while trying.
    pub files: Vec<PluginFileView>,
}

/// Whether a credential's secret is set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretState {
    /// Stored (its value is never shown).
    Set,
    /// Required and not set: callouts fail until it is.
    Missing,
    /// Optional and not set.
    NotSet,
}

/// Where a credential is declared.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    /// The host's config file: read-only through the API.
    Config,
    /// The store (API, CLI, `plugboard apply`).
    Store,
}

/// Whether a credential's custom TLS material is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct TlsView {
    /// Extra CA certificates are set.
    pub ca: bool,
    /// A client certificate is set.
    pub client_cert: bool,
}

/// An integration that binds a credential.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialUser {
    /// The integration.
    pub integration: String,
    /// Its status.
    pub status: String,
    /// The connector slot bound to the credential.
    pub slot: String,
}

/// A named credential as the API shows it: its settings and which secrets
/// are set, never their values.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    /// Its name.
    pub name: String,
    /// Human label.
    pub label: String,
    /// Base URL of the external system.
    pub base_url: String,
    /// Whether a plain-http base URL is allowed.
    pub allow_http: bool,
    /// How callouts authenticate: `type` and the non-secret settings.
    #[schema(value_type = Object)]
    pub auth: Value,
    /// Non-secret headers sent on every callout.
    pub headers: BTreeMap<String, String>,
    /// Longest a callout may take.
    pub timeout_ms: u64,
    /// Largest request body.
    pub max_request_bytes: u64,
    /// Largest response body.
    pub max_response_bytes: u64,
    /// Plugins that may use it (`*` any).
    pub allowed_plugins: Vec<String>,
    /// Methods allowed besides the usual ones.
    pub extra_methods: Vec<String>,
    /// Whether callouts may use it.
    pub enabled: bool,
    /// `per_second`, `burst`, `max_wait_ms`, when rate limited.
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<Value>,
    /// Custom TLS material.
    pub tls: TlsView,
    /// Each secret it takes and whether it is set.
    pub secrets: BTreeMap<String, SecretState>,
    /// Where it is declared.
    pub source: CredentialSource,
    /// Its store version (0 for config credentials).
    pub version: i64,
    /// The integrations that bind it.
    pub used_by: Vec<CredentialUser>,
    /// The last connection test, as `POST .../test` answered it.
    #[schema(value_type = Option<Object>)]
    pub last_test: Option<Value>,
    /// OAuth credentials: the token's `state`, `expires_at_ms`, `detail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub token: Option<Value>,
    /// Why it cannot be used now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Authorization-code credentials: who connected it and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub connection: Option<Value>,
    /// Store credentials: created at (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<u64>,
    /// Store credentials: last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at_ms: Option<u64>,
}

/// `GET /v1/credentials`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialList {
    /// Every named credential, by name.
    pub credentials: Vec<CredentialView>,
}

/// `PUT /v1/credentials/{name}`: the credential after the write.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialPut {
    /// The credential.
    #[serde(flatten)]
    pub credential: CredentialView,
    /// Secrets the edit cleared (base URL, authentication type, OAuth
    /// endpoint, custom CA or header template changed, or the stored
    /// secrets did not open).
    pub cleared_secrets: Vec<String>,
}

/// `POST /v1/credentials/{name}/test`, also kept as the credential's `last_test`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialTest {
    /// Whether every check passed.
    pub ok: bool,
    /// When it ran (ms since the Unix epoch).
    pub at_ms: u64,
    /// Whether the credential is enabled.
    pub enabled: bool,
    /// Why the credential cannot be used, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// OAuth credentials: the token request's result (`ok`, `expires_at_ms`
    /// or `error`, `retryable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub token: Option<Value>,
    /// Each using integration's connector `test-connection` result
    /// (`integration`, `connector`, `ok`, `duration_ms`, `output` or `error`).
    #[schema(value_type = Vec<Object>)]
    pub integrations: Vec<Value>,
    /// How long the test took.
    pub duration_ms: u64,
}

/// `POST /v1/credentials/{name}/connect` and `/reconnect`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentStarted {
    /// The credential.
    pub credential: String,
    /// Open it in the browser that sent the request.
    pub authorize_url: String,
    /// How long the flow stays open.
    pub expires_in_secs: u64,
    /// Where the provider sends the browser back (`/v1/oauth/callback`).
    pub redirect_url: String,
}

#[cfg(test)]
mod tests {
    /// An integration's versions are documented with their definition's
    /// real schema, though the store keeps definitions as opaque JSON.
    #[test]
    fn integration_versions_document_the_definition_schema() {
        let (_, doc) = super::super::openapi_router();
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        let version = &schemas["IntegrationVersion"];
        assert_eq!(
            version["properties"]["definition"]["$ref"], "#/components/schemas/Definition",
            "{version}"
        );
        assert!(schemas["Definition"].is_object(), "Definition is a component");
        let detail = &schemas["IntegrationDetail"];
        let items = detail["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(detail))
            .find_map(|part| {
                part["properties"]["versions"]["items"]["$ref"]
                    .as_str()
                    .map(String::from)
            });
        assert_eq!(
            items.as_deref(),
            Some("#/components/schemas/IntegrationVersion"),
            "{detail}"
        );
    }
}
