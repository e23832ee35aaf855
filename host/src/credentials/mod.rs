//! Named credentials: where a connector may send requests and how the host
//! authenticates them.
//!
//! A named credential joins a base URL to an authentication scheme and a few
//! request settings. Connectors never see it: they address a *slot*, and the
//! callout policy (`crate::callout`) resolves the slot to a credential, adds
//! the authentication and keeps the request inside the base URL.
//!
//! This module owns the validated model and the resolution of secret
//! references (`env:NAME`, `file:PATH`). Secrets live in [`Secret`], whose
//! `Debug` and `Display` never show the value.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

/// A secret value: a password, a token, an API key.
///
/// It is never printed: `Debug` shows `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret obtained by the host itself (never from config text).
    pub(crate) fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret's value, for the one place that injects it into a request.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret comes from, as written in configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME` of the host process.
    Env(String),
    /// `file:PATH`: the contents of a file, trailing newline removed.
    File(String),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:PATH`; anything else is refused, so a secret
    /// can never sit in a config file that ends up in git.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        if let Some(name) = text.strip_prefix("env:") {
            if name.is_empty() {
                return Err("`env:` needs a variable name, as in `env:CRM_TOKEN`".into());
            }
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path, as in `file:/run/secrets/crm`".into());
            }
            return Ok(SecretRef::File(path.to_string()));
        }
        Err("secrets must be given as `env:NAME` or `file:PATH` references, never as literal values".into())
    }

    /// Reads the secret. Errors name the reference, never the value.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))?
            }
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file `{path}`: {e}"))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            return Err(format!("{self} is empty"));
        }
        Ok(Secret(value))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "`env:{n}`"),
            SecretRef::File(p) => write!(f, "`file:{p}`"),
        }
    }
}

/// Where an API key travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPlacement {
    /// As a request header.
    Header,
    /// As a query parameter.
    Query,
}

/// How the host authenticates requests made through a credential.
#[derive(Clone, Debug)]
pub enum Auth {
    /// No authentication (a public API, or one on a trusted network).
    None,
    /// HTTP Basic.
    Basic {
        /// User name (not secret).
        username: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// Header or parameter name.
        name: String,
        /// The key.
        value: Secret,
        /// Header or query.
        placement: KeyPlacement,
    },
    /// Headers whose values are secrets (`X-Api-Token`, a tenant key pair).
    Headers {
        /// Header names and their secret values.
        headers: Vec<(HeaderName, Secret)>,
    },
}

impl Auth {
    /// Short name of the scheme, for listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Bearer { .. } => "bearer",
            Auth::ApiKey { .. } => "api_key",
            Auth::Headers { .. } => "headers",
        }
    }

    /// Header names this scheme sets; a guest's headers of the same names are
    /// removed so a plugin cannot override or shadow the credential.
    pub fn header_names(&self) -> Vec<HeaderName> {
        match self {
            Auth::None => vec![],
            Auth::Basic { .. } | Auth::Bearer { .. } => vec![http::header::AUTHORIZATION],
            Auth::ApiKey {
                name,
                placement: KeyPlacement::Header,
                ..
            } => HeaderName::from_bytes(name.as_bytes()).into_iter().collect(),
            Auth::ApiKey { .. } => vec![],
            Auth::Headers { headers } => headers.iter().map(|(n, _)| n.clone()).collect(),
        }
    }
}

/// A validated named credential.
#[derive(Clone, Debug)]
pub struct NamedCredential {
    /// Unique name (`crm`, `erp-prod`).
    pub name: String,
    /// Every request goes to this URL or below it.
    pub base_url: Url,
    /// How requests are authenticated.
    pub auth: Auth,
    /// Extra headers sent with every request (not secret).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Longest a single callout may take; guests can ask for less, never more.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// Largest request body sent.
    pub max_request_bytes: usize,
    /// Plugins allowed to use this credential; `None` allows any plugin an
    /// invocation binds it for.
    pub allowed_plugins: Option<BTreeSet<String>>,
}

impl NamedCredential {
    /// Whether `plugin` may send requests through this credential.
    pub fn allows(&self, plugin: &str) -> bool {
        self.allowed_plugins
            .as_ref()
            .is_none_or(|set| set.contains(plugin))
    }

    /// A description safe to show anywhere: no secret, only which are set.
    pub fn summary(&self) -> CredentialSummary {
        CredentialSummary {
            name: self.name.clone(),
            base_url: self.base_url.to_string(),
            auth: self.auth.kind(),
            headers: self.headers.iter().map(|(n, _)| n.to_string()).collect(),
            timeout_ms: self.timeout.as_millis() as u64,
            max_response_bytes: self.max_response_bytes,
            allowed_plugins: self.allowed_plugins.clone(),
        }
    }
}

/// What listings show about a credential.
#[derive(Debug, Serialize)]
pub struct CredentialSummary {
    /// Credential name.
    pub name: String,
    /// Base URL.
    pub base_url: String,
    /// Authentication scheme.
    pub auth: &'static str,
    /// Names of the extra headers.
    pub headers: Vec<String>,
    /// Callout timeout.
    pub timeout_ms: u64,
    /// Response size limit.
    pub max_response_bytes: usize,
    /// Plugins allowed to use it, when restricted.
    pub allowed_plugins: Option<BTreeSet<String>>,
}

/// Checks a credential or slot name: lowercase letters, digits and `-`,
/// starting with a letter, at most 63 characters (it doubles as a host name in
/// `wasi:http` URLs).
pub fn check_slot_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use lowercase letters, digits and `-`, starting with a letter, at most 63 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_refused() {
        let err = SecretRef::parse("hunter2").unwrap_err();
        assert!(err.contains("env:NAME"), "{err}");
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn secret_debug_hides_the_value() {
        let s = Secret("topsecret".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn missing_env_reference_names_the_variable() {
        let err = SecretRef::parse("env:PLUGBOARD_TEST_SURELY_UNSET")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.contains("PLUGBOARD_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn slot_names_are_host_name_safe() {
        assert!(check_slot_name("crm-eu1").is_ok());
        assert!(check_slot_name("CRM").is_err());
        assert!(check_slot_name("127.0.0.1").is_err());
        assert!(check_slot_name("a:80").is_err());
    }
}
