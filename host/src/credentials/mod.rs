//! Named credentials: where a connector may send requests and how the host
//! authenticates them.
//!
//! A named credential joins a base URL to an authentication scheme and a few
//! request settings. Connectors never see it: they address a *slot*, and the
//! callout policy (`crate::callout`) resolves the slot to a credential, adds
//! the authentication and keeps the request inside the base URL.
//!
//! A credential has two halves, kept apart everywhere:
//! - its [`CredentialSpec`]: everything that is not secret (base URL,
//!   authentication type and parameters, headers, limits, allowed plugins).
//!   It is stored as JSON and shown by the API as it is.
//! - its secrets: passwords, tokens, client secrets, private keys, by name.
//!   They are write-only: sealed at rest ([`seal`]), held in memory as
//!   [`Secret`](crate::secret::Secret) (whose `Debug` never shows the value), and reported only as
//!   "set" or "missing".
//!
//! [`input`] turns what an operator writes (config file, `plugboard apply`,
//! the admin API) into a spec plus secrets; [`live`] turns those into the
//! runtime object the callout policy authenticates requests with.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

pub mod input;
pub mod live;
pub mod service;

pub mod oauth;
pub mod seal;
pub mod template;

use crate::secret::Secret;

/// Where an API key travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyPlacement {
    /// As a request header.
    Header,
    /// As a query parameter.
    Query,
}

/// How the host authenticates requests made through a credential: the
/// non-secret half. The secrets each type uses are listed by
/// [`CredentialSpec::secret_requirements`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthSpec {
    /// No authentication (a public API, or one on a trusted network).
    None,
    /// HTTP Basic; secret `password`.
    Basic {
        /// User name (not secret).
        username: String,
    },
    /// `Authorization: Bearer <token>`; secret `token`.
    Bearer,
    /// An API key in a header or query parameter; secret `value`.
    ApiKey {
        /// Header or parameter name.
        name: String,
        /// Header or query.
        #[serde(rename = "in")]
        placement: KeyPlacement,
    },
    /// Headers whose whole values are secrets; each secret is named after
    /// its header.
    Headers {
        /// Header names (lowercase).
        names: Vec<String>,
    },
    /// Headers rendered per request from templates over the credential's
    /// secrets and parameters (see [`template`]), for APIs that sign requests.
    Template {
        /// Header name to template.
        headers: BTreeMap<String, String>,
        /// Non-secret parameters the templates may use.
        params: BTreeMap<String, String>,
        /// Names of the secrets the templates may use.
        secrets: BTreeSet<String>,
    },
    /// OAuth 2.0: client credentials, JWT bearer or authorization code.
    Oauth2 {
        /// The flow's settings.
        oauth: Box<oauth::OAuthSettings>,
    },
}

impl AuthSpec {
    /// Short name of the type, for listings and for the rule that changing
    /// it clears the secrets (an OAuth grant change counts as a change).
    pub fn kind(&self) -> String {
        match self {
            AuthSpec::None => "none".into(),
            AuthSpec::Basic { .. } => "basic".into(),
            AuthSpec::Bearer => "bearer".into(),
            AuthSpec::ApiKey { .. } => "api_key".into(),
            AuthSpec::Headers { .. } => "headers".into(),
            AuthSpec::Template { .. } => "template".into(),
            AuthSpec::Oauth2 { oauth } => {
                let grant = serde_json::to_value(oauth.grant).unwrap_or(Value::Null);
                format!("oauth2/{}", grant.as_str().unwrap_or("?"))
            }
        }
    }

    /// Endpoints a secret of this authentication travels to besides the base
    /// URL (an OAuth token endpoint; the authorize endpoint, where the
    /// person's browser is sent and from where the code comes).
    fn endpoints(&self) -> Vec<&str> {
        match self {
            AuthSpec::Oauth2 { oauth } => std::iter::once(&oauth.token_url)
                .chain(oauth.authorize_url.as_ref())
                .map(Url::as_str)
                .collect(),
            _ => vec![],
        }
    }

    /// The header templates, which decide what of a secret is sent.
    fn templates(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            AuthSpec::Template { headers, .. } => Some(headers),
            _ => None,
        }
    }
}

/// Everything that decides where a credential's secrets are sent and what
/// of them is sent: the base URL, the authentication type, the OAuth
/// endpoints, the extra CA (which says which servers are believed to be
/// those hosts) and the header templates. See
/// [`CredentialSpec::secret_destination`].
#[derive(Serialize)]
struct SecretDestination<'a> {
    base_url: &'a str,
    auth: String,
    endpoints: Vec<&'a str>,
    tls_ca_sha256: Option<String>,
    templates: Option<&'a BTreeMap<String, String>>,
}

/// Requests per second a credential may send, to stay inside the external
/// system's API limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained rate (may be fractional: `0.5` is one request every 2 s).
    pub per_second: f64,
    /// Requests that may go at once after a quiet period.
    pub burst: u32,
    /// How long a callout over the limit waits for its turn before failing
    /// with a retryable error.
    pub max_wait_ms: u64,
}

/// TLS settings that are not secret (the client key is the secret
/// `tls.client_key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsSpec {
    /// Extra CA certificates (PEM) trusted besides the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
}

/// Name of the secret holding the mutual-TLS client key.
pub const TLS_CLIENT_KEY: &str = "tls.client_key";
/// Name of the secret holding an OAuth access token obtained by consent.
pub const ACCESS_TOKEN: &str = "access_token";
/// Name of the secret holding an OAuth refresh token obtained by consent.
pub const REFRESH_TOKEN: &str = "refresh_token";

/// Everything about a named credential that is not secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialSpec {
    /// Unique name (`crm`, `erp-prod`); also the slot host name plugins see
    /// when an integration binds it.
    pub name: String,
    /// Human-readable label.
    #[serde(default)]
    pub label: String,
    /// Every request goes to this URL or below it.
    pub base_url: Url,
    /// Plain `http` is accepted only when this is set (local systems).
    #[serde(default)]
    pub allow_http: bool,
    /// How requests are authenticated.
    pub auth: AuthSpec,
    /// Extra headers sent with every request (not secret).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest a single callout may take; guests can ask for less, never more.
    pub timeout_ms: u64,
    /// Largest request body sent.
    pub max_request_bytes: usize,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Plugins allowed to use this credential; empty allows none, `*` any.
    /// An entry `NAME@sha256:HEX` allows only that exact file content.
    #[serde(default)]
    pub allowed_plugins: BTreeSet<String>,
    /// When off, every callout through the credential fails at once.
    pub enabled: bool,
    /// Optional rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Extra CA and client certificate.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Methods allowed besides [`STANDARD_METHODS`].
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub extra_methods: BTreeSet<String>,
}

/// Methods every credential allows. Anything else (WebDAV's `PROPFIND`, a
/// custom verb) must be listed in the credential's `extra_methods`: an
/// unknown method is how a plugin makes a server or proxy do something the
/// API does not, such as reflecting the request with `TRACE`.
pub const STANDARD_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Methods no credential may allow: `TRACE` and `TRACK` reflect the request,
/// authentication included, and `CONNECT` opens a tunnel past the policy.
pub const FORBIDDEN_METHODS: &[&str] = &["TRACE", "TRACK", "CONNECT"];

/// Checks one `extra_methods` entry: an uppercase HTTP token that is not
/// forbidden.
pub fn check_extra_method(method: &str) -> Result<(), String> {
    let token = !method.is_empty()
        && method.len() <= 32
        && method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !token {
        return Err(format!(
            "`{}` is not a method: use uppercase letters, digits, `-` and `_`, at most 32",
            method.escape_debug()
        ));
    }
    if FORBIDDEN_METHODS.contains(&method) {
        return Err(format!(
            "`{method}` cannot be allowed: it makes servers reflect or tunnel requests, credentials included"
        ));
    }
    Ok(())
}

impl CredentialSpec {
    /// Whether the plugin named `plugin`, whose file has the SHA-256
    /// `sha256` (lowercase hex), may send requests through this credential.
    /// An entry pinned to a digest (`rest-json@sha256:...`) admits only that
    /// content, so replacing the file with other code loses the grant.
    pub fn allows(&self, plugin: &str, sha256: &str) -> bool {
        self.allowed_plugins
            .iter()
            .any(|entry| match entry.split_once("@sha256:") {
                Some((name, digest)) => name == plugin && digest.eq_ignore_ascii_case(sha256),
                None => entry == "*" || entry == plugin,
            })
    }

    /// The secrets this credential uses, each with whether it is required.
    /// Flow-managed OAuth tokens are listed as optional.
    pub fn secret_requirements(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = match &self.auth {
            AuthSpec::None => vec![],
            AuthSpec::Basic { .. } => vec![("password".into(), true)],
            AuthSpec::Bearer => vec![("token".into(), true)],
            AuthSpec::ApiKey { .. } => vec![("value".into(), true)],
            AuthSpec::Headers { names } => names.iter().map(|n| (n.clone(), true)).collect(),
            AuthSpec::Template { secrets, .. } => secrets.iter().map(|n| (n.clone(), true)).collect(),
            AuthSpec::Oauth2 { oauth } => {
                let mut v: Vec<(String, bool)> = oauth
                    .secret_names()
                    .into_iter()
                    .map(|(n, r)| (n.to_string(), r))
                    .collect();
                if oauth.grant == oauth::GrantType::AuthorizationCode {
                    v.push((ACCESS_TOKEN.into(), false));
                    v.push((REFRESH_TOKEN.into(), false));
                }
                v
            }
        };
        if self.tls.client_cert_pem.is_some() {
            out.push((TLS_CLIENT_KEY.into(), true));
        }
        out
    }

    /// Where this credential's secrets go, as one canonical text: the base
    /// URL, the authentication type, the OAuth token and authorize URLs, the
    /// SHA-256 of the extra CA and the header templates.
    ///
    /// Two rules hang on it. An edit that changes it clears the stored
    /// secrets ([`CredentialSpec::edit_clears_secrets`]), so an admin cannot
    /// point an existing secret somewhere new, or at a template that sends
    /// it whole. And each sealed secret is bound to it (the sealing's
    /// associated data), so someone who can write the database but has no
    /// key cannot either: the secret no longer opens.
    pub fn secret_destination(&self) -> String {
        use sha2::Digest as _;
        let destination = SecretDestination {
            base_url: self.base_url.as_str(),
            auth: self.auth.kind(),
            endpoints: self.auth.endpoints(),
            tls_ca_sha256: self
                .tls
                .ca_pem
                .as_ref()
                .map(|pem| hex::encode(sha2::Sha256::digest(pem))),
            templates: self.auth.templates(),
        };
        // Fields in declaration order and maps sorted: the same spec always
        // gives the same text.
        serde_json::to_string(&destination).expect("plain strings and maps serialize")
    }

    /// Whether replacing `self` by `new` must clear the stored secrets: a
    /// different base URL, authentication type, OAuth endpoint, custom CA or
    /// header template would otherwise send an existing secret somewhere new,
    /// or send it differently (a changed template could send it whole).
    pub fn edit_clears_secrets(&self, new: &CredentialSpec) -> bool {
        self.secret_destination() != new.secret_destination()
    }

    /// The spec as the API shows it and accepts it back: the `auth` object
    /// is flat (`{"type": "oauth2", "grant": ..., "token_url": ...}`) and each
    /// secret the type uses is shown as `"set"` or `"missing"`, never its value.
    pub fn to_view(&self, set: &BTreeSet<String>) -> Value {
        let mut auth = serde_json::to_value(&self.auth).unwrap_or(Value::Null);
        if let Some(obj) = auth.as_object_mut()
            && let Some(Value::Object(inner)) = obj.remove("oauth")
        {
            obj.extend(inner);
        }
        let secrets: serde_json::Map<String, Value> = self
            .secret_requirements()
            .into_iter()
            .map(|(name, required)| {
                let state = if set.contains(&name) {
                    "set"
                } else if required {
                    "missing"
                } else {
                    "not_set"
                };
                (name, json!(state))
            })
            .collect();
        json!({
            "name": self.name,
            "label": self.label,
            "base_url": self.base_url.as_str(),
            "allow_http": self.allow_http,
            "auth": auth,
            "headers": self.headers,
            "timeout_ms": self.timeout_ms,
            "max_request_bytes": self.max_request_bytes,
            "max_response_bytes": self.max_response_bytes,
            "allowed_plugins": self.allowed_plugins,
            "extra_methods": self.extra_methods,
            "enabled": self.enabled,
            "rate_limit": self.rate_limit,
            "tls": {
                "ca": self.tls.ca_pem.is_some(),
                "client_cert": self.tls.client_cert_pem.is_some(),
            },
            "secrets": secrets,
        })
    }
}

/// A credential as declared: its spec and the secrets given with it.
#[derive(Clone, Debug)]
pub struct NamedCredential {
    /// The non-secret half.
    pub spec: CredentialSpec,
    /// Secrets by name (see [`CredentialSpec::secret_requirements`]).
    pub secrets: BTreeMap<String, Secret>,
}

impl NamedCredential {
    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether `plugin` may send requests through this credential.
    pub fn allows(&self, plugin: &str, sha256: &str) -> bool {
        self.spec.allows(plugin, sha256)
    }

    /// Required secrets that are not set.
    pub fn missing_secrets(&self) -> Vec<String> {
        self.spec
            .secret_requirements()
            .into_iter()
            .filter(|(n, required)| *required && !self.secrets.contains_key(n))
            .map(|(n, _)| n)
            .collect()
    }
}
