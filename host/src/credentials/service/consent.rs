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

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::super::AuthSpec;
use super::super::live::Source;
use super::super::oauth::{GrantType, TokenPersist, exchange_code, start_authorization};
use super::sealing::{ConnectedBy, StorePersist, open_secrets};
use super::{CredentialError, CredentialService};
use crate::secret::Secret;

/// How long a started consent flow waits for its callback (and how long its
/// cookie lives).
pub const CONSENT_TTL: Duration = Duration::from_secs(600);

/// A consent flow waiting for its callback.
pub(super) struct Pending {
    credential: String,
    verifier: Secret,
    redirect_url: Url,
    started: Instant,
    /// SHA-256 of the nonce the starting browser holds as a cookie.
    browser: [u8; 32],
    started_by: ConnectedBy,
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
        let pending = start_authorization(oauth, redirect_url).map_err(CredentialError::Consent)?;
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce)
            .map_err(|e| CredentialError::Internal(format!("no random source: {e}")))?;
        let cookie_value = hex::encode(nonce);
        let cookie_name = consent_cookie_name(&pending.state);
        let mut map = self.pending.lock().expect("pending lock");
        map.retain(|_, p| p.started.elapsed() < CONSENT_TTL);
        map.insert(
            pending.state.clone(),
            Pending {
                credential: name.into(),
                verifier: pending.pkce_verifier,
                redirect_url: redirect_url.clone(),
                started: Instant::now(),
                browser: Sha256::digest(cookie_value.as_bytes()).into(),
                started_by: by,
            },
        );
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
        let pending = {
            let mut map = self.pending.lock().expect("pending lock");
            map.retain(|_, p| p.started.elapsed() < CONSENT_TTL);
            let p = map.get(state).ok_or_else(|| {
                CredentialError::Consent(
                    "unknown or expired `state`: start the connection again from Plugboard".into(),
                )
            })?;
            let presented: Option<[u8; 32]> = cookie.map(|c| Sha256::digest(c.as_bytes()).into());
            if !presented.is_some_and(|digest| same_digest(&digest, &p.browser)) {
                return Err(CredentialError::Consent(format!(
                    "this browser did not start the connection of credential `{}`: finish consent in the browser that started it (its cookie is missing or does not match), or start again there; nothing was stored",
                    p.credential
                )));
            }
            map.remove(state).expect("looked up above")
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
            &pending.redirect_url,
            code,
            &pending.verifier,
        )
        .await
        .map_err(|e| CredentialError::Consent(e.to_string()))?;
        let persist = StorePersist {
            store: self.store.clone(),
            key: self.key.clone(),
            spec: live.spec().clone(),
            connected_by: Some(pending.started_by),
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

    #[test]
    fn digests_compare_by_content() {
        let x: [u8; 32] = Sha256::digest(b"x").into();
        let y: [u8; 32] = Sha256::digest(b"y").into();
        assert!(same_digest(&x, &x));
        assert!(!same_digest(&x, &y));
    }
}
