//! The credentials API: named credentials as managed objects, their
//! connection test and the OAuth consent flow.
//!
//! Secrets are write-only: a `PUT` takes them, no response ever carries one;
//! views say which are `set` or `missing`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminToken;
use super::error::{ApiError, ErrorBody};
use super::{AppState, json_body};
use crate::credentials::service::CredentialError;

type Shared = State<Arc<AppState>>;

/// Path of the OAuth redirect endpoint, below the host's public URL.
pub const CALLBACK_PATH: &str = "/v1/oauth/callback";

/// The credential routes, each with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_credentials))
        .routes(routes!(get_credential, put_credential, delete_credential))
        .routes(routes!(test_credential))
        .routes(routes!(connect_credential))
        .routes(routes!(reconnect_credential))
        .routes(routes!(oauth_callback))
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> Self {
        let message = e.to_string();
        match e {
            CredentialError::NotFound(_) => ApiError::not_found(message),
            CredentialError::Invalid(problems) => {
                let mut err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_credential", message);
                err.extra["problems"] = json!(problems);
                err
            }
            CredentialError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            CredentialError::InUse { used_by, .. } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "credential_in_use", message);
                err.extra["used_by"] = json!(used_by);
                err
            }
            CredentialError::NoKey => ApiError::new(StatusCode::CONFLICT, "no_secret_key", message),
            CredentialError::Consent(_) => ApiError::bad_request("consent_failed", message),
            CredentialError::Internal(_) => ApiError::internal(message),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the credential task failed: {e}")))?
}

#[utoipa::path(get, path = "/v1/credentials", tag = "credentials", responses((status = 200, description = "every named credential: its settings, which secrets are set (never their values), the integrations that use it and its last test", body = Object), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn list_credentials(State(s): Shared, _admin: AdminToken) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let used = s.integrations.credential_users()?;
        Ok(Json(json!({ "credentials": s.credentials.list(&used)? })))
    })
    .await
}

#[utoipa::path(get, path = "/v1/credentials/{name}", tag = "credentials", params(("name" = String, Path, description = "credential name")), responses((status = 200, description = "the credential, without secrets", body = Object), (status = 404, description = "no such credential", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn get_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let used = s.integrations.credential_users()?;
        Ok(Json(s.credentials.get(&name, &used)?))
    })
    .await
}

#[utoipa::path(put, path = "/v1/credentials/{name}", tag = "credentials", params(("name" = String, Path, description = "credential name")), request_body(content = Object, description = "the credential: `base_url`, `auth` (secret fields as values; left out keeps the stored ones), `headers`, `allowed_plugins`, `enabled`, `rate_limit`, `tls`..."), responses((status = 201, description = "created", body = Object), (status = 200, description = "replaced; `cleared_secrets` lists secrets the edit cleared (base URL, host or authentication type changed)", body = Object), (status = 409, description = "declared in the config file, or no secret key configured", body = ErrorBody), (status = 422, description = "invalid; `problems` lists why", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn put_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let text = json_body(&headers, body)?;
    let body: Value = serde_json::from_str(&text).expect("json_body checked it");
    blocking(move || {
        let (created, cleared) = s.credentials.put(&name, body)?;
        let used = s.integrations.credential_users()?;
        let mut view = s.credentials.get(&name, &used)?;
        view["cleared_secrets"] = json!(cleared);
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(view)).into_response())
    })
    .await
}

#[utoipa::path(delete, path = "/v1/credentials/{name}", tag = "credentials", params(("name" = String, Path, description = "credential name")), responses((status = 204, description = "deleted with its secrets"), (status = 409, description = "integrations still use it (`used_by`), or it is declared in the config file", body = ErrorBody), (status = 404, description = "no such credential", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn delete_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let used = s.integrations.credential_users()?;
        s.credentials.delete(&name, &used)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[utoipa::path(post, path = "/v1/credentials/{name}/test", tag = "credentials", params(("name" = String, Path, description = "credential name")), responses((status = 200, description = "`ok`, the token check (OAuth credentials) and each using integration's connector `test-connection` result; stored as the credential's `last_test`", body = Object), (status = 404, description = "no such credential", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn test_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let live = s.credentials.live(&name)?;
    let started = Instant::now();
    let mut ok = true;
    let mut result = json!({
        "at_ms": crate::sandbox::unix_ms(SystemTime::now()),
        "enabled": live.spec().enabled,
    });
    if let Err(e) = live.ready() {
        ok = false;
        result["problem"] = json!(e.to_string());
    }
    if let Some(tokens) = live.tokens() {
        result["token"] = match tokens.fetch_new().await {
            Ok(t) => json!({"ok": true, "expires_at_ms": t.expires_at.map(crate::sandbox::unix_ms)}),
            Err(e) => {
                ok = false;
                json!({"ok": false, "error": e.to_string(), "retryable": e.retryable()})
            }
        };
    }
    let connections = s.integrations.test_connections(&name).await?;
    ok &= connections.iter().all(|c| c["ok"] == json!(true));
    result["integrations"] = json!(connections);
    result["ok"] = json!(ok);
    result["duration_ms"] = json!(started.elapsed().as_millis() as u64);
    let stored = result.clone();
    blocking(move || Ok(s.credentials.record_test(&name, &stored)?)).await?;
    Ok(Json(result))
}

fn redirect_url(s: &AppState) -> url::Url {
    s.public_url
        .join(CALLBACK_PATH.trim_start_matches('/'))
        .expect("a path joins onto the public URL")
}

#[utoipa::path(post, path = "/v1/credentials/{name}/connect", tag = "credentials", params(("name" = String, Path, description = "credential name")), responses((status = 200, description = "`authorize_url`: open it in a browser to give consent; the provider then returns to `/v1/oauth/callback`", body = Object), (status = 409, description = "the credential does not use the authorization-code flow", body = ErrorBody), (status = 404, description = "no such credential", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn connect_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut v = s.credentials.start_consent(&name, &redirect_url(&s))?;
    v["redirect_url"] = json!(redirect_url(&s).as_str());
    Ok(Json(v))
}

#[utoipa::path(post, path = "/v1/credentials/{name}/reconnect", tag = "credentials", params(("name" = String, Path, description = "credential name")), responses((status = 200, description = "the same as `connect`, for a credential whose refresh token expired or was revoked", body = Object), (status = 409, description = "the credential does not use the authorization-code flow", body = ErrorBody), (status = 404, description = "no such credential", body = ErrorBody), (status = 401, description = "no valid token", body = ErrorBody), (status = 403, description = "not an admin token", body = ErrorBody)))]
async fn reconnect_credential(
    state: Shared,
    admin: AdminToken,
    name: Path<String>,
) -> Result<Json<Value>, ApiError> {
    connect_credential(state, admin, name).await
}

/// Query of the OAuth redirect.
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[utoipa::path(get, path = "/v1/oauth/callback", tag = "credentials", params(("state" = String, Query, description = "the state Plugboard sent"), ("code" = Option<String>, Query, description = "authorization code"), ("error" = Option<String>, Query, description = "the provider's error")), responses((status = 200, description = "connected (a page for the browser that completed consent)"), (status = 400, description = "unknown or expired state, consent refused, or the code was not accepted", body = ErrorBody)))]
async fn oauth_callback(State(s): Shared, Query(q): Query<CallbackQuery>) -> Result<Response, ApiError> {
    // No bearer token: the browser of whoever gave consent lands here. The
    // one-time `state` (bound to a pending flow and its PKCE verifier) is
    // what authenticates the request.
    let state = q
        .state
        .ok_or_else(|| ApiError::bad_request("consent_failed", "the callback carries no `state`"))?;
    if let Some(err) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return Err(ApiError::bad_request(
            "consent_failed",
            format!("the provider refused consent: {err} {detail}")
                .trim()
                .to_string(),
        ));
    }
    let code = q
        .code
        .ok_or_else(|| ApiError::bad_request("consent_failed", "the callback carries no `code`"))?;
    let name = s.credentials.finish_consent(&state, &code).await?;
    let page = format!(
        "<!doctype html><title>Plugboard</title><p>Credential <b>{}</b> is connected. You can close this page.</p>",
        html_escape(&name)
    );
    Ok((StatusCode::OK, Html(page)).into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
