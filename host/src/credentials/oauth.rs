//! OAuth 2.0 access tokens for named credentials: client credentials, JWT
//! bearer assertions (RFC 7523) and the authorization-code flow with PKCE.
//!
//! This module owns a credential's grant settings and their validation, the
//! requests to the token endpoint, and [`TokenSource`], the per-credential
//! token cache the callout policy asks for a bearer token. It leaves to
//! others: sealing and storing the tokens of the authorization-code flow (the
//! caller, through [`TokenPersist`]), the consent flow's HTTP routes (they call
//! [`start_authorization`] and [`exchange_code`]), and putting the token on a
//! request (the callout policy).
//!
//! Token endpoints are reached through the credential's own pooled client,
//! never following a redirect (a redirected token request would carry the
//! client's secret to wherever the redirect points), with each exchange capped
//! at [`TOKEN_TIMEOUT`] and each answer at [`MAX_TOKEN_RESPONSE_BYTES`]. No
//! secret, token, assertion or code appears in an error, a log line or `Debug`
//! output: errors quote only the status and a registered OAuth error code
//! ([`quotable_error_code`]), never the endpoint's free text.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full, Limited};
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::callout::HttpClient;
use crate::credentials::Secret;

/// Longest one token-endpoint exchange may take, connection included: a
/// callout waits for its token, so a hung identity provider must not hold it
/// for the credential's whole timeout.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token-endpoint answer read; real ones are a few hundred bytes.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;
/// RFC 7523's grant type.
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Longest assertion lifetime accepted: RFC 7523 assertions are meant to be
/// short-lived, and most providers refuse anything over an hour.
const MAX_JWT_LIFETIME_SECS: u64 = 3600;
/// The OAuth error codes an error message may quote: RFC 6749's, and those
/// of the IANA OAuth Extensions Error registry and OpenID Connect. Anything
/// else a token endpoint or a consent redirect puts in `error` is not shown,
/// nor ever `error_description` or `error_uri`: they are free text from the
/// other side, which may quote what it was sent.
const ERROR_CODES: &[&str] = &[
    // RFC 6749
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    // RFC 6750, 7009, 8628, 8707, 9449, 9470
    "invalid_token",
    "insufficient_scope",
    "unsupported_token_type",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "insufficient_user_authentication",
    // OpenID Connect Core
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
];

/// `code` when it is a registered OAuth error code that an error message may
/// quote, else `None`.
pub fn quotable_error_code(code: &str) -> Option<&str> {
    ERROR_CODES.contains(&code).then_some(code)
}
/// Token request parameters the grants set themselves.
const RESERVED_TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "assertion",
    "code",
    "code_verifier",
    "redirect_uri",
    "refresh_token",
];
/// Authorize request parameters the consent flow sets itself.
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
];

/// The OAuth 2.0 grant a credential obtains its access tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `grant = "client_credentials"`: the client's own id and secret (RFC 6749 section 4.4).
    ClientCredentials,
    /// `grant = "jwt_bearer"`: a JWT signed with the credential's private key (RFC 7523).
    JwtBearer,
    /// `grant = "authorization_code"`: a person consents once; the refresh
    /// token obtained then keeps the credential working (RFC 6749 section 4.1, PKCE).
    AuthorizationCode,
}

impl GrantType {
    /// The grant's name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::JwtBearer => "jwt_bearer",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}

/// How `client_id` and `client_secret` reach the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_auth = "basic"`: HTTP Basic (`client_secret_basic`), the default.
    #[default]
    Basic,
    /// `client_auth = "body"`: form fields of the request (`client_secret_post`).
    Body,
}

/// The algorithm a JWT bearer assertion is signed with; named as in JOSE.
#[allow(clippy::upper_case_acronyms)] // JOSE's own names, as written in configuration
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// `algorithm = "RS256"`: RSA PKCS#1 v1.5 with SHA-256, the default.
    #[default]
    RS256,
    /// `algorithm = "RS512"`: RSA PKCS#1 v1.5 with SHA-512.
    RS512,
    /// `algorithm = "ES256"`: ECDSA on P-256 with SHA-256.
    ES256,
}

impl JwtAlgorithm {
    fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            JwtAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }

    /// The key this algorithm needs, in words for error messages.
    fn key_kind(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 | JwtAlgorithm::RS512 => "an RSA private key (PEM, PKCS#1 or PKCS#8)",
            JwtAlgorithm::ES256 => "a P-256 private key (PEM, PKCS#8)",
        }
    }
}

/// The signed assertion of the `jwt_bearer` grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// `algorithm = "RS256"` (or `RS512`, `ES256`).
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// `issuer = "svc@project.iam"`: the `iss` claim; `client_id` when unset.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `subject = "svc@project.iam"`: the `sub` claim (the account acted as).
    pub subject: String,
    /// `audience = "https://login.example/token"`: the `aud` claim.
    pub audience: String,
    /// `lifetime_secs = 120`: the assertion's lifetime (`exp - iat`).
    #[serde(default = "default_jwt_lifetime")]
    pub lifetime_secs: u64,
    /// `key_id = "k1"`: the header's `kid`, for providers holding several keys.
    #[serde(default)]
    pub key_id: Option<String>,
}

fn default_jwt_lifetime() -> u64 {
    120
}

fn default_refresh_before() -> u64 {
    60
}

// `url::Url` (de)serializes through url's `serde` feature, which oauth2 enables.
/// How a credential obtains OAuth 2.0 access tokens. Not secret: the client
/// secret and private key are the credential's secrets, by name (see
/// [`OAuthSettings::secret_names`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// `grant = "client_credentials"` (or `jwt_bearer`, `authorization_code`).
    pub grant: GrantType,
    /// `token_url = "https://login.example/oauth/token"`.
    pub token_url: Url,
    /// `authorize_url = "https://login.example/oauth/authorize"`: the consent
    /// screen; `authorization_code` only, and required there.
    #[serde(default)]
    pub authorize_url: Option<Url>,
    /// `client_id = "plugboard"`.
    pub client_id: String,
    /// `client_auth = "basic"` (or `body`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `scopes = ["read", "write"]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `token_params = { audience = "https://api.example" }`: extra token request parameters.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// `authorize_params = { prompt = "consent", access_type = "offline" }`: extra authorize parameters.
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// `refresh_on = [403]`: statuses besides 401 by which the API says the token expired.
    #[serde(default)]
    pub refresh_on: Vec<u16>,
    /// `refresh_before_secs = 60`: renew a token this long before it expires
    /// (never more than half its lifetime, so short-lived tokens are still used).
    #[serde(default = "default_refresh_before")]
    pub refresh_before_secs: u64,
    /// `[auth.jwt]`: the assertion; `jwt_bearer` only, and required there.
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
}

impl OAuthSettings {
    /// Every problem with these settings, each naming its field: a missing
    /// `authorize_url` for `authorization_code`, `jwt` missing for
    /// `jwt_bearer` or present for another grant, an empty `client_id`, an
    /// endpoint that is not https (plain http only with `allow_http`), a
    /// parameter the grant sets itself, and so on. The private key is checked
    /// separately, by [`OAuthSettings::check_private_key`].
    pub fn problems(&self, allow_http: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let grant = self.grant.name();
        if self.client_id.trim().is_empty() {
            problems.push("`client_id` must not be empty".to_string());
        }
        check_endpoint("token_url", &self.token_url, allow_http, &mut problems);
        match (self.grant, &self.authorize_url) {
            (GrantType::AuthorizationCode, None) => {
                problems.push("`authorize_url` is required for grant `authorization_code`".to_string())
            }
            (GrantType::AuthorizationCode, Some(url)) => {
                check_endpoint("authorize_url", url, allow_http, &mut problems)
            }
            (_, Some(_)) => problems.push(format!(
                "`authorize_url` is only used by grant `authorization_code`, not `{grant}`"
            )),
            (_, None) => {}
        }
        if self.grant != GrantType::AuthorizationCode && !self.authorize_params.is_empty() {
            problems.push(format!(
                "`authorize_params` are only used by grant `authorization_code`, not `{grant}`"
            ));
        }
        match (self.grant, &self.jwt) {
            (GrantType::JwtBearer, None) => {
                problems.push("`jwt` settings are required for grant `jwt_bearer`".to_string())
            }
            (GrantType::JwtBearer, Some(jwt)) => jwt.check(&mut problems),
            (_, Some(_)) => problems.push(format!(
                "`jwt` settings are only used by grant `jwt_bearer`, not `{grant}`"
            )),
            (_, None) => {}
        }
        for scope in &self.scopes {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                problems.push(format!(
                    "`scopes` entry `{scope}` must be one word: list each scope separately"
                ));
            }
        }
        check_params(
            "token_params",
            &self.token_params,
            RESERVED_TOKEN_PARAMS,
            &mut problems,
        );
        check_params(
            "authorize_params",
            &self.authorize_params,
            RESERVED_AUTHORIZE_PARAMS,
            &mut problems,
        );
        for status in &self.refresh_on {
            if !(400..=599).contains(status) {
                problems.push(format!(
                    "`refresh_on` status `{status}` is not an error status (400-599)"
                ));
            }
        }
        problems
    }

    /// The secrets this grant uses, each with whether it is required:
    /// `client_credentials` needs `client_secret`; `jwt_bearer` needs
    /// `private_key` and may add `client_secret`; `authorization_code` may use
    /// `client_secret` (public clients rely on PKCE alone). The tokens the
    /// consent flow stores (`access_token`, `refresh_token`) are not listed.
    pub fn secret_names(&self) -> Vec<(&'static str, bool)> {
        match self.grant {
            GrantType::ClientCredentials => vec![("client_secret", true)],
            GrantType::JwtBearer => vec![("private_key", true), ("client_secret", false)],
            GrantType::AuthorizationCode => vec![("client_secret", false)],
        }
    }

    /// Checks that a PEM private key can sign assertions with the configured
    /// algorithm: RSA for `RS256`/`RS512`, P-256 in PKCS#8 for `ES256`. The
    /// key is tried by signing a throwaway token, since parsing the PEM alone
    /// accepts keys the signer then refuses. Errors never contain the key.
    pub fn check_private_key(&self, pem: &Secret) -> Result<(), String> {
        let jwt = self
            .jwt
            .as_ref()
            .ok_or_else(|| format!("grant `{}` does not use a private key", self.grant.name()))?;
        let probe = serde_json::json!({"probe": true});
        let header = jsonwebtoken::Header::new(jwt.algorithm.jsonwebtoken());
        jsonwebtoken::encode(&header, &probe, &encoding_key(jwt.algorithm, pem)?)
            .map(drop)
            .map_err(|_| cannot_sign(jwt.algorithm))
    }
}

impl JwtSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if self.subject.trim().is_empty() {
            problems.push("`jwt.subject` must not be empty".to_string());
        }
        if self.audience.trim().is_empty() {
            problems.push("`jwt.audience` must not be empty".to_string());
        }
        if self.issuer.as_deref().is_some_and(|i| i.trim().is_empty()) {
            problems.push("`jwt.issuer` must not be empty when set (leave it out to use `client_id`)".into());
        }
        if self.key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
            problems.push("`jwt.key_id` must not be empty when set".to_string());
        }
        if !(1..=MAX_JWT_LIFETIME_SECS).contains(&self.lifetime_secs) {
            problems.push(format!(
                "`jwt.lifetime_secs` is `{}`: it must be between 1 and {MAX_JWT_LIFETIME_SECS}",
                self.lifetime_secs
            ));
        }
    }
}

/// Checks an endpoint URL: https (plain http only with `allow_http`), no
/// user info (it would be sent along), no fragment.
fn check_endpoint(field: &str, url: &Url, allow_http: bool, problems: &mut Vec<String>) {
    if !url.username().is_empty() || url.password().is_some() {
        // The URL is not quoted: its user info may be a password.
        problems.push(format!("`{field}` must not contain a user name or password"));
        return;
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => problems.push(format!(
            "`{field}` `{url}` uses plain http: use https, or set `allow_http = true` for a system on a trusted local network"
        )),
        _ => problems.push(format!("`{field}` `{url}` must be an https URL")),
    }
    if url.fragment().is_some() {
        problems.push(format!("`{field}` `{url}` must not have a fragment"));
    }
}

fn check_params(field: &str, params: &BTreeMap<String, String>, reserved: &[&str], out: &mut Vec<String>) {
    for name in params.keys() {
        if name.is_empty() {
            out.push(format!("`{field}` has an empty parameter name"));
        } else if reserved.contains(&name.as_str()) {
            out.push(format!("`{field}` cannot set `{name}`: the grant sets it itself"));
        }
    }
}

fn encoding_key(algorithm: JwtAlgorithm, pem: &Secret) -> Result<jsonwebtoken::EncodingKey, String> {
    let parsed = match algorithm {
        JwtAlgorithm::RS256 | JwtAlgorithm::RS512 => {
            jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes())
        }
        JwtAlgorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem.expose().as_bytes()),
    };
    // jsonwebtoken's errors describe the PEM; only the kind of problem is kept.
    parsed.map_err(|_| cannot_sign(algorithm))
}

fn cannot_sign(algorithm: JwtAlgorithm) -> String {
    format!(
        "the private key cannot sign {algorithm:?} assertions: it must be {}",
        algorithm.key_kind()
    )
}

/// Tokens the authorization-code flow stores (sealed by the caller), so the
/// credential survives restarts.
#[derive(Clone, Debug, Default)]
pub struct StoredTokens {
    /// The last access token.
    pub access_token: Option<Secret>,
    /// The refresh token, which obtains new access tokens.
    pub refresh_token: Option<Secret>,
    /// When the access token expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// Where a [`TokenSource`] persists the tokens it obtains by refresh: a
/// provider that rotates refresh tokens invalidates the old one, so the new
/// one must be saved before the next restart.
pub trait TokenPersist: Send + Sync + 'static {
    /// Saves the tokens after a refresh (the refresh token is the newest one).
    fn save(&self, tokens: &StoredTokens) -> Result<(), String>;
    /// The refresh token was refused or none is stored: someone must run the
    /// consent flow again. `reason` is safe to show.
    fn reconnect_needed(&self, reason: &str);
}

/// An access token with its expiry.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The bearer token.
    pub value: Secret,
    /// When it expires, if the token endpoint said.
    pub expires_at: Option<SystemTime>,
    /// Which token of this source it is (1, 2, ...): tells a caller holding a
    /// refused token whether another caller already replaced it.
    pub generation: u64,
}

/// Why no access token is available.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Could not obtain a token. `detail` is what the token endpoint said
    /// (status and a registered OAuth `error` code) or why it could not be
    /// reached - never a secret. Retryable: 5xx, 429, timeouts, connection
    /// failures; not retryable: refusals such as `invalid_client`.
    #[error("credential `{credential}` could not obtain an access token: {detail}")]
    Unavailable {
        /// Credential name.
        credential: String,
        /// What went wrong.
        detail: String,
        /// Whether trying again later may succeed.
        retryable: bool,
    },
    /// The refresh token was refused (`invalid_grant`) or none is stored:
    /// someone must run the consent flow again.
    #[error("credential `{credential}` needs to be reconnected: {detail}")]
    ReconnectNeeded {
        /// Credential name.
        credential: String,
        /// Why.
        detail: String,
    },
}

impl TokenError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            TokenError::Unavailable { retryable, .. } => *retryable,
            TokenError::ReconnectNeeded { .. } => false,
        }
    }
}

/// A credential's token state, for status pages.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenStatus {
    /// `no_token`, `valid`, `expired` or `reconnect_needed`.
    pub state: &'static str,
    /// When the current token expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The last error, or why reconnecting is needed.
    pub detail: Option<String>,
}

/// A token the source holds, with when to stop handing it out.
struct Cached {
    token: AccessToken,
    /// From this moment on the token is renewed instead of used; `None` when
    /// its expiry is unknown (it is used until an API refuses it).
    renew_at: Option<SystemTime>,
}

#[derive(Default)]
struct TokenState {
    current: Option<Cached>,
    refresh_token: Option<Secret>,
    generation: u64,
    /// Token requests completed. A caller that waited for the request in
    /// flight sees it changed and shares that request's result.
    attempts: u64,
    last_error: Option<TokenError>,
    /// Set once the refresh token is refused or missing; sticky, because no
    /// request can succeed until the consent flow runs again.
    reconnect: Option<String>,
    /// When a refusal last made this source request a token.
    last_forced: Option<std::time::Instant>,
}

/// Least time between two token requests forced by an API refusing a token.
/// A token refused right after it was issued is almost never expired: the
/// plugin is calling something the token cannot reach, and a new token would
/// be refused too. Without this bound a plugin could make the host request a
/// token on every callout, tripping the identity provider's own limits (and,
/// with a rotating refresh token, risk the credential).
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

impl TokenState {
    fn fresh(&self, now: SystemTime) -> Option<AccessToken> {
        let cached = self.current.as_ref()?;
        cached
            .renew_at
            .is_none_or(|at| now < at)
            .then(|| cached.token.clone())
    }
}

/// What one successful token request produced.
struct Obtained {
    access: Secret,
    expires_in: Option<Duration>,
    refresh_token: Option<Secret>,
    /// When the request was sent: the expiry counts from then, erring early.
    requested_at: SystemTime,
}

impl Obtained {
    fn from_response(response: &BasicTokenResponse, requested_at: SystemTime) -> Result<Obtained, Failure> {
        if response.access_token().secret().is_empty() {
            return Err(Failure::Malformed {
                status: 200,
                what: "an empty `access_token`".into(),
            });
        }
        Ok(Obtained {
            access: Secret::new(response.access_token().secret().clone()),
            expires_in: response.expires_in(),
            refresh_token: response.refresh_token().map(|t| Secret::new(t.secret().clone())),
            requested_at,
        })
    }

    fn expires_at(&self) -> Option<SystemTime> {
        self.expires_in.map(|d| self.requested_at + d)
    }
}

/// One credential's token cache. Reads are cheap; at most one token request
/// is in flight: concurrent callers wait for it and share its result, so 50
/// callers around an expiry cause one request.
pub struct TokenSource {
    credential: String,
    settings: OAuthSettings,
    client_secret: Option<Secret>,
    private_key: Option<Secret>,
    client: HttpClient,
    persist: Arc<dyn TokenPersist>,
    /// A std mutex: held only to read or swap a few fields, never across an await.
    state: Mutex<TokenState>,
    /// A tokio mutex: held across the token request, which makes it single flight.
    flight: tokio::sync::Mutex<()>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.credential)
            .field("grant", &self.settings.grant)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `credential`, starting from the `stored` tokens (those of
    /// the authorization-code flow; empty for the other grants).
    pub fn new(
        credential: &str,
        settings: OAuthSettings,
        client_secret: Option<Secret>,
        private_key: Option<Secret>,
        stored: StoredTokens,
        client: HttpClient,
        persist: Arc<dyn TokenPersist>,
    ) -> TokenSource {
        let before = Duration::from_secs(settings.refresh_before_secs);
        let mut state = TokenState {
            refresh_token: stored.refresh_token,
            ..TokenState::default()
        };
        if let Some(value) = stored.access_token {
            let expires_at = stored.expires_at_ms.map(crate::time::from_unix_ms);
            state.generation = 1;
            state.current = Some(Cached {
                token: AccessToken {
                    value,
                    expires_at,
                    generation: 1,
                },
                // A stored token's lifetime is unknown: renew it the full margin early.
                renew_at: renew_at(expires_at, None, before),
            });
        }
        TokenSource {
            credential: credential.to_string(),
            settings,
            client_secret,
            private_key,
            client,
            persist,
            state: Mutex::new(state),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// A valid token: the cached one unless it expires within
    /// `refresh_before_secs` (capped at half its lifetime), else a new one
    /// (`client_credentials` and `jwt_bearer` request one; `authorization_code`
    /// uses the refresh token, and with none stored answers
    /// [`TokenError::ReconnectNeeded`]).
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let seen = {
            let state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now()) {
                return Ok(token);
            }
            if let Some(detail) = &state.reconnect {
                return Err(self.reconnect_error(detail));
            }
            state.attempts
        };
        let _flight = self.flight.lock().await;
        {
            let state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now()) {
                return Ok(token);
            }
            if let Some(shared) = self.shared_failure(&state, seen) {
                return Err(shared);
            }
        }
        self.obtain().await
    }

    /// The upstream refused `rejected` (401, or a status in `refresh_on`): get
    /// a new token, unless another caller already replaced it (its generation
    /// differs), in which case the current one is returned. Many concurrent
    /// callers with the same refused token still cause one request.
    pub async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken, TokenError> {
        let seen = {
            let state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now())
                && token.generation != rejected.generation
            {
                return Ok(token);
            }
            state.attempts
        };
        let _flight = self.flight.lock().await;
        {
            let mut state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now())
                && token.generation != rejected.generation
            {
                return Ok(token);
            }
            if let Some(shared) = self.shared_failure(&state, seen) {
                return Err(shared);
            }
            // The refused token must not be handed out again, even if the
            // request below fails.
            if state
                .current
                .as_ref()
                .is_some_and(|c| c.token.generation == rejected.generation)
            {
                state.current = None;
            }
            state.last_forced = Some(std::time::Instant::now());
        }
        self.obtain().await
    }

    /// Whether a refusal of `rejected` may make this source request a new
    /// token: not when a refusal already did within
    /// [`FORCED_REFRESH_INTERVAL`] and `rejected` is still the newest token.
    /// (A refused token that was replaced meanwhile, or whose replacement is
    /// being requested, costs no request.)
    pub fn may_force_refresh(&self, rejected: &AccessToken) -> bool {
        let state = self.lock();
        let replaced = state
            .current
            .as_ref()
            .is_some_and(|c| c.token.generation != rejected.generation);
        // A refresh under way is joined, not repeated: it costs no request.
        let in_flight = state.current.is_none() && self.flight.try_lock().is_err();
        replaced
            || in_flight
            || state
                .last_forced
                .is_none_or(|at| at.elapsed() >= FORCED_REFRESH_INTERVAL)
    }

    /// Requests a new token now, whatever the cache holds (the connection test).
    pub async fn fetch_new(&self) -> Result<AccessToken, TokenError> {
        let _flight = self.flight.lock().await;
        self.obtain().await
    }

    /// The token state, for status pages.
    pub fn status(&self) -> TokenStatus {
        let state = self.lock();
        let expires_at = state.current.as_ref().and_then(|c| c.token.expires_at);
        let expires_at_ms = expires_at.map(unix_ms);
        if let Some(detail) = &state.reconnect {
            return TokenStatus {
                state: "reconnect_needed",
                expires_at_ms,
                detail: Some(detail.clone()),
            };
        }
        let detail = state.last_error.as_ref().map(ToString::to_string);
        let name = match (&state.current, expires_at) {
            (None, _) => "no_token",
            (Some(_), Some(at)) if at <= SystemTime::now() => "expired",
            (Some(_), _) => "valid",
        };
        TokenStatus {
            state: name,
            expires_at_ms,
            detail,
        }
    }

    /// The settings this source was made with.
    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, TokenState> {
        // A panic while holding the lock leaves consistent fields (each is
        // replaced whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure to share with a caller that waited for the flight lock: a
    /// request that completed meanwhile failed, or reconnecting is needed.
    fn shared_failure(&self, state: &TokenState, seen: u64) -> Option<TokenError> {
        if let Some(detail) = &state.reconnect {
            return Some(self.reconnect_error(detail));
        }
        (state.attempts != seen)
            .then(|| state.last_error.clone())
            .flatten()
    }

    fn reconnect_error(&self, detail: &str) -> TokenError {
        TokenError::ReconnectNeeded {
            credential: self.credential.clone(),
            detail: detail.to_string(),
        }
    }

    fn unavailable(&self, detail: impl Into<String>) -> TokenError {
        TokenError::Unavailable {
            credential: self.credential.clone(),
            detail: detail.into(),
            retryable: false,
        }
    }

    /// Sends one token request and records its outcome. Called only with the
    /// flight lock held.
    async fn obtain(&self) -> Result<AccessToken, TokenError> {
        let result = match self.settings.grant {
            GrantType::ClientCredentials => self.request_client_credentials().await,
            GrantType::JwtBearer => self.request_jwt_bearer().await,
            GrantType::AuthorizationCode => self.request_refresh().await,
        };
        match result {
            Ok(obtained) => Ok(self.install(obtained)),
            Err(error) => {
                tracing::warn!(credential = %self.credential, error = %error, "token request failed");
                let mut state = self.lock();
                state.attempts += 1;
                state.last_error = Some(error.clone());
                if let TokenError::ReconnectNeeded { detail, .. } = &error {
                    let newly = state.reconnect.replace(detail.clone()).is_none();
                    state.refresh_token = None;
                    drop(state);
                    // Told once: later calls answer from the sticky state.
                    if newly {
                        self.persist.reconnect_needed(detail);
                    }
                }
                Err(error)
            }
        }
    }

    /// Makes `obtained` the current token; for `authorization_code`, also
    /// persists it with the (possibly rotated) refresh token.
    fn install(&self, obtained: Obtained) -> AccessToken {
        let before = Duration::from_secs(self.settings.refresh_before_secs);
        let expires_at = obtained.expires_at();
        let (token, stored) = {
            let mut state = self.lock();
            state.attempts += 1;
            state.generation += 1;
            state.last_error = None;
            let rotated = obtained.refresh_token.is_some();
            if let Some(refresh) = obtained.refresh_token {
                state.refresh_token = Some(refresh);
            }
            let token = AccessToken {
                value: obtained.access,
                expires_at,
                generation: state.generation,
            };
            state.current = Some(Cached {
                token: token.clone(),
                renew_at: renew_at(expires_at, obtained.expires_in, before),
            });
            let stored = StoredTokens {
                access_token: Some(token.value.clone()),
                refresh_token: state.refresh_token.clone(),
                expires_at_ms: expires_at.map(unix_ms),
            };
            tracing::info!(
                credential = %self.credential,
                grant = self.settings.grant.name(),
                expires_in_secs = obtained.expires_in.map(|d| d.as_secs()),
                refresh_token_rotated = rotated,
                "obtained an access token"
            );
            (token, stored)
        };
        if self.settings.grant == GrantType::AuthorizationCode
            && let Err(e) = self.persist.save(&stored)
        {
            // The token works now; only a restart would lose it.
            tracing::error!(credential = %self.credential, error = %e, "cannot save the refreshed tokens");
        }
        token
    }

    async fn request_client_credentials(&self) -> Result<Obtained, TokenError> {
        if self.client_secret.is_none() {
            return Err(self.unavailable("no `client_secret` is set"));
        }
        let oauth = token_client(&self.settings, self.client_secret.as_ref());
        let mut request = oauth
            .exchange_client_credentials()
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new));
        for (name, value) in &self.settings.token_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let exchange = Exchange::new(&self.client);
        let requested_at = SystemTime::now();
        let result = request.request_async(&exchange).await;
        let response = result.map_err(|e| exchange.failure(e).into_error(&self.credential, false))?;
        Obtained::from_response(&response, requested_at).map_err(|f| f.into_error(&self.credential, false))
    }

    async fn request_jwt_bearer(&self) -> Result<Obtained, TokenError> {
        let (Some(jwt), Some(key)) = (&self.settings.jwt, &self.private_key) else {
            return Err(self.unavailable("no `private_key` is set"));
        };
        let assertion = sign_assertion(&self.settings, jwt, key).map_err(|e| self.unavailable(e))?;
        let request = jwt_bearer_request(&self.settings, self.client_secret.as_ref(), &assertion)
            .map_err(|f| f.into_error(&self.credential, false))?;
        let requested_at = SystemTime::now();
        let response = send(&self.client, request)
            .await
            .map_err(|e| Failure::Send(e).into_error(&self.credential, false))?;
        let parsed = parse_token_response(&response).map_err(|f| f.into_error(&self.credential, false))?;
        Obtained::from_response(&parsed, requested_at).map_err(|f| f.into_error(&self.credential, false))
    }

    async fn request_refresh(&self) -> Result<Obtained, TokenError> {
        let Some(refresh) = self.lock().refresh_token.clone() else {
            return Err(self.reconnect_error("no refresh token is stored: run the consent flow"));
        };
        let oauth = token_client(&self.settings, self.client_secret.as_ref());
        let refresh = RefreshToken::new(refresh.expose().to_string());
        let mut request = oauth.exchange_refresh_token(&refresh);
        for (name, value) in &self.settings.token_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let exchange = Exchange::new(&self.client);
        let requested_at = SystemTime::now();
        let result = request.request_async(&exchange).await;
        let response = result.map_err(|e| exchange.failure(e).into_error(&self.credential, true))?;
        Obtained::from_response(&response, requested_at).map_err(|f| f.into_error(&self.credential, true))
    }
}

/// When to stop using a token expiring at `expires_at`: `before` earlier,
/// but never more than half its `lifetime` earlier (when known), so a
/// short-lived token is not renewed on every call.
fn renew_at(
    expires_at: Option<SystemTime>,
    lifetime: Option<Duration>,
    before: Duration,
) -> Option<SystemTime> {
    let expires_at = expires_at?;
    let margin = lifetime.map_or(before, |l| before.min(l / 2));
    Some(expires_at.checked_sub(margin).unwrap_or(UNIX_EPOCH))
}

/// authorization_code: the start of a consent flow. The caller keeps `state`
/// and `pkce_verifier` until the redirect comes back.
#[derive(Debug)]
pub struct PendingAuthorization {
    /// Where to send the person's browser.
    pub authorize_url: Url,
    /// The `state` the redirect must carry back (CSRF protection).
    pub state: String,
    /// The PKCE verifier [`exchange_code`] needs.
    pub pkce_verifier: Secret,
}

/// Starts a consent flow: the authorize URL with PKCE (S256), a random
/// `state`, the scopes and the extra `authorize_params`.
pub fn start_authorization(
    settings: &OAuthSettings,
    redirect_url: &Url,
) -> Result<PendingAuthorization, String> {
    if settings.grant != GrantType::AuthorizationCode {
        return Err(format!(
            "grant `{}` has no consent flow: only `authorization_code` does",
            settings.grant.name()
        ));
    }
    let problems = settings.problems(true);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let authorize_url = settings
        .authorize_url
        .clone()
        .ok_or("`authorize_url` is required for grant `authorization_code`")?;
    let oauth = BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(authorize_url))
        .set_redirect_uri(RedirectUrl::from_url(redirect_url.clone()));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = oauth
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scopes(settings.scopes.iter().cloned().map(Scope::new));
    for (name, value) in &settings.authorize_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let (url, state) = request.url();
    Ok(PendingAuthorization {
        authorize_url: url,
        state: state.secret().clone(),
        pkce_verifier: Secret::new(verifier.secret().clone()),
    })
}

/// Exchanges the code the consent redirect brought back (with the PKCE
/// verifier, the same redirect URL and the client authentication) for the
/// tokens to store. A refresh token is expected; without one the access token
/// alone is stored, and the credential needs reconnecting when it expires.
pub async fn exchange_code(
    credential: &str,
    settings: &OAuthSettings,
    client_secret: Option<&Secret>,
    client: &HttpClient,
    redirect_url: &Url,
    code: &str,
    pkce_verifier: &Secret,
) -> Result<StoredTokens, TokenError> {
    if settings.grant != GrantType::AuthorizationCode {
        return Err(TokenError::Unavailable {
            credential: credential.to_string(),
            detail: format!(
                "grant `{}` has no consent flow: only `authorization_code` does",
                settings.grant.name()
            ),
            retryable: false,
        });
    }
    let oauth =
        token_client(settings, client_secret).set_redirect_uri(RedirectUrl::from_url(redirect_url.clone()));
    let mut request = oauth
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_string()));
    for (name, value) in &settings.token_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let exchange = Exchange::new(client);
    let requested_at = SystemTime::now();
    let result = request.request_async(&exchange).await;
    let response = result.map_err(|e| exchange.failure(e).into_error(credential, false))?;
    let obtained =
        Obtained::from_response(&response, requested_at).map_err(|f| f.into_error(credential, false))?;
    if obtained.refresh_token.is_none() {
        tracing::warn!(
            credential,
            "the token endpoint issued no refresh token: the credential must be reconnected when the access token expires"
        );
    }
    Ok(StoredTokens {
        expires_at_ms: obtained.expires_at().map(unix_ms),
        access_token: Some(obtained.access),
        refresh_token: obtained.refresh_token,
    })
}

/// An oauth2 client for the token endpoint with the configured client authentication.
type TokenClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn token_client(settings: &OAuthSettings, client_secret: Option<&Secret>) -> TokenClient {
    let auth_type = match settings.client_auth {
        ClientAuth::Basic => AuthType::BasicAuth,
        ClientAuth::Body => AuthType::RequestBody,
    };
    let mut oauth = BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_token_uri(TokenUrl::from_url(settings.token_url.clone()))
        .set_auth_type(auth_type);
    if let Some(secret) = client_secret {
        oauth = oauth.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }
    oauth
}

/// The claims of an RFC 7523 assertion.
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
}

fn sign_assertion(settings: &OAuthSettings, jwt: &JwtSettings, key: &Secret) -> Result<String, String> {
    let now = crate::time::unix_secs(SystemTime::now());
    let claims = AssertionClaims {
        iss: jwt.issuer.as_deref().unwrap_or(&settings.client_id),
        sub: &jwt.subject,
        aud: &jwt.audience,
        exp: now + jwt.lifetime_secs,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
    };
    let mut header = jsonwebtoken::Header::new(jwt.algorithm.jsonwebtoken());
    header.kid = jwt.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &encoding_key(jwt.algorithm, key)?)
        .map_err(|_| cannot_sign(jwt.algorithm))
}

/// The JWT bearer token request, which oauth2 has no builder for: the
/// assertion, scopes and extra parameters, plus client authentication when a
/// client secret is set (RFC 7523 makes it optional).
fn jwt_bearer_request(
    settings: &OAuthSettings,
    client_secret: Option<&Secret>,
    assertion: &str,
) -> Result<oauth2::HttpRequest, Failure> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", JWT_BEARER_GRANT)
        .append_pair("assertion", assertion);
    if !settings.scopes.is_empty() {
        form.append_pair("scope", &settings.scopes.join(" "));
    }
    form.extend_pairs(&settings.token_params);
    let mut builder = http::Request::post(settings.token_url.as_str())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    match (settings.client_auth, client_secret) {
        (ClientAuth::Basic, Some(secret)) => {
            // RFC 6749 section 2.3.1: each part form-encoded before Basic, as oauth2 does.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&settings.client_id), encode(secret.expose()));
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            builder = builder.header(AUTHORIZATION, format!("Basic {basic}"));
        }
        (ClientAuth::Body, Some(secret)) => {
            form.append_pair("client_id", &settings.client_id)
                .append_pair("client_secret", secret.expose());
        }
        (_, None) => {}
    }
    builder
        .body(form.finish().into_bytes())
        .map_err(|e| Failure::Send(SendError::Build(e.to_string())))
}

/// Reads a token endpoint's answer with oauth2's types.
fn parse_token_response(response: &oauth2::HttpResponse) -> Result<BasicTokenResponse, Failure> {
    let status = response.status().as_u16();
    let body = response.body().as_slice();
    if status == 200 {
        // serde_json's messages can quote values (the token itself): keep only the kind.
        return serde_json::from_slice(body).map_err(|_| Failure::Malformed {
            status,
            what: "a body that is not an OAuth token response".into(),
        });
    }
    match serde_json::from_slice::<BasicErrorResponse>(body) {
        Ok(error) => Err(Failure::Refused { status, error }),
        Err(_) => Err(Failure::Malformed {
            status,
            what: "a body that is not an OAuth error response".into(),
        }),
    }
}

/// Why a token request failed, before it becomes a [`TokenError`].
enum Failure {
    /// The exchange itself failed.
    Send(SendError),
    /// The token endpoint answered with an OAuth error.
    Refused { status: u16, error: BasicErrorResponse },
    /// The token endpoint answered something else.
    Malformed { status: u16, what: String },
}

impl Failure {
    fn retryable(&self) -> bool {
        let busy = |status: u16| status >= 500 || status == 429;
        match self {
            Failure::Send(e) => e.retryable(),
            Failure::Refused { status, error } => {
                busy(*status) || matches!(error.error().as_ref(), "temporarily_unavailable" | "server_error")
            }
            Failure::Malformed { status, .. } => busy(*status),
        }
    }

    fn detail(&self) -> String {
        match self {
            Failure::Send(e) => e.to_string(),
            Failure::Refused { status, error } => match quotable_error_code(error.error().as_ref()) {
                Some(code) => format!("the token endpoint answered {status} `{code}`"),
                None => format!(
                    "the token endpoint answered {status} with an OAuth error code that is not a registered one (not shown)"
                ),
            },
            Failure::Malformed { status, what } => {
                format!("the token endpoint answered {status} with {what}")
            }
        }
    }

    /// The error for `credential`; `refreshing` turns a refused refresh token
    /// (`invalid_grant`) into [`TokenError::ReconnectNeeded`].
    fn into_error(self, credential: &str, refreshing: bool) -> TokenError {
        let invalid_grant =
            matches!(&self, Failure::Refused { error, .. } if error.error().as_ref() == "invalid_grant");
        if refreshing && invalid_grant {
            return TokenError::ReconnectNeeded {
                credential: credential.to_string(),
                detail: format!("the refresh token was refused: {}", self.detail()),
            };
        }
        TokenError::Unavailable {
            credential: credential.to_string(),
            retryable: self.retryable(),
            detail: self.detail(),
        }
    }
}

/// Why a token endpoint exchange did not produce an answer.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("cannot build the token request: {0}")]
    Build(String),
    #[error("cannot reach the token endpoint `{origin}`: {cause}")]
    Connect { origin: String, cause: String },
    #[error("the token endpoint `{origin}` did not answer within {} s", TOKEN_TIMEOUT.as_secs())]
    Timeout { origin: String },
    #[error("the token endpoint `{origin}` answered with a redirect ({status}), which is not followed")]
    Redirect { origin: String, status: u16 },
    #[error(
        "the token endpoint `{origin}` answered with more than {} bytes",
        MAX_TOKEN_RESPONSE_BYTES
    )]
    TooLarge { origin: String },
}

impl SendError {
    fn retryable(&self) -> bool {
        matches!(self, SendError::Connect { .. } | SendError::Timeout { .. })
    }
}

/// oauth2's HTTP client over the credential's pooled client. It remembers the
/// last status, which oauth2 drops when an error answer does not parse.
struct Exchange<'a> {
    client: &'a HttpClient,
    status: AtomicU16,
}

impl<'a> Exchange<'a> {
    fn new(client: &'a HttpClient) -> Exchange<'a> {
        Exchange {
            client,
            status: AtomicU16::new(0),
        }
    }

    fn failure(&self, error: RequestTokenError<SendError, BasicErrorResponse>) -> Failure {
        let status = self.status.load(Ordering::Relaxed);
        match error {
            RequestTokenError::ServerResponse(error) => Failure::Refused { status, error },
            RequestTokenError::Request(e) => Failure::Send(e),
            // The body is not quoted (a 200 body holds the token); the path of
            // the field that did not parse is.
            RequestTokenError::Parse(e, _) if status == 200 => Failure::Malformed {
                status,
                what: format!("a body that is not an OAuth token response (at `{}`)", e.path()),
            },
            RequestTokenError::Parse(..) => Failure::Malformed {
                status,
                what: "a body that is not an OAuth error response".into(),
            },
            // oauth2's own words (an empty body, a content type that is not JSON).
            RequestTokenError::Other(what) => Failure::Malformed { status, what },
        }
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for Exchange<'_> {
    type Error = SendError;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, SendError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = send(self.client, request).await?;
            self.status.store(response.status().as_u16(), Ordering::Relaxed);
            Ok(response)
        })
    }
}

/// Sends one request to a token endpoint: no redirects, [`TOKEN_TIMEOUT`],
/// at most [`MAX_TOKEN_RESPONSE_BYTES`] read.
async fn send(client: &HttpClient, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, SendError> {
    // Errors name the origin only: never a path or query, never user info.
    let uri = request.uri();
    let origin = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.host().unwrap_or("?"),
        uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let request = request.map(|body| Full::new(Bytes::from(body)));
    let exchange = async {
        let response = client.request(request).await.map_err(|e| SendError::Connect {
            origin: origin.clone(),
            cause: root_cause(&e),
        })?;
        let (parts, body) = response.into_parts();
        if parts.status.is_redirection() {
            return Err(SendError::Redirect {
                origin: origin.clone(),
                status: parts.status.as_u16(),
            });
        }
        let body = Limited::new(body, MAX_TOKEN_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    SendError::TooLarge {
                        origin: origin.clone(),
                    }
                } else {
                    SendError::Connect {
                        origin: origin.clone(),
                        cause: format!("reading the answer failed: {e}"),
                    }
                }
            })?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    };
    tokio::time::timeout(TOKEN_TIMEOUT, exchange)
        .await
        .map_err(|_| SendError::Timeout {
            origin: origin.clone(),
        })?
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

use crate::time::unix_ms;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(grant: GrantType) -> OAuthSettings {
        OAuthSettings {
            grant,
            token_url: Url::parse("https://login.example/token").unwrap(),
            authorize_url: (grant == GrantType::AuthorizationCode)
                .then(|| Url::parse("https://login.example/authorize").unwrap()),
            client_id: "plugboard".into(),
            client_auth: ClientAuth::Basic,
            scopes: vec!["read".into()],
            token_params: BTreeMap::new(),
            authorize_params: BTreeMap::new(),
            refresh_on: vec![],
            refresh_before_secs: 60,
            jwt: (grant == GrantType::JwtBearer).then(|| JwtSettings {
                algorithm: JwtAlgorithm::RS256,
                issuer: None,
                subject: "svc".into(),
                audience: "https://login.example/token".into(),
                lifetime_secs: 120,
                key_id: None,
            }),
        }
    }

    fn has(problems: &[String], needle: &str) -> bool {
        problems.iter().any(|p| p.contains(needle))
    }

    #[test]
    fn complete_settings_have_no_problems() {
        for grant in [
            GrantType::ClientCredentials,
            GrantType::JwtBearer,
            GrantType::AuthorizationCode,
        ] {
            assert_eq!(settings(grant).problems(false), Vec::<String>::new(), "{grant:?}");
        }
    }

    #[test]
    fn authorization_code_needs_an_authorize_url() {
        let mut s = settings(GrantType::AuthorizationCode);
        s.authorize_url = None;
        assert!(has(&s.problems(false), "`authorize_url` is required"));
    }

    #[test]
    fn jwt_settings_belong_to_jwt_bearer_only() {
        let mut s = settings(GrantType::JwtBearer);
        s.jwt = None;
        assert!(has(&s.problems(false), "`jwt` settings are required"));
        let mut s = settings(GrantType::ClientCredentials);
        s.jwt = settings(GrantType::JwtBearer).jwt;
        s.authorize_url = Some(Url::parse("https://login.example/authorize").unwrap());
        let problems = s.problems(false);
        assert!(has(
            &problems,
            "`jwt` settings are only used by grant `jwt_bearer`, not `client_credentials`"
        ));
        assert!(has(&problems, "`authorize_url` is only used"));
    }

    #[test]
    fn empty_client_id_is_named() {
        let mut s = settings(GrantType::ClientCredentials);
        s.client_id = " ".into();
        assert_eq!(
            s.problems(false),
            vec!["`client_id` must not be empty".to_string()]
        );
    }

    #[test]
    fn plain_http_token_url_needs_allow_http() {
        let mut s = settings(GrantType::ClientCredentials);
        s.token_url = Url::parse("http://127.0.0.1:8080/token").unwrap();
        assert!(has(
            &s.problems(false),
            "`token_url` `http://127.0.0.1:8080/token` uses plain http"
        ));
        assert!(s.problems(true).is_empty());
        s.token_url = Url::parse("ftp://login.example/token").unwrap();
        assert!(has(&s.problems(true), "must be an https URL"));
    }

    #[test]
    fn user_info_in_an_endpoint_is_refused_without_quoting_it() {
        let mut s = settings(GrantType::ClientCredentials);
        s.token_url = Url::parse("https://me:hunter2@login.example/token").unwrap();
        let problems = s.problems(false);
        assert!(has(
            &problems,
            "`token_url` must not contain a user name or password"
        ));
        assert!(!problems.join(" ").contains("hunter2"));
    }

    #[test]
    fn parameters_the_grant_sets_cannot_be_overridden() {
        let mut s = settings(GrantType::AuthorizationCode);
        s.token_params.insert("grant_type".into(), "password".into());
        s.token_params
            .insert("audience".into(), "https://api.example".into());
        s.authorize_params
            .insert("redirect_uri".into(), "https://evil.example".into());
        s.authorize_params.insert("prompt".into(), "consent".into());
        let problems = s.problems(false);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(has(&problems, "`token_params` cannot set `grant_type`"));
        assert!(has(&problems, "`authorize_params` cannot set `redirect_uri`"));
    }

    #[test]
    fn jwt_fields_are_checked() {
        let mut s = settings(GrantType::JwtBearer);
        let jwt = s.jwt.as_mut().unwrap();
        jwt.subject.clear();
        jwt.audience.clear();
        jwt.lifetime_secs = 0;
        jwt.key_id = Some(String::new());
        let problems = s.problems(false);
        for field in ["jwt.subject", "jwt.audience", "jwt.lifetime_secs", "jwt.key_id"] {
            assert!(has(&problems, &format!("`{field}`")), "{field}: {problems:?}");
        }
    }

    #[test]
    fn odd_scopes_and_statuses_are_named() {
        let mut s = settings(GrantType::ClientCredentials);
        s.scopes = vec!["read write".into()];
        s.refresh_on = vec![403, 200];
        let problems = s.problems(false);
        assert!(has(&problems, "`scopes` entry `read write`"));
        assert!(has(&problems, "`refresh_on` status `200`"));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn secret_names_follow_the_grant() {
        assert_eq!(
            settings(GrantType::ClientCredentials).secret_names(),
            vec![("client_secret", true)]
        );
        assert_eq!(
            settings(GrantType::JwtBearer).secret_names(),
            vec![("private_key", true), ("client_secret", false)]
        );
        assert_eq!(
            settings(GrantType::AuthorizationCode).secret_names(),
            vec![("client_secret", false)]
        );
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_without_quoting_it() {
        let s = settings(GrantType::JwtBearer);
        let err = s
            .check_private_key(&Secret::new("not-a-key-hunter2".into()))
            .unwrap_err();
        assert!(err.contains("RSA private key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = settings(GrantType::ClientCredentials)
            .check_private_key(&Secret::new("x".into()))
            .unwrap_err();
        assert!(err.contains("does not use a private key"), "{err}");
    }

    #[test]
    fn settings_deserialize_with_defaults_and_refuse_unknown_fields() {
        let s: OAuthSettings = serde_json::from_value(serde_json::json!({
            "grant": "jwt_bearer", "token_url": "https://login.example/token", "client_id": "c",
            "jwt": {"subject": "svc", "audience": "aud"}
        }))
        .unwrap();
        assert_eq!(s.client_auth, ClientAuth::Basic);
        assert_eq!(s.refresh_before_secs, 60);
        let jwt = s.jwt.unwrap();
        assert_eq!((jwt.algorithm, jwt.lifetime_secs), (JwtAlgorithm::RS256, 120));
        let err = serde_json::from_value::<OAuthSettings>(serde_json::json!({
            "grant": "client_credentials", "token_url": "https://login.example/token", "client_id": "c",
            "client_secret": "hunter2"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `client_secret`"), "{err}");
    }

    #[test]
    fn tokens_are_renewed_early_but_not_before_half_their_lifetime() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let at = |expires_in: Duration, lifetime| {
            renew_at(Some(t0 + expires_in), lifetime, Duration::from_secs(60))
        };
        assert_eq!(at(hour, Some(hour)), Some(t0 + hour - Duration::from_secs(60)));
        // A 10 s token is used for 5 s, not renewed on every call.
        let ten = Duration::from_secs(10);
        assert_eq!(at(ten, Some(ten)), Some(t0 + Duration::from_secs(5)));
        // A stored token's lifetime is unknown: the whole margin applies.
        assert_eq!(at(ten, None), Some(t0 + ten - Duration::from_secs(60)));
        assert_eq!(renew_at(None, Some(hour), Duration::from_secs(60)), None);
    }

    #[test]
    fn refused_refresh_tokens_need_reconnecting_and_server_trouble_is_retryable() {
        let refused = |status: u16, body: &str| {
            let response = http::Response::builder()
                .status(status)
                .body(body.as_bytes().to_vec())
                .unwrap();
            match parse_token_response(&response) {
                Err(f) => f,
                Ok(_) => panic!("{body} parsed as a token"),
            }
        };
        let e = refused(400, r#"{"error":"invalid_grant","error_description":"revoked"}"#)
            .into_error("crm", true);
        assert!(
            matches!(&e, TokenError::ReconnectNeeded { detail, .. } if detail.contains("invalid_grant")),
            "{e}"
        );
        let e = refused(401, r#"{"error":"invalid_client"}"#).into_error("crm", false);
        assert!(!e.retryable());
        assert_eq!(
            e.to_string(),
            "credential `crm` could not obtain an access token: the token endpoint answered 401 `invalid_client`"
        );
        assert!(
            refused(503, "<html>busy</html>")
                .into_error("crm", false)
                .retryable()
        );
        assert!(
            refused(429, r#"{"error":"slow_down"}"#)
                .into_error("crm", false)
                .retryable()
        );
        let e = refused(200, r#"{"access_token": 12345678}"#).into_error("crm", false);
        assert!(!e.to_string().contains("12345678"), "{e}");
    }

    /// Token errors quote a registered error code and nothing else the
    /// endpoint wrote: no `error_description`, no `error_uri`, and no code
    /// that is not a registered one (it could be a reflected secret).
    #[test]
    fn token_errors_quote_only_registered_error_codes() {
        let refused = |body: &str| {
            let response = http::Response::builder()
                .status(400)
                .body(body.as_bytes().to_vec())
                .unwrap();
            match parse_token_response(&response) {
                Err(f) => f.into_error("crm", false).to_string(),
                Ok(_) => panic!("{body} parsed as a token"),
            }
        };
        let text = refused(
            r#"{"error":"invalid_client","error_description":"client secret hunter2-s3cret is wrong","error_uri":"https://idp.example/hunter2"}"#,
        );
        assert_eq!(
            text,
            "credential `crm` could not obtain an access token: the token endpoint answered 400 `invalid_client`"
        );
        for code in [
            "hunter2_s3cret",
            "my_custom_error",
            "invalid client",
            "INVALID_CLIENT",
        ] {
            let text = refused(&format!(r#"{{"error":"{code}"}}"#));
            assert!(!text.contains(code), "{text}");
            assert!(text.contains("not a registered one"), "{text}");
        }
        assert_eq!(quotable_error_code("access_denied"), Some("access_denied"));
        assert_eq!(quotable_error_code("access_denied "), None);
    }

    #[test]
    fn jwt_bearer_request_carries_client_auth_only_with_a_secret() {
        let mut s = settings(GrantType::JwtBearer);
        s.token_params
            .insert("resource".into(), "https://api.example".into());
        let without = jwt_bearer_request(&s, None, "a.b.c").ok().unwrap();
        let body = String::from_utf8(without.body().clone()).unwrap();
        assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"));
        assert!(body.contains("assertion=a.b.c") && body.contains("scope=read"));
        assert!(body.contains("resource=https%3A%2F%2Fapi.example"));
        assert!(without.headers().get(AUTHORIZATION).is_none() && !body.contains("client_id"));
        let secret = Secret::new("s3cret".into());
        let basic = jwt_bearer_request(&s, Some(&secret), "a.b.c").ok().unwrap();
        assert!(
            basic.headers()[AUTHORIZATION]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        s.client_auth = ClientAuth::Body;
        let body_auth = jwt_bearer_request(&s, Some(&secret), "a.b.c").ok().unwrap();
        let body = String::from_utf8(body_auth.body().clone()).unwrap();
        assert!(body.contains("client_id=plugboard") && body.contains("client_secret=s3cret"));
    }
}
