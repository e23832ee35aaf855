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
pub mod credentials;
pub mod error;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::integrations::{Caller, Integrations};
use crate::plugins::Registry;
use crate::store::Store;
use auth::Authenticated;
use error::{ApiError, ErrorBody};

/// Response header carrying the run id.
pub const RUN_ID_HEADER: &str = "plugboard-run-id";

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
    /// Set once the plugin folder has been loaded.
    pub ready: AtomicBool,
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
        .split_for_parts()
}

/// The router with every route and layer.
pub fn router(state: Arc<AppState>, settings: &ServerSettings) -> Router {
    let (routes, doc) = openapi_router();
    routes
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::Extension(Arc::new(doc)))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(access_log())
        .with_state(state)
}

/// One log line per request at `info`: method, path, status, latency.
/// Headers are not logged, so no token reaches the log.
fn access_log()
-> TraceLayer<tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>> {
    use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse};
    TraceLayer::new_for_http()
        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
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
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "alive", body = Object)))]
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "admin", responses((status = 200, description = "this document", body = Object), (status = 401, body = ErrorBody)))]
async fn openapi(
    _auth: Authenticated,
    axum::Extension(doc): axum::Extension<Arc<utoipa::openapi::OpenApi>>,
) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json((*doc).clone())
}

/// Readiness: the plugin folder is loaded.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses((status = 200, description = "ready", body = Object), (status = 503, description = "still loading plugins", body = ErrorBody)))]
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
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
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("{what} was interrupted: {e}")))?
        .map_err(|e| ApiError::internal(format!("{what} failed: {e:#}")))
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
    if !content_type.starts_with("application/json") {
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

/// Runs an integration on the JSON body and answers with its output; the
/// run id is in the `plugboard-run-id` header, on errors too.
#[utoipa::path(
    post, path = "/v1/integrations/{name}/invoke", tag = "invoke",
    params(("name" = String, Path, description = "integration name")),
    request_body(content = Object, content_type = "application/json", description = "the input document"),
    responses(
        (status = 200, description = "the output document", body = Object),
        (status = 400, description = "the body is not JSON", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody),
        (status = 403, description = "the token may not invoke this integration", body = ErrorBody),
        (status = 404, description = "no such integration", body = ErrorBody),
        (status = 409, description = "the integration is not active", body = ErrorBody),
        (status = 413, description = "the body is too large", body = ErrorBody),
        (status = 415, description = "the body is not `application/json`", body = ErrorBody),
        (status = 422, description = "a plugin refused the input", body = ErrorBody),
        (status = 502, description = "the connector, a plugin or the external system failed", body = ErrorBody),
        (status = 503, description = "degraded, or the host is at capacity", body = ErrorBody),
        (status = 504, description = "a step ran out of time", body = ErrorBody),
    )
)]
async fn invoke(
    State(state): State<Arc<AppState>>,
    auth: Authenticated,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    auth.require_invoke(&name)?;
    let input = json_body(&headers, body)?;
    let caller = Caller {
        token_id: Some(auth.0.id.clone()),
        admin: auth.is_admin(),
    };
    let outcome = state.integrations.invoke(&name, input, &caller).await?;
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
            Ok(response)
        }
        Err(failure) => Err(ApiError::from_step(&failure, &outcome.run_id)),
    }
}
