//! The credentials API: named credentials as managed objects, their
//! connection test and the OAuth consent flow.
//!
//! Secrets are write-only: a `PUT` takes them, no response ever carries one;
//! views say which are `set` or `missing`.
//!
//! The consent flow's two halves meet in one browser: `connect` (an admin
//! request) sets a short-lived cookie, and the callback, which carries no
//! token, completes the flow only for the browser holding it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminToken;
use super::bodies::{ConsentStarted, CredentialList, CredentialPut, CredentialTest, CredentialView};
use super::error::{AdminErrors, ApiError, BodyErrors, ErrorBody};
use super::{AppState, typed_body};
use crate::credentials::input::RawCredential;
use crate::credentials::oauth::quotable_error_code;
use crate::credentials::service::{CONSENT_TTL, ConnectedBy, CredentialError, consent_cookie_name};

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
            CredentialError::Unopenable(_) => {
                ApiError::new(StatusCode::CONFLICT, "credential_unusable", message)
            }
            CredentialError::Internal(_) => ApiError::internal(message),
        }
    }
}

/// Path of one named credential, with the name's rules.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct CredentialPath {
    /// Credential name: lowercase letters, digits and `-`, starting with a
    /// letter, at most 63 characters.
    #[param(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    #[allow(dead_code)]
    name: String,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("the credential task failed: {e}")))?
}

#[utoipa::path(
    get, path = "/v1/credentials", tag = "credentials",
    responses(
        (status = 200, description = "every named credential: its settings, which secrets are set (never their values), the integrations that use it and its last test", body = CredentialList, links(
            ("GetCredential" = (operation_id = "get_credential", parameters(("name" = "$response.body#/credentials/0/name")))),
        )),
        AdminErrors,
    )
)]
async fn list_credentials(State(s): Shared, _admin: AdminToken) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let used = s.integrations.credential_users()?;
        Ok(Json(json!({ "credentials": s.credentials.list(&used)? })))
    })
    .await
}

#[utoipa::path(
    get, path = "/v1/credentials/{name}", tag = "credentials",
    params(CredentialPath),
    responses(
        (status = 200, description = "the credential, without secrets", body = CredentialView),
        (status = 404, description = "no such credential", body = ErrorBody),
        AdminErrors,
    )
)]
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

#[utoipa::path(
    put, path = "/v1/credentials/{name}", tag = "credentials",
    params(CredentialPath),
    request_body(content = RawCredential, content_type = "application/json", description = "the credential; secret fields carry their values (left out keeps the stored ones)"),
    responses(
        (status = 201, description = "created", body = CredentialPut, links(
            ("GetCredential" = (operation_id = "get_credential", parameters(("name" = "$request.path.name")))),
            ("TestCredential" = (operation_id = "test_credential", parameters(("name" = "$request.path.name")))),
            ("DeleteCredential" = (operation_id = "delete_credential", parameters(("name" = "$request.path.name")))),
        )),
        (status = 200, description = "replaced; `cleared_secrets` lists secrets the edit cleared", body = CredentialPut, links(
            ("GetCredential" = (operation_id = "get_credential", parameters(("name" = "$request.path.name")))),
            ("DeleteCredential" = (operation_id = "delete_credential", parameters(("name" = "$request.path.name")))),
        )),
        (status = 400, description = "the body is not JSON, or not a credential (unknown field, wrong type)", body = ErrorBody),
        (status = 409, description = "declared in the config file, or no secret key configured", body = ErrorBody),
        (status = 422, description = "the name or a value fails a check only the host can make (see `RawCredential`); `problems` lists every one", body = ErrorBody),
        BodyErrors, AdminErrors,
    )
)]
async fn put_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw: RawCredential = typed_body(&headers, body, "the body is not a credential", &[])?;
    blocking(move || {
        let (created, cleared) = s.credentials.put(&name, raw)?;
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

#[utoipa::path(
    delete, path = "/v1/credentials/{name}", tag = "credentials",
    params(CredentialPath),
    responses(
        (status = 204, description = "deleted with its secrets"),
        (status = 404, description = "no such credential", body = ErrorBody),
        (status = 409, description = "integrations still use it (`used_by`), or it is declared in the config file", body = ErrorBody),
        AdminErrors,
    )
)]
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

#[utoipa::path(
    post, path = "/v1/credentials/{name}/test", tag = "credentials",
    params(CredentialPath),
    responses(
        (status = 200, description = "`ok`, the token check (OAuth credentials) and each using integration's connector `test-connection` result; stored as the credential's `last_test`", body = CredentialTest),
        (status = 404, description = "no such credential", body = ErrorBody),
        AdminErrors,
    )
)]
async fn test_credential(
    State(s): Shared,
    _admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let live = s.credentials.live(&name)?;
    let started = Instant::now();
    let mut ok = true;
    let mut result = json!({
        "at_ms": crate::time::unix_ms(SystemTime::now()),
        "enabled": live.spec().enabled,
    });
    if let Err(e) = live.ready() {
        ok = false;
        // Worded as a callout through it would be refused.
        result["problem"] = json!(crate::callout::CalloutError::from(e).to_string());
    }
    if let Some(tokens) = live.tokens() {
        result["token"] = match tokens.fetch_new().await {
            Ok(t) => json!({"ok": true, "expires_at_ms": t.expires_at.map(crate::time::unix_ms)}),
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

#[utoipa::path(
    post, path = "/v1/credentials/{name}/connect", tag = "credentials",
    params(CredentialPath),
    responses(
        (status = 200, description = "`authorize_url`: open it in the browser that sent this request, which the answer's `Set-Cookie` binds to the flow; the provider then returns that browser to `/v1/oauth/callback`", body = ConsentStarted),
        (status = 404, description = "no such credential", body = ErrorBody),
        (status = 409, description = "the credential does not use the authorization-code flow", body = ErrorBody),
        AdminErrors,
    )
)]
async fn connect_credential(
    State(s): Shared,
    admin: AdminToken,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let by = ConnectedBy {
        token_id: admin.0.id.clone(),
        token_name: admin.0.name.clone(),
    };
    let redirect = redirect_url(&s);
    let start = {
        let (s, redirect) = (s.clone(), redirect.clone());
        blocking(move || Ok(s.credentials.start_consent(&name, &redirect, by)?)).await?
    };
    let mut view = start.view;
    view["redirect_url"] = json!(redirect.as_str());
    let cookie = consent_cookie(
        &start.cookie_name,
        &start.cookie_value,
        CONSENT_TTL.as_secs(),
        &redirect,
    );
    let mut response = Json(view).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    // The answer carries a secret (the cookie): no cache may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The `Set-Cookie` value binding a consent flow to the browser: sent back
/// only to the callback (its path), only over https when the public URL is
/// https, never readable by scripts, and on the provider's top-level
/// redirect back (`SameSite=Lax`) but not on other sites' requests.
fn consent_cookie(name: &str, value: &str, max_age_secs: u64, callback: &url::Url) -> HeaderValue {
    let secure = if callback.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{name}={value}; Max-Age={max_age_secs}; Path={}; HttpOnly; SameSite=Lax{secure}",
        callback.path()
    );
    let mut value = HeaderValue::from_str(&cookie).expect("hex, digits and a URL path are header-safe");
    value.set_sensitive(true);
    value
}

#[utoipa::path(
    post, path = "/v1/credentials/{name}/reconnect", tag = "credentials",
    params(CredentialPath),
    responses(
        (status = 200, description = "the same as `connect`, for a credential whose refresh token expired or was revoked", body = ConsentStarted),
        (status = 404, description = "no such credential", body = ErrorBody),
        (status = 409, description = "the credential does not use the authorization-code flow", body = ErrorBody),
        AdminErrors,
    )
)]
async fn reconnect_credential(
    state: Shared,
    admin: AdminToken,
    name: Path<String>,
) -> Result<Response, ApiError> {
    connect_credential(state, admin, name).await
}

/// Query of the OAuth redirect. `error_description` and `error_uri` are
/// not read: they are whatever the link's author wrote.
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/oauth/callback", tag = "credentials", security(()),
    params(
        ("state" = Option<String>, Query, description = "the state Plugboard sent the provider"),
        ("code" = Option<String>, Query, description = "authorization code"),
        ("error" = Option<String>, Query, description = "the provider's error code"),
    ),
    responses(
        (status = 200, description = "connected (a page for the browser that completed consent)", content_type = "text/html", body = String),
        (status = 400, description = "no `state`, no `code`, consent refused, an unknown, used or expired state, a browser other than the one that started the flow, or the provider did not accept the code (a page saying which)", content_type = "text/html", body = String),
        (status = 404, description = "the credential was deleted while consent was given (a page saying so)", content_type = "text/html", body = String),
        (status = 500, description = "the host failed to store the tokens (a page saying so)", content_type = "text/html", body = String),
    )
)]
async fn oauth_callback(State(s): Shared, Query(q): Query<CallbackQuery>, headers: HeaderMap) -> Response {
    // No bearer token: the browser of whoever gave consent lands here. The
    // one-time `state` names the pending flow, and the cookie `connect` set
    // proves this is the browser that started it.
    let Some(state) = q.state else {
        return page(StatusCode::BAD_REQUEST, "the callback carries no `state`");
    };
    if let Some(err) = q.error {
        let message = match quotable_error_code(&err) {
            Some(code) => format!("the provider refused consent: `{code}`"),
            None => "the provider refused consent".to_string(),
        };
        return page(StatusCode::BAD_REQUEST, &message);
    }
    let Some(code) = q.code else {
        return page(StatusCode::BAD_REQUEST, "the callback carries no `code`");
    };
    let cookie_name = consent_cookie_name(&state);
    let cookie = cookie_value(&headers, &cookie_name);
    match s
        .credentials
        .finish_consent(&state, &code, cookie.as_deref())
        .await
    {
        Ok(name) => {
            let mut response = page(
                StatusCode::OK,
                &format!("Credential `{name}` is connected. You can close this page."),
            );
            let clear = consent_cookie(&cookie_name, "", 0, &redirect_url(&s));
            response.headers_mut().insert(header::SET_COOKIE, clear);
            response
        }
        Err(e) => {
            let message = e.to_string();
            let status = ApiError::from(e).status;
            if status.is_server_error() {
                tracing::error!(error = %message, "the consent callback failed");
                return page(
                    status,
                    "Plugboard could not complete the connection; the host's log says why.",
                );
            }
            page(status, &message)
        }
    }
}

/// A page for the browser at the end of a consent flow.
fn page(status: StatusCode, message: &str) -> Response {
    let page = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Plugboard</title><p>{}</p>",
        html_escape(message)
    );
    let mut response = (status, Html(page)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The consent cookie is HttpOnly, SameSite=Lax, scoped to the callback,
    /// short-lived, and Secure exactly when the public URL is https.
    #[test]
    fn consent_cookie_attributes_follow_the_public_url() {
        let https = url::Url::parse("https://plugboard.example.com/base/v1/oauth/callback").unwrap();
        let cookie = consent_cookie("plugboard-consent-ab", "n0nce", 600, &https);
        assert_eq!(
            cookie.to_str().unwrap(),
            "plugboard-consent-ab=n0nce; Max-Age=600; Path=/base/v1/oauth/callback; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(cookie.is_sensitive());
        let http = url::Url::parse("http://localhost:8080/v1/oauth/callback").unwrap();
        let cookie = consent_cookie("c", "n", 600, &http);
        assert!(!cookie.to_str().unwrap().contains("Secure"), "{cookie:?}");
    }

    /// The cookie is found among others, in one header or several.
    #[test]
    fn cookie_values_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; plugboard-consent-x=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(
            cookie_value(&headers, "plugboard-consent-x").as_deref(),
            Some("abc")
        );
        assert_eq!(cookie_value(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&headers, "plugboard-consent"), None);
    }
}
