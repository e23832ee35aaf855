//! The HTTP server: the invoke endpoint and the admin API.
//!
//! `POST /v1/integrations/{name}/invoke` runs an integration and answers
//! with its output (the run id in the `plugboard-run-id` header) or a
//! structured error with a status that says whose problem it is. The admin
//! API under `/v1/` manages integrations and reads plugins, credentials and
//! runs. Every `/v1/` request needs a bearer token ([`auth`]); health and
//! readiness do not. [`run`] serves on a listener the caller bound, until the
//! shutdown future resolves, then lets requests in flight finish.

mod admin;
pub mod auth;
pub mod bodies;
pub mod credentials;
pub mod document;
pub mod error;
pub mod runs;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::integrations::{Caller, Integrations};
use crate::plugins::Registry;
use crate::queue::engine::AsyncRuns;
use crate::store::Store;
use auth::{AnyToken, InvokeGrant};
use bodies::{HealthStatus, RunAccepted};
use error::{ApiError, BodyErrors, ErrorBody};

/// Response header carrying the run id.
pub const RUN_ID_HEADER: &str = "plugboard-run-id";
/// Request header: repeat a request without running it twice.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Request header: where an async run's result is delivered.
pub const CALLBACK_HEADER: &str = "plugboard-callback-url";
/// Response header on a reply to a repeated idempotency key.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Longest a request may take before the server answers 408.
    pub request_timeout: Duration,
}

impl Default for ServerSettings {
    /// 8 MiB bodies (room for a 6 MiB document), 5 minutes per request.
    fn default() -> Self {
        ServerSettings {
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// What handlers share.
pub struct AppState {
    /// Integrations and runs.
    pub integrations: Arc<Integrations>,
    /// Plugins.
    pub registry: Arc<Registry>,
    /// The store.
    pub store: Arc<Store>,
    /// Named credentials.
    pub credentials: Arc<crate::credentials::service::CredentialService>,
    /// The URL this host is reached at from a browser (OAuth redirects).
    pub public_url: url::Url,
    /// Async runs.
    pub queue: Arc<AsyncRuns>,
    /// How long a sync `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Set once the plugin folder has been loaded.
    pub ready: AtomicBool,
    /// Tokens verified recently.
    pub tokens: auth::TokenCache,
}

/// The OpenAPI document's frame; the paths come from the handlers'
/// `#[utoipa::path]` attributes as the routes are registered, so the
/// document cannot list a route the server lacks, or miss one it has.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Plugboard",
        description = "Invoke integrations and manage them. Every `/v1/` request needs `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    security(("bearer" = [])),
    tags(
        (name = "invoke", description = "Run integrations"),
        (name = "admin", description = "Manage integrations; read plugins, credentials and runs (admin tokens)"),
        (name = "health", description = "Liveness and readiness, no token")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", scheme);
    }
}

/// Every route with its OpenAPI description.
pub fn openapi_router() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(invoke))
        .routes(routes!(openapi))
        .merge(admin::routes())
        .merge(credentials::routes())
        .merge(runs::routes())
        .split_for_parts()
}

/// The router with every route and layer.
pub fn router(state: Arc<AppState>, settings: &ServerSettings) -> Router {
    let (routes, doc) = openapi_router();
    let doc = OpenApiText(Arc::from(document::finish(&doc).to_string()));
    routes
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::Extension(doc))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(access_log())
        .with_state(state)
}

/// One log line per request at `info`: method, path, status, latency.
/// Headers are not logged, so no token reaches the log; nor are the OAuth
/// callback's query (its `code` and `state` complete a consent) or the
/// values of query parameters that commonly carry secrets ([`logged_uri`]).
fn access_log() -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    RequestSpan,
> {
    use tower_http::trace::DefaultOnResponse;
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
}

/// The span of one request: method, [`logged_uri`] and HTTP version.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        tracing::info_span!(
            "request",
            method = %request.method(),
            uri = %logged_uri(request.uri()),
            version = ?request.version(),
        )
    }
}

/// Query parameters whose values are never logged, compared ignoring ASCII
/// case: OAuth's codes, states, tokens and assertions, and the usual names
/// of passwords, keys and signatures.
const SECRET_QUERY_PARAMS: &[&str] = &[
    "code",
    "state",
    "session_state",
    "code_verifier",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "assertion",
    "client_assertion",
    "client_secret",
    "password",
    "secret",
    "key",
    "api_key",
    "apikey",
    "signature",
    "sig",
];

/// The URI as the access log shows it: the path alone for the OAuth
/// callback, elsewhere the query with the values of
/// [`SECRET_QUERY_PARAMS`] replaced by `[REDACTED]`.
pub fn logged_uri(uri: &http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_string();
    };
    if path == credentials::CALLBACK_PATH {
        return path.to_string();
    }
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            let secret = SECRET_QUERY_PARAMS
                .iter()
                .any(|p| decoded.trim().eq_ignore_ascii_case(p));
            if secret && !value.is_empty() {
                format!("{name}=[REDACTED]")
            } else {
                pair.to_string()
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Serves `router` on `listener` until `shutdown` resolves; requests in
/// flight then finish before this returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "alive", body = HealthStatus)))]
async fn health() -> axum::Json<HealthStatus> {
    axum::Json(HealthStatus { status: "ok" })
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "admin",
    responses(
        (status = 200, description = "this document: an OpenAPI 3.1 object, free-form here (its own schema is the OpenAPI specification's)", body = Object),
        error::TokenErrors,
    )
)]
async fn openapi(_token: AnyToken, axum::Extension(doc): axum::Extension<OpenApiText>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        doc.0.to_string(),
    )
        .into_response()
}

/// The served document's text, serialised once when the router is built.
#[derive(Clone)]
struct OpenApiText(Arc<str>);

/// Readiness: the plugin folder is loaded.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses((status = 200, description = "ready", body = HealthStatus), (status = 503, description = "still loading plugins", body = ErrorBody)))]
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        axum::Json(HealthStatus { status: "ready" }).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the plugin folder is still loading",
        )
        .into_response()
    }
}

/// Runs a store call on a blocking thread (SQLite must not stall the async
/// workers) and turns its failure into a 500 naming `what`.
pub(crate) async fn blocking<T: Send + 'static, E: Into<anyhow::Error> + Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("{what} was interrupted: {e}")))?
        .map_err(|e| ApiError::internal(format!("{what} failed: {:#}", e.into())))
}

/// Whether a `Content-Type` is JSON's: `application/json`, in any case,
/// with or without parameters (`; charset=utf-8`).
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Reads a JSON request body: the right content type, within the size
/// limit, valid JSON.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json_media_type(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as `application/json`, not `{content_type}`"),
        ));
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.body_text())
        }
        status => ApiError::new(status, "bad_body", e.body_text()),
    })?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    Ok(text)
}

/// Reads a JSON request body as `T`: 400 `invalid_body` naming `what` and
/// serde's reason when the JSON is not of `T`'s shape.
///
/// As JSON Schema does, an integer may be written `5.0`
/// ([`document::integral_numbers`]), except in the documents under `keep`
/// (JSON pointers to free-form parts, whose numbers stay as written).
pub(crate) fn typed_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: &str,
    keep: &[&str],
) -> Result<T, ApiError> {
    let text = json_body(headers, body)?;
    let invalid = |e: serde_json::Error| ApiError::bad_request("invalid_body", format!("{what}: {e}"));
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(invalid)?;
    document::integral_numbers(&mut value, keep);
    serde_json::from_value(value).map_err(invalid)
}

/// Runs an integration on the JSON body and answers with its output; the
/// run id is in the `plugboard-run-id` header, on errors too. An async
/// integration answers 202 with the queued run; its caller may name where
/// the result goes in `Plugboard-Callback-Url` (an allowed URL).
#[utoipa::path(
    post, path = "/v1/integrations/{name}/invoke", tag = "invoke",
    params(
        admin::IntegrationPath,
        ("idempotency-key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "repeat a request without running it twice: 1 to 255 visible ASCII characters (a UUID is a good choice)"),
    ),
    request_body(content = Value, content_type = "application/json", description = "the input document: any JSON value, free-form (its shape is the integration's: its input processor or connector reads it)"),
    responses(
        (status = 200, description = "a sync integration's output document: any JSON value, free-form (its shape is the integration's); the run id is in `plugboard-run-id`", body = Value, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.header.plugboard-run-id")))),
        )),
        (status = 202, description = "an async integration's run, stored and queued", body = RunAccepted, links(
            ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.body#/run_id")))),
            ("CancelRun" = (operation_id = "cancel_run", parameters(("id" = "$response.body#/run_id")))),
        )),
        (status = 400, description = "the body is not JSON, a bad `Idempotency-Key` or header, or a callback URL for a sync integration or one not allowed", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "the token may not invoke this integration", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "the integration is not active, a draft that cannot run as defined (`not_runnable`, with `problems`), or a request with this `Idempotency-Key` is still running", body = ErrorBody),
        (status = 422, description = "a plugin refused the input, or the `Idempotency-Key` was used with another input", body = ErrorBody),
        (status = 429, description = "the async integration's queue is full (`Retry-After`)", body = ErrorBody),
        (status = 500, description = "the host failed (its store, or a plugin it could not run)", body = ErrorBody),
        (status = 502, description = "the connector, a plugin or the external system failed", body = ErrorBody),
        (status = 503, description = "degraded, or at its concurrency (`Retry-After`)", body = ErrorBody),
        (status = 504, description = "a step ran out of time", body = ErrorBody),
        BodyErrors,
    )
)]
async fn invoke(
    State(state): State<Arc<AppState>>,
    grant: InvokeGrant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = json_body(&headers, body)?;
    let caller = Caller {
        token_id: Some(grant.token.id.clone()),
        admin: grant.is_admin(),
    };
    let name = grant.integration;
    let key = idempotency_key(&headers)?;
    let callback = header_text(&headers, CALLBACK_HEADER)?;
    // One admission read, from memory when recent, decides the mode.
    let prepared = state.integrations.prepare(&name).await?;
    if prepared.definition.mode == crate::integrations::definition::ExecutionMode::Async {
        return enqueue(&state, &name, input, &caller, callback, key).await;
    }
    if callback.is_some() {
        return Err(ApiError::bad_request(
            "callback_not_supported",
            format!(
                "integration `{name}` is synchronous: its caller gets the result in the response, so `{CALLBACK_HEADER}` applies only to async integrations"
            ),
        ));
    }
    match key {
        None => Ok(sync_response(
            state
                .integrations
                .invoke(&name, &prepared, input, &caller)
                .await?,
        )),
        Some(key) => idempotent_sync(&state, &name, &prepared, input, &caller, &key).await,
    }
}

/// The caller's `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(key) = header_text(headers, IDEMPOTENCY_HEADER)? else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters (a UUID is a good choice)",
        ));
    }
    Ok(Some(key))
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| {
                ApiError::bad_request("invalid_header", format!("header `{name}` is not visible ASCII"))
            })
        })
        .transpose()
}

/// The answer to a finished synchronous run.
fn sync_response(outcome: crate::integrations::InvokeOutcome) -> Response {
    match outcome.output {
        Ok(output) => {
            let mut response = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                output,
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&outcome.run_id) {
                response.headers_mut().insert(RUN_ID_HEADER, v);
            }
            response
        }
        Err(failure) => ApiError::from_step(&failure, &outcome.run_id).into_response(),
    }
}

/// Queues an async run: `202 Accepted` once it is stored, with its id and
/// where to poll it.
async fn enqueue(
    state: &Arc<AppState>,
    name: &str,
    input: String,
    caller: &Caller,
    callback: Option<String>,
    key: Option<String>,
) -> Result<Response, ApiError> {
    let accepted = state.queue.enqueue(name, input, caller, callback, key).await?;
    let location = format!("/v1/runs/{}", accepted.run_id);
    let body = RunAccepted {
        run_id: accepted.run_id.clone(),
        status: "queued",
        location: location.clone(),
        replayed: accepted.replayed,
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&accepted.run_id) {
        h.insert(RUN_ID_HEADER, v);
    }
    if accepted.replayed {
        h.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A synchronous invocation with an `Idempotency-Key`: the first request
/// runs and stores its reply; a repeat (even a concurrent one) gets that
/// reply instead of a second run.
async fn idempotent_sync(
    state: &Arc<AppState>,
    name: &str,
    prepared: &crate::integrations::Prepared,
    input: String,
    caller: &Caller,
    key: &str,
) -> Result<Response, ApiError> {
    use crate::store::ReplyClaim;
    let window = state.idempotency_window.as_millis() as u64;
    let claim = crate::store::new_run_id();
    let owned = Arc::new((name.to_string(), caller.token_id.clone(), key.to_string()));
    let (store, args, first) = (state.store.clone(), owned.clone(), claim.clone());
    let digest_input = input.clone();
    let earlier = blocking("recording the idempotency key", move || {
        let now = crate::time::unix_ms(std::time::SystemTime::now());
        store.claim_sync_reply(scoped(&args), &digest_input, &first, now, window)
    })
    .await?;
    match earlier {
        ReplyClaim::New => {}
        ReplyClaim::Earlier(earlier) => return replay(state, owned, earlier).await,
        ReplyClaim::OtherInput(run) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!(
                    "this `Idempotency-Key` was already used with another input (run `{run}`): send a new key for a new request"
                ),
            )
            .with("run_id", serde_json::json!(run)));
        }
    }
    let outcome = state.integrations.invoke(name, prepared, input, caller).await;
    let response = match outcome {
        Ok(o) => sync_response(o),
        Err(e) => {
            // Nothing ran: let a retry with this key try again.
            let (store, args, first) = (state.store.clone(), owned.clone(), claim.clone());
            let _ = blocking("forgetting the idempotency key", move || {
                store.drop_sync_reply(scoped(&args), &first)
            })
            .await;
            return Err(e.into());
        }
    };
    let (parts, body) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let status = parts.status.as_u16();
    let run_id = parts
        .headers
        .get(RUN_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&claim)
        .to_string();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let store = state.store.clone();
    blocking("storing the idempotent reply", move || {
        store.finish_sync_reply(scoped(&owned), &claim, &run_id, status, &text)
    })
    .await?;
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

/// The store's view of an owned (integration, token id, key).
fn scoped(o: &(String, Option<String>, String)) -> crate::store::ScopedKey<'_> {
    crate::store::ScopedKey::new(&o.0, o.1.as_deref(), &o.2)
}

/// Answers a repeated idempotent request with the first one's reply,
/// waiting for it while the first request still runs.
async fn replay(
    state: &Arc<AppState>,
    owned: Arc<(String, Option<String>, String)>,
    mut earlier: crate::store::SyncReply,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while earlier.reply.is_none() {
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                format!(
                    "a request with this `Idempotency-Key` is still running (run `{}`)",
                    earlier.run_id
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        let (store, args) = (state.store.clone(), owned.clone());
        match blocking("reading the idempotent reply", move || {
            store.get_sync_reply(scoped(&args))
        })
        .await?
        {
            Some(r) => earlier = r,
            None => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "the first request with this `Idempotency-Key` ended without running; send it again",
                ));
            }
        }
    }
    let (status, body) = earlier.reply.expect("loop ends with a reply");
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&earlier.run_id) {
        h.insert(RUN_ID_HEADER, v);
    }
    h.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(uri: &str) -> String {
        logged_uri(&uri.parse().unwrap())
    }

    /// The callback's query is never logged; elsewhere secret-looking
    /// parameters lose their values, in any case and encoding of the name.
    #[test]
    fn access_log_keeps_codes_states_and_tokens_out() {
        assert_eq!(
            logged("/v1/oauth/callback?code=c0de&state=st4te"),
            "/v1/oauth/callback"
        );
        assert_eq!(
            logged("/v1/runs?status=failed&access_token=t0k&Code=x&%63ode=y&limit=5"),
            "/v1/runs?status=failed&access_token=[REDACTED]&Code=[REDACTED]&%63ode=[REDACTED]&limit=5"
        );
        assert_eq!(logged("/v1/runs?key"), "/v1/runs?key");
        assert_eq!(logged("/healthz"), "/healthz");
    }
}
