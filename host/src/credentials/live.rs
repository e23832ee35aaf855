//! Credentials at run time: what the callout policy authenticates requests
//! with.
//!
//! A [`LiveCredential`] is built once per version of a credential: its HTTP
//! client (with the credential's own TLS settings and connection pool), its
//! compiled header templates, its OAuth token cache and its rate limiter. An
//! edit builds a new one and swaps it into the [`CredentialSet`]; callouts
//! already under way keep the `Arc` they started with, the next one sees the
//! edit.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sha2::Digest as _;
use url::Url;

use super::oauth::{AccessToken, StoredTokens, TokenError, TokenPersist, TokenSource};
use super::template::{HeaderTemplates, TemplateContext};
use super::{AuthSpec, CredentialSpec, KeyPlacement, NamedCredential};
use crate::outbound::{HttpClient, TlsSettings, build_client};
use crate::redact::Redactor;
use crate::secret::Secret;

type Limiter = governor::DefaultDirectRateLimiter;

/// Why a credential did not authenticate a request. The messages name the
/// credential and never carry a secret; the callout policy turns each into
/// the guest's `CalloutError`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The credential cannot authenticate this request as it is: it is
    /// unusable, disabled or misses a secret, or a header cannot be built.
    #[error("{0}")]
    Refused(String),
    /// The credential's rate limit gave no turn in time (retryable).
    #[error("{0}")]
    RateLimited(String),
    /// No access token could be obtained, or the credential needs to be
    /// reconnected.
    #[error("{message}")]
    Token {
        /// Whether trying again later may succeed.
        retryable: bool,
        /// What went wrong, naming the credential.
        message: String,
    },
}

/// Where a credential is managed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Declared in the host's config file: read-only through the API.
    Config,
    /// Managed in the store (API, CLI, `plugboard apply`).
    Store,
}

/// A credential ready to authenticate requests.
pub struct LiveCredential {
    spec: CredentialSpec,
    source: Source,
    version: i64,
    secrets: BTreeMap<String, Secret>,
    missing: Vec<String>,
    client: HttpClient,
    templates: Option<HeaderTemplates>,
    tokens: Option<TokenSource>,
    limiter: Option<Limiter>,
    /// The spec's static headers, parsed once.
    static_headers: Vec<(HeaderName, HeaderValue)>,
    /// Header names a guest may not set (static and authentication ones).
    owned: Vec<HeaderName>,
    /// Query parameters a guest may not set: the base URL's own and an API
    /// key placed in the query.
    owned_params: Vec<String>,
    /// Every secret of the credential and what is derived from them alone
    /// (the Basic blob), to take out of responses.
    redactor: Redactor,
    /// Why the credential cannot be used at all (its stored secrets do not
    /// open); every callout through it is refused with this.
    problem: Option<String>,
}

impl std::fmt::Debug for LiveCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCredential")
            .field("name", &self.spec.name)
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Persists nothing: for credentials whose flows never store tokens.
struct NoPersist;

impl TokenPersist for NoPersist {
    fn save(&self, _tokens: &StoredTokens) -> Result<(), String> {
        Ok(())
    }
    fn reconnect_needed(&self, _reason: &str) {}
}

impl LiveCredential {
    /// Builds the run-time credential. Tokens a consent flow saved are among
    /// the secrets, their expiry in `token_expires_at_ms`; `persist` saves
    /// refreshed ones.
    pub fn build(
        named: NamedCredential,
        source: Source,
        version: i64,
        persist: Option<Arc<dyn TokenPersist>>,
        token_expires_at_ms: Option<u64>,
    ) -> Result<LiveCredential, String> {
        let NamedCredential { spec, secrets } = named;
        let missing: Vec<String> = spec
            .secret_requirements()
            .into_iter()
            .filter(|(n, required)| *required && !secrets.contains_key(n))
            .map(|(n, _)| n)
            .collect();
        let tls = super::input::tls_settings(&spec, &secrets);
        let tls = if tls.client_cert_pem.is_some() && tls.client_key_pem.is_none() {
            // The key is missing (reported as such); connect without identity.
            TlsSettings {
                client_cert_pem: None,
                ..tls
            }
        } else {
            tls
        };
        let client = build_client(Duration::from_millis(spec.timeout_ms), &tls)
            .map_err(|e| format!("credential `{}`: {e}", spec.name))?;
        let templates = match &spec.auth {
            AuthSpec::Template {
                headers,
                params,
                secrets: names,
            } => {
                let pairs: Vec<(String, String)> =
                    headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let params = params.keys().cloned().collect();
                Some(HeaderTemplates::compile(&pairs, names, &params).map_err(|p| p.join("; "))?)
            }
            _ => None,
        };
        let tokens = match &spec.auth {
            AuthSpec::Oauth2 { oauth } => {
                let stored = StoredTokens {
                    access_token: secrets.get(super::ACCESS_TOKEN).cloned(),
                    refresh_token: secrets.get(super::REFRESH_TOKEN).cloned(),
                    expires_at_ms: token_expires_at_ms,
                };
                Some(TokenSource::new(
                    &spec.name,
                    (**oauth).clone(),
                    secrets.get("client_secret").cloned(),
                    secrets.get("private_key").cloned(),
                    stored,
                    client.clone(),
                    persist.unwrap_or_else(|| Arc::new(NoPersist)),
                ))
            }
            _ => None,
        };
        let limiter = spec.rate_limit.as_ref().map(|rl| {
            let period = Duration::from_secs_f64(1.0 / rl.per_second).max(Duration::from_nanos(1));
            let quota = governor::Quota::with_period(period)
                .expect("period is above zero")
                .allow_burst(NonZeroU32::new(rl.burst.max(1)).expect("at least 1"));
            governor::RateLimiter::direct(quota)
        });
        // Validated when the credential was read; parsed here once rather
        // than on every callout.
        let static_headers: Vec<(HeaderName, HeaderValue)> = spec
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        let mut owned: Vec<HeaderName> = static_headers.iter().map(|(n, _)| n.clone()).collect();
        match &spec.auth {
            AuthSpec::None
            | AuthSpec::ApiKey {
                placement: KeyPlacement::Query,
                ..
            } => {}
            AuthSpec::Basic { .. } | AuthSpec::Bearer | AuthSpec::Oauth2 { .. } => {
                owned.push(http::header::AUTHORIZATION)
            }
            AuthSpec::ApiKey { name, .. } => owned.extend(HeaderName::from_bytes(name.as_bytes())),
            AuthSpec::Headers { names } => owned.extend(
                names
                    .iter()
                    .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()),
            ),
            AuthSpec::Template { .. } => owned.extend(templates.iter().flat_map(|t| t.names())),
        }
        let mut owned_params: Vec<String> =
            spec.base_url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if let AuthSpec::ApiKey {
            name,
            placement: KeyPlacement::Query,
        } = &spec.auth
        {
            owned_params.push(name.clone());
        }
        let redactor = static_redactor(&spec, &secrets);
        Ok(LiveCredential {
            spec,
            source,
            version,
            secrets,
            missing,
            client,
            templates,
            tokens,
            limiter,
            static_headers,
            owned,
            owned_params,
            redactor,
            problem: None,
        })
    }

    /// A credential that cannot be used, for `problem` (as in: its stored
    /// secrets do not open). It holds no secret, and [`LiveCredential::ready`]
    /// and [`LiveCredential::authenticate`] refuse with `problem`, so it is
    /// listed and explained but nothing is sent through it.
    pub fn unusable(
        spec: CredentialSpec,
        source: Source,
        version: i64,
        problem: String,
    ) -> Result<LiveCredential, String> {
        let client = build_client(Duration::from_millis(spec.timeout_ms), &TlsSettings::default())
            .map_err(|e| format!("credential `{}`: {e}", spec.name))?;
        Ok(LiveCredential {
            spec,
            source,
            version,
            secrets: BTreeMap::new(),
            missing: Vec::new(),
            client,
            templates: None,
            tokens: None,
            limiter: None,
            static_headers: Vec::new(),
            owned: Vec::new(),
            owned_params: Vec::new(),
            redactor: Redactor::new(std::iter::empty::<&str>()),
            problem: Some(problem),
        })
    }

    /// Why the credential cannot be used at all, when it cannot.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// The non-secret half.
    pub fn spec(&self) -> &CredentialSpec {
        &self.spec
    }

    /// Where the credential is managed.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The store version this was built from (0 for config credentials).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Names of the secrets that are set.
    pub fn secret_names(&self) -> std::collections::BTreeSet<String> {
        self.secrets.keys().cloned().collect()
    }

    /// The credential's pooled HTTP client.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// The OAuth token cache, for OAuth credentials.
    pub fn tokens(&self) -> Option<&TokenSource> {
        self.tokens.as_ref()
    }

    /// Whether a callout may go out now: the credential is usable, enabled
    /// and has every secret it needs.
    pub fn ready(&self) -> Result<(), AuthError> {
        if let Some(problem) = &self.problem {
            return Err(AuthError::Refused(problem.clone()));
        }
        if !self.spec.enabled {
            return Err(AuthError::Refused(format!(
                "credential `{}` is disabled for callouts",
                self.spec.name
            )));
        }
        if !self.missing.is_empty() {
            return Err(AuthError::Refused(format!(
                "credential `{}` is not ready: its secret{} {} {} not set",
                self.spec.name,
                if self.missing.len() == 1 { "" } else { "s" },
                self.missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.missing.len() == 1 { "is" } else { "are" },
            )));
        }
        Ok(())
    }

    /// Header names the credential sets; a guest's headers of these names
    /// are removed so a plugin cannot override or shadow them.
    pub fn owned_headers(&self) -> &[HeaderName] {
        &self.owned
    }

    /// Query parameters the credential sets (the base URL's and an API key
    /// in the query); a guest's parameter of one of these names is refused.
    pub fn owned_query_params(&self) -> &[String] {
        &self.owned_params
    }

    /// What to take out of responses: the credential's secrets, plus
    /// `injected`, the values added to this one request (tokens, rendered
    /// template headers).
    pub fn redactor(&self, injected: &[String]) -> std::borrow::Cow<'_, Redactor> {
        if injected.is_empty() {
            return std::borrow::Cow::Borrowed(&self.redactor);
        }
        let blob = self.basic_blob();
        let secrets = self.secrets.values().map(Secret::expose);
        let mut values: Vec<&str> = secrets.collect();
        values.extend(blob.as_deref());
        values.extend(injected.iter().map(String::as_str));
        std::borrow::Cow::Owned(Redactor::new(values))
    }

    fn basic_blob(&self) -> Option<String> {
        basic_blob(&self.spec, &self.secrets)
    }

    /// Query parameter the credential sets (an API key in the query).
    pub fn owned_query_param(&self) -> Option<&str> {
        match &self.spec.auth {
            AuthSpec::ApiKey {
                name,
                placement: KeyPlacement::Query,
            } => Some(name),
            _ => None,
        }
    }

    /// Waits for the rate limiter, at most its `max_wait_ms` and never past
    /// `deadline`; fails with a retryable error naming the limit.
    pub async fn wait_turn(&self, deadline: Instant) -> Result<(), AuthError> {
        let (Some(limiter), Some(rl)) = (&self.limiter, &self.spec.rate_limit) else {
            return Ok(());
        };
        if limiter.check().is_ok() {
            return Ok(());
        }
        let wait =
            Duration::from_millis(rl.max_wait_ms).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::timeout(wait, limiter.until_ready())
            .await
            .map_err(|_| {
                AuthError::RateLimited(format!(
                    "credential `{}` allows {} requests per second and no turn came within {} ms; retry later",
                    self.spec.name,
                    rl.per_second,
                    wait.as_millis()
                ))
            })
    }

    /// Adds the credential's static headers and authentication to a
    /// request about to be sent to `url`. Returns the OAuth token used, so a
    /// rejection can refresh exactly that one.
    /// Values that change per request (an OAuth token, rendered template
    /// headers) are pushed onto `injected`, for [`LiveCredential::redactor`].
    pub async fn authenticate(
        &self,
        method: &Method,
        url: &mut Url,
        headers: &mut HeaderMap,
        body: &Bytes,
        injected: &mut Vec<String>,
    ) -> Result<Option<AccessToken>, AuthError> {
        // `ready` refuses first; this keeps a caller that skipped it from
        // sending the request unauthenticated.
        if let Some(problem) = &self.problem {
            return Err(AuthError::Refused(problem.clone()));
        }
        for (n, v) in &self.static_headers {
            headers.insert(n.clone(), v.clone());
        }
        let secret = |name: &str| {
            self.secrets.get(name).map(Secret::expose).ok_or_else(|| {
                AuthError::Refused(format!("credential `{}` has no `{name}` set", self.spec.name))
            })
        };
        match &self.spec.auth {
            AuthSpec::None => {}
            AuthSpec::Basic { username } => {
                let raw = format!("{username}:{}", secret("password")?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                headers.insert(
                    http::header::AUTHORIZATION,
                    sensitive(format!("Basic {encoded}"))?,
                );
            }
            AuthSpec::Bearer => {
                headers.insert(
                    http::header::AUTHORIZATION,
                    sensitive(format!("Bearer {}", secret("token")?))?,
                );
            }
            AuthSpec::ApiKey { name, placement } => match placement {
                KeyPlacement::Header => {
                    let n = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| AuthError::Refused(format!("`{name}` is not a header name")))?;
                    headers.insert(n, sensitive(secret("value")?.to_string())?);
                }
                KeyPlacement::Query => {
                    url.query_pairs_mut().append_pair(name, secret("value")?);
                }
            },
            AuthSpec::Headers { names } => {
                for n in names {
                    let name = HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| AuthError::Refused(format!("`{n}` is not a header name")))?;
                    headers.insert(name, sensitive(secret(n)?.to_string())?);
                }
            }
            AuthSpec::Template { params, .. } => {
                let templates = self.templates.as_ref().expect("built with the credential");
                let path = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                };
                let body_sha256 = hex::encode(sha2::Sha256::digest(body));
                let ctx = TemplateContext {
                    secrets: &self.secrets,
                    params,
                    method: method.as_str(),
                    path: &path,
                    host: url.host_str().unwrap_or_default(),
                    body_sha256: &body_sha256,
                    now: SystemTime::now(),
                };
                let rendered = templates
                    .render(&ctx)
                    .map_err(|e| AuthError::Refused(format!("credential `{}`: {e}", self.spec.name)))?;
                for (n, v) in rendered {
                    injected.push(String::from_utf8_lossy(v.as_bytes()).into_owned());
                    headers.insert(n, v);
                }
            }
            AuthSpec::Oauth2 { .. } => {
                let source = self.tokens.as_ref().expect("built with the credential");
                let token = source.token().await.map_err(token_error)?;
                injected.push(token.value.expose().to_string());
                set_bearer(headers, &token)?;
                return Ok(Some(token));
            }
        }
        Ok(None)
    }

    /// Whether an upstream answer with `status` means the OAuth token was
    /// refused (401, or a status the credential lists).
    pub fn token_rejected(&self, status: u16) -> bool {
        match &self.spec.auth {
            AuthSpec::Oauth2 { oauth } => status == 401 || oauth.refresh_on.contains(&status),
            _ => false,
        }
    }

    /// Replaces a refused token in `headers` by a fresh one (shared with
    /// every concurrent callout that saw the same refusal).
    ///
    /// Returns `false`, changing nothing, when the token source declines a
    /// refresh so soon after the last forced one (see
    /// [`super::oauth::FORCED_REFRESH_INTERVAL`]); the caller then hands the
    /// upstream's refusal to the guest.
    pub async fn reauthenticate(
        &self,
        rejected: &AccessToken,
        headers: &mut HeaderMap,
        injected: &mut Vec<String>,
    ) -> Result<bool, AuthError> {
        let source = self.tokens.as_ref().expect("only OAuth tokens are refused");
        if !source.may_force_refresh(rejected) {
            return Ok(false);
        }
        let token = source.refresh_rejected(rejected).await.map_err(token_error)?;
        injected.push(token.value.expose().to_string());
        set_bearer(headers, &token)?;
        Ok(true)
    }
}

/// The Basic credentials as sent, `base64(username:password)`.
fn basic_blob(spec: &CredentialSpec, secrets: &BTreeMap<String, Secret>) -> Option<String> {
    let AuthSpec::Basic { username } = &spec.auth else {
        return None;
    };
    let password = secrets.get("password")?;
    Some(base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose())))
}

/// The redactor for what is fixed while the credential is: its secrets and
/// the Basic blob.
fn static_redactor(spec: &CredentialSpec, secrets: &BTreeMap<String, Secret>) -> Redactor {
    let blob = basic_blob(spec, secrets);
    Redactor::new(secrets.values().map(Secret::expose).chain(blob.as_deref()))
}

fn set_bearer(headers: &mut HeaderMap, token: &AccessToken) -> Result<(), AuthError> {
    headers.insert(
        http::header::AUTHORIZATION,
        sensitive(format!("Bearer {}", token.value.expose()))?,
    );
    Ok(())
}

fn sensitive(v: String) -> Result<HeaderValue, AuthError> {
    let mut v = HeaderValue::from_str(&v)
        .map_err(|_| AuthError::Refused("a secret of the credential is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// A token failure, keeping whether trying again later may help.
fn token_error(e: TokenError) -> AuthError {
    AuthError::Token {
        retryable: e.retryable(),
        message: e.to_string(),
    }
}

/// Every credential the host knows, by name, swapped one at a time.
#[derive(Debug, Default)]
pub struct CredentialSet {
    map: RwLock<BTreeMap<String, Arc<LiveCredential>>>,
}

impl CredentialSet {
    /// The credential named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LiveCredential>> {
        self.map.read().expect("credential set lock").get(name).cloned()
    }

    /// Every credential, by name.
    pub fn all(&self) -> Vec<Arc<LiveCredential>> {
        self.map
            .read()
            .expect("credential set lock")
            .values()
            .cloned()
            .collect()
    }

    /// Adds or replaces a credential.
    pub fn insert(&self, c: LiveCredential) {
        let name = c.spec.name.clone();
        self.map
            .write()
            .expect("credential set lock")
            .insert(name, Arc::new(c));
    }

    /// Removes a credential.
    pub fn remove(&self, name: &str) -> Option<Arc<LiveCredential>> {
        self.map.write().expect("credential set lock").remove(name)
    }
}
