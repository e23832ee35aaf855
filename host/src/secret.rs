//! Secret values and the references configuration gives for them.
//!
//! A [`Secret`] is a password, a token, a key: held in memory as it is, never
//! printed (`Debug` shows `Secret(***)`). A [`SecretRef`] is how a config
//! file points at one (`env:NAME`, `file:PATH`), since a secret is never a
//! value in a config file. This is a leaf: the outbound client, the
//! credentials, the callback signer and the config file all use it, and it
//! imports nothing of the product.

use std::fmt;

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

    /// Wraps a secret value entered by an operator (API, CLI, tests).
    pub fn from_plaintext(value: String) -> Secret {
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
        Ok(Secret::new(value))
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
}
