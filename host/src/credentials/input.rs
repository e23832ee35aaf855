//! Credentials as operators write them: in the config file, in a
//! `plugboard apply` file, or as JSON to the admin API.
//!
//! One shape serves all three ([`RawCredential`]). What differs is how a
//! secret field is read ([`SecretMode`]): files hold `env:`/`file:`
//! references only, so they can live in git; the API takes the value itself
//! (it is sealed at once and never shown again). A secret left out keeps the
//! stored one, unless the edit clears secrets (see
//! [`CredentialSpec::edit_clears_secrets`]).

use std::collections::{BTreeMap, BTreeSet};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::oauth::{ClientAuth, GrantType, JwtAlgorithm, JwtSettings, OAuthSettings};
use super::template::HeaderTemplates;
use super::{AuthSpec, CredentialSpec, KeyPlacement, NamedCredential, RateLimit, TLS_CLIENT_KEY, TlsSpec};
use crate::names::check_slot_name;
use crate::outbound::TlsSettings;
use crate::secret::{Secret, SecretRef};

const MIB: usize = 1024 * 1024;
/// Default callout timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default request and response size limit.
pub const DEFAULT_BODY_LIMIT: usize = 6 * MIB;

/// How secret fields are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMode {
    /// Files: only `env:NAME` / `file:PATH` references, resolved now.
    References,
    /// The admin API: the value itself.
    Literal,
}

/// A credential as written.
///
/// Its OpenAPI schema states each field's shape; what only the host can
/// check is refused on `PUT` with 422 and `problems`: the base URL (an
/// absolute `https` URL, or `http` with `allow_http`), header names and
/// values, plugin names and pins, PEM texts and keys, header templates, a
/// client key without its certificate.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    /// `label = "CRM (production)"`
    #[serde(default)]
    pub label: Option<String>,
    /// `base_url = "https://api.example.com/v1"`
    pub base_url: String,
    /// `allow_http = true`: accept a plain-http base URL (local systems only).
    #[serde(default)]
    pub allow_http: bool,
    /// `auth = { type = "bearer", token = "env:TOKEN" }`; absent means none.
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// `headers = { "x-tenant" = "acme" }`: non-secret headers on every call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `timeout_ms = 10000`: longest a callout may take (default 30000).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub timeout_ms: Option<u64>,
    /// `max_response_bytes = 6291456` (default 6 MiB).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub max_response_bytes: Option<usize>,
    /// `max_request_bytes = 6291456` (default 6 MiB).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub max_request_bytes: Option<usize>,
    /// `allowed_plugins = ["rest-json"]`: only these plugins may use it;
    /// absent or empty allows none, `["*"]` any.
    pub allowed_plugins: Option<Vec<String>>,
    /// `enabled = false` switches callouts off (default on).
    pub enabled: Option<bool>,
    /// `extra_methods = ["PROPFIND"]`: methods allowed besides GET, HEAD,
    /// POST, PUT, PATCH, DELETE and OPTIONS.
    #[schema(inline, value_type = Option<Vec<ExtraMethod>>)]
    pub extra_methods: Option<Vec<String>>,
    /// `rate_limit = { per_second = 10, burst = 10, max_wait_ms = 2000 }`
    pub rate_limit: Option<RawRateLimit>,
    /// `tls = { ca = "file:ca.pem", client_cert = "file:c.pem", client_key = "file:k.pem" }`
    pub tls: Option<RawTls>,
}

/// A method allowed besides the usual ones: uppercase letters, digits,
/// `-` and `_`, at most 32 (`CONNECT`, `TRACE` and `TRACK` are refused).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[A-Z0-9_-]{1,32}$")]
#[allow(dead_code)]
pub struct ExtraMethod(String);

/// `rate_limit = { ... }` as written.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Sustained requests per second (may be fractional).
    #[schema(exclusive_minimum = 0)]
    pub per_second: f64,
    /// Requests allowed at once after a quiet period (default: one second's worth, at least 1).
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub burst: Option<u32>,
    /// Longest a callout waits for its turn (default 5000 ms).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub max_wait_ms: Option<u64>,
}

/// `tls = { ... }` as written. `ca` and `client_cert` are PEM text or
/// `file:PATH`; `client_key` is a secret.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Extra CA certificates.
    pub ca: Option<String>,
    /// Client certificate chain.
    pub client_cert: Option<String>,
    /// Client private key (secret).
    pub client_key: Option<String>,
}

/// `auth = { type = ... }` as written.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAuth {
    /// `{ type = "none" }`
    None,
    /// `{ type = "basic", username = "svc", password = "env:PW" }`
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Option<String>,
    },
    /// `{ type = "bearer", token = "env:TOKEN" }`
    Bearer {
        /// Token.
        token: Option<String>,
    },
    /// `{ type = "api_key", name = "x-api-key", value = "env:KEY", in = "header" }`
    ApiKey {
        /// Header or query parameter name.
        name: String,
        /// The key.
        value: Option<String>,
        /// `header` (default) or `query`.
        #[serde(rename = "in", default = "default_placement")]
        #[schema(inline)]
        placement: KeyPlacement,
    },
    /// `{ type = "headers", headers = { "x-api-token" = "env:TOKEN" } }`
    Headers {
        /// Header names and their secret values.
        headers: BTreeMap<String, Option<String>>,
    },
    /// `{ type = "template", headers = { "x-signature" = "{{ ... }}" }, params = {...}, secrets = { key = "env:K" } }`
    Template {
        /// Header name to template.
        headers: BTreeMap<String, String>,
        /// Non-secret parameters.
        #[serde(default)]
        params: BTreeMap<String, String>,
        /// Secrets the templates use, by name.
        #[serde(default)]
        secrets: BTreeMap<String, Option<String>>,
    },
    /// `{ type = "oauth2", grant = "client_credentials", token_url = "...", client_id = "...", client_secret = "env:S" }`
    Oauth2(Box<RawOAuth>),
}

/// The OAuth 2.0 fields of `auth`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    /// `client_credentials`, `jwt_bearer` or `authorization_code`.
    #[schema(inline, value_type = GrantTypeName)]
    pub grant: GrantType,
    /// Token endpoint.
    pub token_url: String,
    /// Authorization endpoint (authorization_code).
    pub authorize_url: Option<String>,
    /// Client id (the connected app's consumer key).
    pub client_id: String,
    /// Client secret.
    pub client_secret: Option<String>,
    /// `basic` (default) or `body`.
    #[schema(inline, value_type = Option<ClientAuthName>)]
    pub client_auth: Option<ClientAuth>,
    /// Scopes requested.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Extra token-request parameters.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// Extra authorize parameters.
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Statuses besides 401 that mean the token expired.
    #[serde(default)]
    #[schema(schema_with = status_codes)]
    pub refresh_on: Vec<u16>,
    /// Refresh this long before expiry (default 60).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub refresh_before_secs: Option<u64>,
    /// Private key (PEM) that signs JWT assertions.
    pub private_key: Option<String>,
    /// JWT bearer assertion settings.
    pub jwt: Option<RawJwt>,
}

/// `jwt = { ... }` as written.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// `RS256` (default), `RS512` or `ES256`.
    #[schema(inline, value_type = Option<JwtAlgorithmName>)]
    pub algorithm: Option<JwtAlgorithm>,
    /// `iss`; defaults to the client id.
    pub issuer: Option<String>,
    /// `sub`: the user the app acts as.
    pub subject: String,
    /// `aud`: usually the authorization server's URL.
    pub audience: String,
    /// Assertion lifetime (default 120 s).
    #[schema(maximum = 9_223_372_036_854_775_807_i64)]
    pub lifetime_secs: Option<u64>,
    /// `kid` header.
    pub key_id: Option<String>,
}

/// The schema of [`GrantType`] (the OAuth module's own type stays free of
/// API concerns).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, clippy::enum_variant_names)]
#[schema(rename_all = "snake_case")]
pub enum GrantTypeName {
    /// Client credentials.
    ClientCredentials,
    /// A signed JWT assertion.
    JwtBearer,
    /// Consent in a browser.
    AuthorizationCode,
}

/// The schema of [`ClientAuth`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum ClientAuthName {
    /// HTTP Basic.
    Basic,
    /// In the form body.
    Body,
}

/// The schema of [`JwtAlgorithm`].
#[derive(utoipa::ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum JwtAlgorithmName {
    /// RSA with SHA-256.
    RS256,
    /// RSA with SHA-512.
    RS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

/// The schema of `refresh_on`: HTTP status codes.
fn status_codes() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(u16::MAX)),
        )
        .build()
}

fn default_placement() -> KeyPlacement {
    KeyPlacement::Header
}

/// Collects problems and the secrets given, for one credential.
struct Reader {
    mode: SecretMode,
    problems: Vec<String>,
    secrets: BTreeMap<String, Secret>,
}

impl Reader {
    /// Reads a secret field named `field`, stored as `name`.
    fn secret(&mut self, field: &str, name: &str, given: Option<String>) {
        let Some(text) = given else { return };
        let value = match self.mode {
            SecretMode::References => SecretRef::parse(&text).and_then(|r| r.resolve()),
            SecretMode::Literal if text.is_empty() => Err("must not be empty".to_string()),
            SecretMode::Literal => Ok(Secret::from_plaintext(text)),
        };
        match value {
            Ok(v) => {
                self.secrets.insert(name.to_string(), v);
            }
            Err(e) => self.problems.push(format!("{field}: {e}")),
        }
    }

    /// Reads PEM text that is not secret: inline, or `file:PATH` in files.
    fn pem(&mut self, field: &str, given: Option<String>) -> Option<String> {
        let text = given?;
        match (self.mode, text.strip_prefix("file:")) {
            (SecretMode::References, Some(path)) => match std::fs::read_to_string(path) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.problems.push(format!("{field}: cannot read `{path}`: {e}"));
                    None
                }
            },
            _ if text.contains("-----BEGIN") => Some(text),
            _ => {
                self.problems.push(format!(
                    "{field}: expected PEM text (`-----BEGIN CERTIFICATE-----...`){}",
                    if self.mode == SecretMode::References {
                        " or `file:PATH`"
                    } else {
                        ""
                    }
                ));
                None
            }
        }
    }
}

/// Validates one credential as written. Returns its spec and the secrets
/// given with it, or every problem found (each naming its field; none
/// quoting a secret).
pub fn from_raw(name: &str, rc: RawCredential, mode: SecretMode) -> Result<NamedCredential, Vec<String>> {
    let mut r = Reader {
        mode,
        problems: Vec::new(),
        secrets: BTreeMap::new(),
    };
    if let Err(e) = check_slot_name(name) {
        r.problems.push(e);
    }
    let base_url = match parse_base_url(&rc.base_url, rc.allow_http) {
        Ok(u) => Some(u),
        Err(e) => {
            r.problems.push(e);
            None
        }
    };
    let auth = read_auth(&mut r, rc.auth.unwrap_or(RawAuth::None), rc.allow_http);
    let mut headers = BTreeMap::new();
    for (k, v) in rc.headers {
        match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            (Ok(n), Ok(_)) => {
                headers.insert(n.to_string(), v);
            }
            _ => r
                .problems
                .push(format!("headers: `{k}` is not a valid header name and value")),
        }
    }
    let mut allowed = BTreeSet::new();
    for p in rc.allowed_plugins.unwrap_or_default() {
        if let Err(e) = check_allowed_plugin(&p) {
            r.problems.push(format!("allowed_plugins: {e}"));
        }
        allowed.insert(p);
    }
    let mut extra_methods = BTreeSet::new();
    for m in rc.extra_methods.unwrap_or_default() {
        match super::check_extra_method(&m) {
            Ok(()) => {
                extra_methods.insert(m);
            }
            Err(e) => r.problems.push(format!("extra_methods: {e}")),
        }
    }
    let timeout_ms = rc.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 {
        r.problems.push("timeout_ms must be at least 1".into());
    }
    let rate_limit = rc.rate_limit.and_then(|rl| {
        if !(rl.per_second.is_finite() && rl.per_second > 0.0) {
            r.problems
                .push("rate_limit.per_second must be a number above 0".into());
            return None;
        }
        let burst = rl.burst.unwrap_or((rl.per_second.ceil() as u32).max(1));
        if burst == 0 {
            r.problems.push("rate_limit.burst must be at least 1".into());
        }
        Some(RateLimit {
            per_second: rl.per_second,
            burst,
            max_wait_ms: rl.max_wait_ms.unwrap_or(5_000),
        })
    });
    let mut tls = TlsSpec::default();
    if let Some(t) = rc.tls {
        if t.client_key.is_some() && t.client_cert.is_none() {
            r.problems
                .push("tls: a client key needs its certificate (`client_cert`)".into());
        }
        tls.ca_pem = r.pem("tls.ca", t.ca);
        tls.client_cert_pem = r.pem("tls.client_cert", t.client_cert);
        r.secret("tls.client_key", TLS_CLIENT_KEY, t.client_key);
    }
    let (Some(base_url), Some(auth)) = (base_url, auth) else {
        return Err(r.problems);
    };
    let spec = CredentialSpec {
        name: name.to_string(),
        label: rc.label.unwrap_or_default(),
        base_url,
        allow_http: rc.allow_http,
        auth,
        headers,
        timeout_ms,
        max_request_bytes: rc.max_request_bytes.unwrap_or(DEFAULT_BODY_LIMIT),
        max_response_bytes: rc.max_response_bytes.unwrap_or(DEFAULT_BODY_LIMIT),
        allowed_plugins: allowed,
        enabled: rc.enabled.unwrap_or(true),
        rate_limit,
        tls,
        extra_methods,
    };
    check_material(&spec, &r.secrets, &mut r.problems);
    if !r.problems.is_empty() {
        return Err(r.problems);
    }
    Ok(NamedCredential {
        spec,
        secrets: r.secrets,
    })
}

/// Checks what can only be checked with the secrets at hand: PEM texts,
/// private keys, templates. Called again when secrets change later.
pub fn check_material(spec: &CredentialSpec, secrets: &BTreeMap<String, Secret>, problems: &mut Vec<String>) {
    let tls = tls_settings(spec, secrets);
    if tls.client_key_pem.is_some() || tls.client_cert_pem.is_some() || tls.extra_ca_pem.is_some() {
        // A certificate whose key is not set yet is checked once it is.
        if (tls.client_cert_pem.is_none() || tls.client_key_pem.is_some())
            && let Err(ps) = tls.check()
        {
            problems.extend(ps);
        }
    }
    match &spec.auth {
        AuthSpec::Template {
            headers,
            params,
            secrets: names,
        } => {
            let pairs: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let params: BTreeSet<String> = params.keys().cloned().collect();
            if let Err(ps) = HeaderTemplates::compile(&pairs, names, &params) {
                problems.extend(ps.into_iter().map(|p| format!("auth: {p}")));
            }
        }
        AuthSpec::Oauth2 { oauth } => {
            if let Some(key) = secrets.get("private_key")
                && let Err(e) = oauth.check_private_key(key)
            {
                problems.push(format!("auth.private_key: {e}"));
            }
        }
        _ => {}
    }
}

/// The TLS settings a credential's HTTP client is built with.
pub fn tls_settings(spec: &CredentialSpec, secrets: &BTreeMap<String, Secret>) -> TlsSettings {
    TlsSettings {
        extra_ca_pem: spec.tls.ca_pem.clone(),
        client_cert_pem: spec.tls.client_cert_pem.clone(),
        client_key_pem: secrets.get(TLS_CLIENT_KEY).cloned(),
    }
}

fn read_auth(r: &mut Reader, raw: RawAuth, allow_http: bool) -> Option<AuthSpec> {
    let before = r.problems.len();
    let auth = match raw {
        RawAuth::None => AuthSpec::None,
        RawAuth::Basic { username, password } => {
            if username.contains(':') {
                r.problems
                    .push("auth.username must not contain `:` (HTTP Basic cannot carry it)".into());
            }
            r.secret("auth.password", "password", password);
            AuthSpec::Basic { username }
        }
        RawAuth::Bearer { token } => {
            r.secret("auth.token", "token", token);
            AuthSpec::Bearer
        }
        RawAuth::ApiKey {
            name,
            value,
            placement,
        } => {
            let name = if placement == KeyPlacement::Header {
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(n) => n.to_string(),
                    Err(_) => {
                        r.problems
                            .push(format!("auth.name: `{name}` is not a valid header name"));
                        name
                    }
                }
            } else {
                name
            };
            r.secret("auth.value", "value", value);
            AuthSpec::ApiKey { name, placement }
        }
        RawAuth::Headers { headers } => {
            let mut names = Vec::new();
            for (k, v) in headers {
                match HeaderName::from_bytes(k.as_bytes()) {
                    Ok(n) => {
                        r.secret(&format!("auth.headers.{k}"), n.as_str(), v);
                        names.push(n.to_string());
                    }
                    Err(_) => r
                        .problems
                        .push(format!("auth.headers: `{k}` is not a valid header name")),
                }
            }
            AuthSpec::Headers { names }
        }
        RawAuth::Template {
            headers,
            params,
            secrets,
        } => {
            let mut out = BTreeMap::new();
            for (k, v) in headers {
                match HeaderName::from_bytes(k.as_bytes()) {
                    Ok(n) => {
                        out.insert(n.to_string(), v);
                    }
                    Err(_) => r
                        .problems
                        .push(format!("auth.headers: `{k}` is not a valid header name")),
                }
            }
            let mut names = BTreeSet::new();
            for (k, v) in secrets {
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    r.problems.push(format!(
                        "auth.secrets: `{k}` is not a valid secret name: use letters, digits and `_`"
                    ));
                    continue;
                }
                r.secret(&format!("auth.secrets.{k}"), &k, v);
                names.insert(k);
            }
            AuthSpec::Template {
                headers: out,
                params,
                secrets: names,
            }
        }
        RawAuth::Oauth2(o) => read_oauth(r, *o, allow_http)?,
    };
    (r.problems.len() == before).then_some(auth)
}

fn read_oauth(r: &mut Reader, o: RawOAuth, allow_http: bool) -> Option<AuthSpec> {
    let mut url = |field: &str, text: &str| match Url::parse(text) {
        Ok(u) => Some(u),
        Err(e) => {
            r.problems
                .push(format!("auth.{field}: `{text}` is not a URL: {e}"));
            None
        }
    };
    let token_url = url("token_url", &o.token_url);
    let authorize_url = match &o.authorize_url {
        Some(t) => Some(url("authorize_url", t)?),
        None => None,
    };
    r.secret("auth.client_secret", "client_secret", o.client_secret);
    r.secret("auth.private_key", "private_key", o.private_key);
    let jwt = o.jwt.map(|j| JwtSettings {
        algorithm: j.algorithm.unwrap_or_default(),
        issuer: j.issuer,
        subject: j.subject,
        audience: j.audience,
        lifetime_secs: j.lifetime_secs.unwrap_or(120),
        key_id: j.key_id,
    });
    let settings = OAuthSettings {
        grant: o.grant,
        token_url: token_url?,
        authorize_url,
        client_id: o.client_id,
        client_auth: o.client_auth.unwrap_or_default(),
        scopes: o.scopes,
        token_params: o.token_params,
        authorize_params: o.authorize_params,
        refresh_on: o.refresh_on,
        refresh_before_secs: o.refresh_before_secs.unwrap_or(60),
        jwt,
    };
    let problems = settings.problems(allow_http);
    if !problems.is_empty() {
        r.problems
            .extend(problems.into_iter().map(|p| format!("auth: {p}")));
        return None;
    }
    Some(AuthSpec::Oauth2 {
        oauth: Box::new(settings),
    })
}

/// Parses a base URL: http(s), a host, no user info, no fragment; plain http
/// only when the credential allows it.
pub fn parse_base_url(text: &str, allow_http: bool) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("base_url `{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "base_url `{text}` must use https (or http with `allow_http`)"
        ));
    }
    if url.scheme() == "http" && !allow_http {
        return Err(format!(
            "base_url `{text}` uses plain http: use https, or set `allow_http = true` for a system on a trusted local network"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("base_url must not carry a user name or password: use `auth`".to_string());
    }
    if url.host_str().is_none() {
        return Err(format!("base_url `{text}` has no host"));
    }
    if url.fragment().is_some() {
        return Err(format!("base_url `{text}` must not have a fragment"));
    }
    Ok(url)
}

/// One `allowed_plugins` entry: `*`, a plugin name, or a name pinned to the
/// SHA-256 of its file (`rest-json@sha256:<64 hex digits>`, as `plugboard
/// plugins inspect` shows it).
fn check_allowed_plugin(entry: &str) -> Result<(), String> {
    if entry == "*" {
        return Ok(());
    }
    let (name, digest) = match entry.split_once('@') {
        Some((name, pin)) => (name, Some(pin)),
        None => (entry, None),
    };
    if crate::names::check_plugin_name(name).is_err() {
        return Err(format!(
            "`{}` is not a plugin name, a pinned plugin (`NAME@sha256:HEX`) or `*` for any plugin",
            entry.escape_debug()
        ));
    }
    match digest.map(|d| d.strip_prefix("sha256:")) {
        None => Ok(()),
        Some(Some(hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        Some(_) => Err(format!(
            "`{}` pins plugin `{name}` to a digest, which must be `sha256:` and 64 hex digits",
            entry.escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    const SHA: &str = "6f1ed002ab5595859014ebf0951522d9a4bd0d6b0fa8bd4e8fd2ec52b8e3a7f4";

    /// A pinned entry admits only the file content it names; a plain name
    /// admits any content under that name.
    #[test]
    fn allowed_plugins_pin_a_digest() {
        let pinned = literal(serde_json::json!({
            "base_url": "https://api.example.com",
            "allowed_plugins": [format!("rest-json@sha256:{SHA}"), "field-map"]
        }))
        .unwrap();
        assert!(pinned.allows("rest-json", SHA));
        assert!(pinned.allows("rest-json", &SHA.to_uppercase()));
        assert!(!pinned.allows("rest-json", &SHA.replace('6', "7")));
        assert!(pinned.allows("field-map", "anything"));
        assert!(!pinned.allows("hostile", SHA));
        for bad in ["rest-json@sha256:abc", "rest-json@md5:00", "Rest@sha256:x", "a b"] {
            let err =
                literal(serde_json::json!({"base_url": "https://api.example.com", "allowed_plugins": [bad]}))
                    .unwrap_err();
            assert!(format!("{err:?}").contains("allowed_plugins"), "{bad}: {err:?}");
        }
    }

    use super::*;

    fn literal(json: serde_json::Value) -> Result<NamedCredential, Vec<String>> {
        from_raw("crm", serde_json::from_value(json).unwrap(), SecretMode::Literal)
    }

    #[test]
    fn plain_http_needs_allow_http() {
        let err = literal(serde_json::json!({"base_url": "http://10.0.0.5/api", "allowed_plugins": ["*"]}))
            .unwrap_err();
        assert!(err[0].contains("allow_http"), "{err:?}");
        let ok = literal(serde_json::json!({"base_url": "http://10.0.0.5/api", "allow_http": true})).unwrap();
        assert!(ok.spec.allowed_plugins.is_empty() && !ok.allows("rest-json", SHA));
    }

    #[test]
    fn literal_secrets_are_taken_references_are_required_in_files() {
        let c = literal(serde_json::json!({"base_url": "https://x.example", "auth": {"type": "basic", "username": "svc", "password": "hunter2"}})).unwrap();
        assert_eq!(c.secrets["password"].expose(), "hunter2");
        let raw: RawCredential = toml::from_str(
            "base_url = \"https://x.example\"\nauth = { type = \"basic\", username = \"svc\", password = \"hunter2\" }",
        )
        .unwrap();
        let err = from_raw("crm", raw, SecretMode::References).unwrap_err();
        assert!(
            err[0].starts_with("auth.password: secrets must be given as"),
            "{err:?}"
        );
        assert!(!err[0].contains("hunter2"));
    }

    #[test]
    fn a_secret_left_out_is_reported_missing() {
        let c = literal(serde_json::json!({"base_url": "https://x.example", "auth": {"type": "bearer"}}))
            .unwrap();
        assert_eq!(c.missing_secrets(), vec!["token".to_string()]);
    }

    #[test]
    fn edits_of_url_host_or_type_clear_secrets() {
        let a = literal(serde_json::json!({"base_url": "https://x.example/v1", "auth": {"type": "bearer"}}))
            .unwrap();
        let mut b = a.spec.clone();
        b.timeout_ms = 5;
        assert!(!a.spec.edit_clears_secrets(&b));
        b.base_url = Url::parse("https://evil.example/v1").unwrap();
        assert!(a.spec.edit_clears_secrets(&b));
        let mut c = a.spec.clone();
        c.auth = AuthSpec::Basic { username: "u".into() };
        assert!(a.spec.edit_clears_secrets(&c));
    }

    /// A changed header template, custom CA or OAuth endpoint clears the
    /// secrets too; parameters, labels and limits do not.
    #[test]
    fn edits_of_templates_ca_or_endpoints_clear_secrets() {
        let template = |header: &str| {
            literal(
                serde_json::json!({"base_url": "https://x.example", "auth": {"type": "template",
                "headers": {"x-sig": header}, "params": {"id": "7"}, "secrets": {"k": "v"}}}),
            )
            .unwrap()
            .spec
        };
        let signing = template("{{ hmac_sha256(secrets.k, request.path) }}");
        assert!(signing.edit_clears_secrets(&template("{{ secrets.k }}")));
        let mut params = signing.clone();
        if let AuthSpec::Template { params, .. } = &mut params.auth {
            params.insert("id".into(), "8".into());
        }
        params.label = "renamed".into();
        params.timeout_ms = 5;
        assert!(!signing.edit_clears_secrets(&params));

        let mut ca = signing.clone();
        ca.tls.ca_pem = Some("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n".into());
        assert!(signing.edit_clears_secrets(&ca));
        let mut other_ca = ca.clone();
        other_ca.tls.ca_pem = Some("-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n".into());
        assert!(ca.edit_clears_secrets(&other_ca));

        let oauth = |token_url: &str| {
            literal(
                serde_json::json!({"base_url": "https://x.example", "auth": {"type": "oauth2",
                "grant": "client_credentials", "token_url": token_url, "client_id": "app"}}),
            )
            .unwrap()
            .spec
        };
        let tenant_a = oauth("https://login.example.com/tenant-a/token");
        assert!(tenant_a.edit_clears_secrets(&oauth("https://login.example.com/tenant-b/token")));
        assert!(!tenant_a.edit_clears_secrets(&oauth("https://login.example.com/tenant-a/token")));
    }

    #[test]
    fn views_show_which_secrets_are_set_never_their_values() {
        let c = literal(serde_json::json!({"base_url": "https://x.example", "auth": {"type": "basic", "username": "svc", "password": "hunter2"}})).unwrap();
        let view = c.spec.to_view(&c.secrets.keys().cloned().collect());
        assert_eq!(view["secrets"]["password"], "set");
        assert!(!view.to_string().contains("hunter2"));
    }

    #[test]
    fn spec_round_trips_through_storage_json() {
        let c = literal(serde_json::json!({
            "base_url": "https://x.example",
            "auth": {"type": "oauth2", "grant": "client_credentials", "token_url": "https://login.example/token",
                     "client_id": "app", "client_secret": "s3cret", "scopes": ["api"]},
            "rate_limit": {"per_second": 2.5}
        }))
        .unwrap();
        let text = serde_json::to_string(&c.spec).unwrap();
        assert!(!text.contains("s3cret"));
        let back: CredentialSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c.spec);
        assert_eq!(back.rate_limit.unwrap().burst, 3);
        let view = c.spec.to_view(&BTreeSet::new());
        assert_eq!(view["auth"]["grant"], "client_credentials");
        assert_eq!(view["secrets"]["client_secret"], "missing");
    }
}
