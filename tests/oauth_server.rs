//! A loopback OAuth 2.0 authorization server with a protected API, standing
//! in for an identity provider and the API it guards.
//!
//! It implements what the host's OAuth grants need, checked the way a real
//! provider checks them: `POST /token` for `client_credentials` (client
//! authentication by Basic or form, as configured), the JWT bearer grant
//! (RFC 7523: signature, `iss`, `sub`, `aud`, `exp`), `authorization_code`
//! (code, `redirect_uri` and PKCE S256 verifier) and `refresh_token` (which
//! rotates the refresh token); `GET /authorize`, a consent screen that
//! approves at once; and `/api/*`, which accepts only unexpired, unrevoked
//! tokens it issued.
//!
//! Tests steer it through [`OAuthServer`]: token lifetime, injected failures,
//! a delay on the token endpoint (to widen race windows), revocation, and what
//! it saw (token requests per grant, the last assertion's claims).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

/// The JWT bearer grant's `grant_type` (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How the server expects the client to authenticate at `/token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// HTTP Basic, id and secret form-encoded first (RFC 6749 section 2.3.1).
    Basic,
    /// `client_id` and `client_secret` form fields.
    Body,
}

/// What the JWT bearer grant accepts.
#[derive(Clone, Debug)]
pub struct JwtCheck {
    /// The algorithm assertions must be signed with.
    pub algorithm: jsonwebtoken::Algorithm,
    /// The public key (PEM, SPKI) that verifies them.
    pub public_key_pem: String,
    /// Required `iss`.
    pub issuer: String,
    /// Required `sub`.
    pub subject: String,
    /// Required `aud`.
    pub audience: String,
}

/// The server's registered client and grants.
#[derive(Clone, Debug)]
pub struct OAuthServerConfig {
    /// The one registered client.
    pub client_id: String,
    /// Its secret; `None` makes it a public client (PKCE only).
    pub client_secret: Option<String>,
    /// How it must authenticate.
    pub client_auth: ClientAuthMethod,
    /// Accepting JWT bearer assertions, when set.
    pub jwt: Option<JwtCheck>,
}

impl Default for OAuthServerConfig {
    fn default() -> Self {
        OAuthServerConfig {
            client_id: "plugboard".into(),
            client_secret: Some("client-s3cret".into()),
            client_auth: ClientAuthMethod::Basic,
            jwt: None,
        }
    }
}

/// One request `/token` received.
#[derive(Clone, Debug)]
pub struct TokenRequestSeen {
    /// Its `grant_type`.
    pub grant_type: String,
    /// Every form field.
    pub params: BTreeMap<String, String>,
    /// The decoded Basic credentials (id, secret), if sent.
    pub basic: Option<(String, String)>,
}

struct Issued {
    expires_at: Instant,
    revoked: bool,
}

struct PendingCode {
    redirect_uri: String,
    challenge: String,
}

struct ServerState {
    expires_in: u64,
    delay: Duration,
    /// Requests still to fail, with the status and body to answer.
    failures: Option<(usize, u16, String)>,
    expired_status: u16,
    access: HashMap<String, Issued>,
    /// Refresh tokens and whether each is still valid.
    refresh: HashMap<String, bool>,
    codes: HashMap<String, PendingCode>,
    requests: Vec<TokenRequestSeen>,
    last_jwt: Option<(jsonwebtoken::Header, Value)>,
    last_authorize: Option<BTreeMap<String, String>>,
    last_access: Option<String>,
    last_refresh: Option<String>,
    /// `Authorization` of every protected-API request, in order.
    api_authorizations: Vec<String>,
}

struct Shared {
    config: OAuthServerConfig,
    state: Mutex<ServerState>,
}

/// A running server on `127.0.0.1`; it stops with the test's runtime.
#[derive(Clone)]
pub struct OAuthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl OAuthServer {
    /// Starts a server on `127.0.0.1:0`; tokens last an hour until told otherwise.
    pub async fn start(config: OAuthServerConfig) -> OAuthServer {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(ServerState {
                expires_in: 3600,
                delay: Duration::ZERO,
                failures: None,
                expired_status: 401,
                access: HashMap::new(),
                refresh: HashMap::new(),
                codes: HashMap::new(),
                requests: Vec::new(),
                last_jwt: None,
                last_authorize: None,
                last_access: None,
                api_authorizations: Vec::new(),
                last_refresh: None,
            }),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/authorize", get(authorize))
            .route("/api/{*path}", any(api))
            .route("/misbehave/redirect", post(redirect_to_token))
            .route("/misbehave/huge", post(huge))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OAuthServer { addr, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A URL on this server.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.base_url())).expect("server URL")
    }

    /// Token requests received so far, failed ones included.
    pub fn token_requests(&self) -> usize {
        self.lock().requests.len()
    }

    /// Token requests received so far with this `grant_type`.
    pub fn token_requests_for(&self, grant_type: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.grant_type == grant_type)
            .count()
    }

    /// The last token request.
    pub fn last_token_request(&self) -> Option<TokenRequestSeen> {
        self.lock().requests.last().cloned()
    }

    /// Lifetime of the tokens issued from now on, sent as `expires_in`.
    pub fn set_expires_in(&self, secs: u64) {
        self.lock().expires_in = secs;
    }

    /// Makes `/token` wait this long before answering (after counting the request).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Answers the next `n` token requests with this status and JSON body.
    pub fn fail_next(&self, n: usize, status: u16, body: &str) {
        self.lock().failures = Some((n, status, body.to_string()));
    }

    /// The status `/api/*` answers an expired token with (401 by default),
    /// for APIs that say 403 or 400 instead.
    pub fn answer_expired_with(&self, status: u16) {
        self.lock().expired_status = status;
    }

    /// Refuses every refresh token issued so far (`invalid_grant`).
    pub fn revoke_refresh_tokens(&self) {
        self.lock().refresh.values_mut().for_each(|valid| *valid = false);
    }

    /// Refuses every access token issued so far at `/api/*`.
    pub fn revoke_access_tokens(&self) {
        self.lock().access.values_mut().for_each(|t| t.revoked = true);
    }

    /// The claims of the last JWT bearer assertion that verified.
    pub fn last_jwt_claims(&self) -> Option<Value> {
        self.lock().last_jwt.as_ref().map(|(_, claims)| claims.clone())
    }

    /// The header of the last JWT bearer assertion that verified.
    pub fn last_jwt_header(&self) -> Option<jsonwebtoken::Header> {
        self.lock().last_jwt.as_ref().map(|(header, _)| header.clone())
    }

    /// The query of the last `/authorize` request.
    pub fn last_authorize_query(&self) -> Option<BTreeMap<String, String>> {
        self.lock().last_authorize.clone()
    }

    /// The `Authorization` header of the protected API's last request (the
    /// echo a plugin gets has the token taken out).
    pub fn last_api_authorization(&self) -> Option<String> {
        self.lock().api_authorizations.last().cloned()
    }

    /// The last access token issued.
    pub fn last_access_token(&self) -> Option<String> {
        self.lock().last_access.clone()
    }

    /// The last refresh token issued.
    pub fn last_refresh_token(&self) -> Option<String> {
        self.lock().last_refresh.clone()
    }

    /// Whether the server would still accept this refresh token.
    pub fn refresh_token_valid(&self, token: &str) -> bool {
        self.lock().refresh.get(token).copied().unwrap_or(false)
    }

    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues an access token (and a refresh token when asked) as a token response.
    fn issue(&self, with_refresh: bool) -> Response {
        let mut state = self.lock();
        let access = random_token("at");
        let expires_in = state.expires_in;
        state.access.insert(
            access.clone(),
            Issued {
                expires_at: Instant::now() + Duration::from_secs(expires_in),
                revoked: false,
            },
        );
        state.last_access = Some(access.clone());
        let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in});
        if with_refresh {
            let refresh = random_token("rt");
            state.refresh.insert(refresh.clone(), true);
            state.last_refresh = Some(refresh.clone());
            body["refresh_token"] = json!(refresh);
        }
        json_response(200, body)
    }

    /// Checks the client's authentication: the configured method with the
    /// right id and secret, or for a public client its `client_id` alone.
    fn authenticate(
        &self,
        params: &BTreeMap<String, String>,
        basic: &Option<(String, String)>,
    ) -> Result<(), Refusal> {
        let config = &self.config;
        let refused = |why| Refusal(401, "invalid_client", why);
        let presented = match (basic, params.get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(Refusal(400, "invalid_request", "two client authentications"));
            }
            (Some((id, secret)), None) => Some((ClientAuthMethod::Basic, id.clone(), secret.clone())),
            (None, Some(secret)) => Some((
                ClientAuthMethod::Body,
                params.get("client_id").cloned().unwrap_or_default(),
                secret.clone(),
            )),
            (None, None) => None,
        };
        match (&config.client_secret, presented) {
            (Some(_), None) => Err(refused("client authentication is required")),
            (None, Some(_)) => Err(refused("a public client has no secret")),
            (None, None) => match params.get("client_id") {
                Some(id) if *id == config.client_id => Ok(()),
                _ => Err(refused("unknown client")),
            },
            (Some(expected), Some((method, id, secret))) => {
                if method != config.client_auth {
                    Err(refused("client authentication method not allowed"))
                } else if id != config.client_id || secret != *expected {
                    Err(refused("client authentication failed"))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn client_credentials(
        &self,
        params: &BTreeMap<String, String>,
        basic: &Option<(String, String)>,
    ) -> Response {
        if let Err(refusal) = self.authenticate(params, basic) {
            return refusal.into_response();
        }
        self.issue(false)
    }

    fn jwt_bearer(&self, params: &BTreeMap<String, String>, basic: &Option<(String, String)>) -> Response {
        let Some(check) = &self.config.jwt else {
            return oauth_error(400, "unauthorized_client", "the JWT bearer grant is not enabled");
        };
        // Client authentication is optional here (RFC 7523), but checked when sent.
        if (basic.is_some() || params.contains_key("client_secret"))
            && let Err(refusal) = self.authenticate(params, basic)
        {
            return refusal.into_response();
        }
        let Some(assertion) = params.get("assertion") else {
            return oauth_error(400, "invalid_request", "assertion is missing");
        };
        let key = match check.algorithm {
            jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => {
                jsonwebtoken::DecodingKey::from_ec_pem(check.public_key_pem.as_bytes())
            }
            _ => jsonwebtoken::DecodingKey::from_rsa_pem(check.public_key_pem.as_bytes()),
        }
        .expect("the configured public key parses");
        let mut validation = jsonwebtoken::Validation::new(check.algorithm);
        validation.set_audience(&[&check.audience]);
        validation.set_issuer(&[&check.issuer]);
        validation.sub = Some(check.subject.clone());
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
        let decoded = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
            Ok(d) => d,
            Err(e) => return oauth_error(400, "invalid_grant", &format!("assertion refused: {e}")),
        };
        self.lock().last_jwt = Some((decoded.header, decoded.claims));
        self.issue(false)
    }

    fn authorization_code(
        &self,
        params: &BTreeMap<String, String>,
        basic: &Option<(String, String)>,
    ) -> Response {
        if let Err(refusal) = self.authenticate(params, basic) {
            return refusal.into_response();
        }
        let code = params.get("code").cloned().unwrap_or_default();
        let Some(pending) = self.lock().codes.remove(&code) else {
            return oauth_error(400, "invalid_grant", "unknown or used code");
        };
        if params.get("redirect_uri") != Some(&pending.redirect_uri) {
            return oauth_error(
                400,
                "invalid_grant",
                "redirect_uri differs from the authorize request",
            );
        }
        let verifier = params.get("code_verifier").cloned().unwrap_or_default();
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != pending.challenge {
            return oauth_error(400, "invalid_grant", "PKCE verification failed");
        }
        self.issue(true)
    }

    fn refresh_token(&self, params: &BTreeMap<String, String>, basic: &Option<(String, String)>) -> Response {
        if let Err(refusal) = self.authenticate(params, basic) {
            return refusal.into_response();
        }
        let token = params.get("refresh_token").cloned().unwrap_or_default();
        {
            let mut state = self.lock();
            match state.refresh.get_mut(&token) {
                // Rotation: the presented token is spent.
                Some(valid) if *valid => *valid = false,
                _ => return oauth_error(400, "invalid_grant", "refresh token revoked or unknown"),
            }
        }
        self.issue(true)
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let basic = basic_credentials(&headers);
    let grant_type = params.get("grant_type").cloned().unwrap_or_default();
    let (delay, failure) = {
        let mut state = shared.lock();
        state.requests.push(TokenRequestSeen {
            grant_type: grant_type.clone(),
            params: params.clone(),
            basic: basic.clone(),
        });
        let failure = match &mut state.failures {
            Some((n, status, body)) if *n > 0 => {
                *n -= 1;
                Some((*status, body.clone()))
            }
            _ => None,
        };
        (state.delay, failure)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, body)) = failure {
        return raw_response(status, "application/json", body);
    }
    match grant_type.as_str() {
        "client_credentials" => shared.client_credentials(&params, &basic),
        JWT_BEARER_GRANT => shared.jwt_bearer(&params, &basic),
        "authorization_code" => shared.authorization_code(&params, &basic),
        "refresh_token" => shared.refresh_token(&params, &basic),
        _ => oauth_error(400, "unsupported_grant_type", "unknown grant_type"),
    }
}

/// A consent screen that approves at once: 302 back to `redirect_uri` with a code.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    shared.lock().last_authorize = Some(query.clone());
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("client_id") != shared.config.client_id {
        return raw_response(400, "text/plain", "bad response_type or client_id".into());
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return raw_response(400, "text/plain", "PKCE S256 is required".into());
    }
    let Ok(mut back) = Url::parse(&get("redirect_uri")) else {
        return raw_response(400, "text/plain", "bad redirect_uri".into());
    };
    let code = random_token("code");
    shared.lock().codes.insert(
        code.clone(),
        PendingCode {
            redirect_uri: get("redirect_uri"),
            challenge: get("code_challenge"),
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    Response::builder()
        .status(302)
        .header(header::LOCATION, back.as_str())
        .body(axum::body::Body::empty())
        .expect("redirect response")
}

/// The protected API: 200 for a valid token it issued, 401 otherwise, and
/// the configured status for an expired one.
async fn api(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
    let mut state = shared.lock();
    state.api_authorizations.push(authorization.clone());
    let (status, valid) = match state.access.get(token) {
        Some(t) if !t.revoked && Instant::now() < t.expires_at => (200, true),
        Some(t) if !t.revoked => (state.expired_status, false),
        _ => (401, false),
    };
    let mut response = json_response(
        status,
        json!({"path": uri.path(), "authorization": authorization, "token_valid": valid}),
    );
    if status == 401 {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

/// A token endpoint that redirects (a client must not follow it with its secret).
async fn redirect_to_token() -> Response {
    Response::builder()
        .status(307)
        .header(header::LOCATION, "/token")
        .body(axum::body::Body::empty())
        .expect("redirect response")
}

/// A token endpoint that answers 2 MiB.
async fn huge() -> Response {
    raw_response(
        200,
        "application/json",
        format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20)),
    )
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

fn form_decode(part: &str) -> String {
    url::form_urlencoded::parse(format!("v={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn random_token(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hash = Sha256::new();
    hash.update(COUNTER.fetch_add(1, Ordering::SeqCst).to_le_bytes());
    hash.update(std::process::id().to_le_bytes());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    hash.update(nanos.to_le_bytes());
    format!("{prefix}-{}", URL_SAFE_NO_PAD.encode(hash.finalize()))
}

/// A client authentication refusal: status, OAuth `error`, description.
struct Refusal(u16, &'static str, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        oauth_error(self.0, self.1, self.2)
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    json_response(status, json!({"error": error, "error_description": description}))
}

fn json_response(status: u16, body: Value) -> Response {
    raw_response(status, "application/json", body.to_string())
}

fn raw_response(status: u16, content_type: &str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, content_type.to_string())], body).into_response()
}
