//! The OAuth consent flow (authorization code with PKCE) of a stored
//! credential: starting it for an admin, and completing it when the
//! provider sends the browser back.
//!
//! A flow is bound twice. The provider's `state` names the pending flow, and
//! a random nonce, given to the browser that started the flow as a cookie
//! (see [`ConsentStart::cookie_value`]) and kept here only as its SHA-256,
//! proves the browser completing it is that one. Without the cookie, anyone
//! holding the authorize link could give consent with their own account and
//! have their tokens stored into the credential. A callback that lacks the
//! cookie is refused before the code is exchanged, and leaves the flow
//! pending for the right browser.
//!
//! Pending flows live in the store ([`crate::store::PendingConsent`]), so a
//! flow started through one host completes through any other on the same
//! store, and none is lost by a restart. The row holds nothing secret: the
//! `state` and the nonce only as SHA-256 digests, and no PKCE verifier at
//! all, since the verifier is derived from the nonce and the `state`
//! ([`pkce_verifier`]) when the browser brings the nonce back. Someone
//! holding the database learns neither the nonce nor the verifier; the
//! browser that started the flow, which could, is the one allowed to finish
//! it anyway.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::super::AuthSpec;
use super::super::live::Source;
use super::super::oauth::{GrantType, TokenPersist, exchange_code, start_authorization_with};
use super::sealing::{ConnectedBy, StorePersist, open_secrets};
use super::{CredentialError, CredentialService};
use crate::secret::Secret;
use crate::store::PendingConsent;
use crate::time::now_ms;

/// How long a started consent flow waits for its callback (and how long its
/// cookie lives).
pub const CONSENT_TTL: Duration = Duration::from_secs(600);

/// The PKCE verifier of the flow whose `state` is `state` and whose browser
/// holds `nonce`: 43 characters of unpadded base64url (RFC 7636's minimum
/// length, 256 bits), domain-separated so the digest serves nothing else.
fn pkce_verifier(state: &str, nonce: &str) -> Secret {
    let mut digest = Sha256::new();
    digest.update(b"plugboard pkce verifier\0");
    digest.update(state.as_bytes());
    digest.update(b"\0");
    digest.update(nonce.as_bytes());
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.finalize()))
}

/// SHA-256 of `text`, in hex.
fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A started consent flow, for the API to answer with.
#[derive(Debug)]
pub struct ConsentStart {
    /// `credential`, `authorize_url`, `expires_in_secs`.
    pub view: Value,
    /// The cookie's name: [`consent_cookie_name`] of the flow's `state`.
    pub cookie_name: String,
    /// The cookie's value: the nonce the callback must bring back. A secret:
    /// it goes only into the `Set-Cookie` header.
    pub cookie_value: String,
}

/// The name of the cookie that binds the flow whose `state` is `state` to
/// its browser: one per flow, so two flows started from one browser do not
/// overwrite each other's.
pub fn consent_cookie_name(state: &str) -> String {
    let digest = hex::encode(Sha256::digest(state.as_bytes()));
    format!("plugboard-consent-{}", &digest[..16])
}

/// Compares two digests without stopping at the first difference.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl CredentialService {
    /// Starts the OAuth consent flow (authorization code with PKCE) of a
    /// credential for the admin `by`: the URL to open in a browser, and the
    /// cookie that browser must carry back to the callback.
    pub fn start_consent(
        &self,
        name: &str,
        redirect_url: &Url,
        by: ConnectedBy,
    ) -> Result<ConsentStart, CredentialError> {
        let live = self.live(name)?;
        let AuthSpec::Oauth2 { oauth } = &live.spec().auth else {
            return Err(CredentialError::Conflict(format!(
                "credential `{name}` does not use OAuth 2.0 authorization code; there is nothing to connect"
            )));
        };
        if oauth.grant != GrantType::AuthorizationCode {
            return Err(CredentialError::Conflict(format!(
                "credential `{name}` uses the {} grant, which needs no consent; use `test` to check it",
                live.spec().auth.kind().trim_start_matches("oauth2/")
            )));
        }
        if live.source() == Source::Config {
            return Err(CredentialError::Conflict(format!(
                "credential `{name}` is declared in the config file; consent flows need a stored credential"
            )));
        }
        let mut random = [0u8; 64];
        getrandom::fill(&mut random)
            .map_err(|e| CredentialError::Internal(format!("no random source: {e}")))?;
        let cookie_value = hex::encode(&random[..32]);
        // The provider's `state`, chosen here rather than by the OAuth
        // client, since the verifier is derived from it.
        let state = hex::encode(&random[32..]);
        let verifier = pkce_verifier(&state, &cookie_value);
        let pending = start_authorization_with(oauth, redirect_url, state, verifier)
            .map_err(CredentialError::Consent)?;
        let cookie_name = consent_cookie_name(&pending.state);
        let now = now_ms();
        self.store.put_consent(
            &PendingConsent {
                state_sha256: sha256_hex(&pending.state),
                credential: name.into(),
                redirect_url: redirect_url.to_string(),
                browser_sha256: sha256_hex(&cookie_value),
                started_by_id: by.token_id,
                started_by_name: by.token_name,
                started_at_ms: now,
                expires_at_ms: now + CONSENT_TTL.as_millis() as u64,
            },
            now,
        )?;
        Ok(ConsentStart {
            view: json!({
                "credential": name,
                "authorize_url": pending.authorize_url.as_str(),
                "expires_in_secs": CONSENT_TTL.as_secs(),
            }),
            cookie_name,
            cookie_value,
        })
    }

    /// Completes a consent flow: checks `state` and that `cookie` (the value
    /// of the flow's cookie the browser sent) is the one given when the flow
    /// started, exchanges the code, stores the tokens sealed with who
    /// connected, and makes the credential use them. Returns its name.
    ///
    /// A missing or wrong cookie is refused before anything is exchanged or
    /// stored, and the flow stays pending for the browser that started it.
    pub async fn finish_consent(
        &self,
        state: &str,
        code: &str,
        cookie: Option<&str>,
    ) -> Result<String, CredentialError> {
        let state_sha256 = sha256_hex(state);
        let pending = self.store.get_consent(&state_sha256, now_ms())?.ok_or_else(|| {
            CredentialError::Consent(
                "unknown or expired `state`: start the connection again from Plugboard".into(),
            )
        })?;
        let browser = hex::decode(&pending.browser_sha256).unwrap_or_default();
        let matches = |c: &str| {
            let digest: [u8; 32] = Sha256::digest(c.as_bytes()).into();
            <[u8; 32]>::try_from(browser.as_slice()).is_ok_and(|b| same_digest(&digest, &b))
        };
        let Some(cookie) = cookie.filter(|c| matches(c)) else {
            return Err(CredentialError::Consent(format!(
                "this browser did not start the connection of credential `{}`: finish consent in the browser that started it (its cookie is missing or does not match), or start again there; nothing was stored",
                pending.credential
            )));
        };
        if !self.store.take_consent(&state_sha256)? {
            // Another callback (through this host or another) took it first.
            return Err(CredentialError::Consent(
                "unknown or expired `state`: start the connection again from Plugboard".into(),
            ));
        }
        let verifier = pkce_verifier(state, cookie);
        let redirect_url = Url::parse(&pending.redirect_url).map_err(|e| {
            CredentialError::Internal(format!("a stored consent flow has a bad redirect URL: {e}"))
        })?;
        let started_by = ConnectedBy {
            token_id: pending.started_by_id,
            token_name: pending.started_by_name,
        };
        let name = pending.credential;
        let live = self.live(&name)?;
        let AuthSpec::Oauth2 { oauth } = &live.spec().auth else {
            return Err(CredentialError::Consent(format!(
                "credential `{name}` no longer uses OAuth 2.0"
            )));
        };
        let stored = self
            .store
            .get_credential(&name)?
            .ok_or_else(|| CredentialError::NotFound(name.clone()))?;
        let secrets = open_secrets(self.key.as_deref(), live.spec(), &stored)?;
        let tokens = exchange_code(
            &name,
            oauth,
            secrets.get("client_secret"),
            live.client(),
            &redirect_url,
            code,
            &verifier,
        )
        .await
        .map_err(|e| CredentialError::Consent(e.to_string()))?;
        let persist = StorePersist {
            store: self.store.clone(),
            key: self.key.clone(),
            spec: live.spec().clone(),
            connected_by: Some(started_by),
        };
        persist.save(&tokens).map_err(CredentialError::Internal)?;
        let stored = self
            .store
            .get_credential(&name)?
            .ok_or_else(|| CredentialError::NotFound(name.clone()))?;
        self.set.insert(self.build(&stored)?);
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cookie names are valid cookie tokens, differ per flow and do not reveal the state.
    #[test]
    fn cookie_names_are_per_flow_tokens() {
        let a = consent_cookie_name("state-a");
        let b = consent_cookie_name("state-b");
        assert_ne!(a, b);
        assert!(a.starts_with("plugboard-consent-") && a.len() == 34, "{a}");
        assert!(!a.contains("state"));
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    }

    /// The derived verifier is a valid RFC 7636 verifier, and differs with
    /// the state and with the nonce.
    #[test]
    fn derived_verifiers_are_valid_and_per_flow() {
        let v = pkce_verifier("state-a", "nonce-a");
        let text = v.expose();
        assert_eq!(text.len(), 43, "{text}");
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
        );
        assert_eq!(text, pkce_verifier("state-a", "nonce-a").expose());
        assert_ne!(text, pkce_verifier("state-b", "nonce-a").expose());
        assert_ne!(text, pkce_verifier("state-a", "nonce-b").expose());
    }

    #[test]
    fn digests_compare_by_content() {
        let x: [u8; 32] = Sha256::digest(b"x").into();
        let y: [u8; 32] = Sha256::digest(b"y").into();
        assert!(same_digest(&x, &x));
        assert!(!same_digest(&x, &y));
    }
}
