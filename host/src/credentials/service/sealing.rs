//! Sealed secrets between the credential service and the store: the
//! associated data each secret is sealed with, the key check, the one-time
//! upgrade of secrets sealed before destinations were bound, key rotation,
//! and saving the tokens a consent or refresh obtains.
//!
//! Each secret is sealed for its credential, its name and the credential's
//! destination ([`CredentialSpec::secret_destination`]): the base URL, the
//! authentication type, the OAuth endpoints, the extra CA and the header
//! templates. Someone who can write the database but has no key can change
//! any of those, but the secret then no longer opens, so it is never sent to
//! the new place. The credential is shown and refused as unusable until its
//! secrets are entered again.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::oauth::{StoredTokens, TokenPersist};
use super::super::seal::SealKey;
use super::super::{ACCESS_TOKEN, CredentialSpec, REFRESH_TOKEN};
use super::{CredentialError, now_ms};
use crate::secret::Secret;
use crate::store::{SealedSecrets, Store, StoredCredential};

/// The associated data of one secret: it opens only for this credential,
/// this secret name and this destination.
pub(super) fn aad(spec: &CredentialSpec, secret: &str) -> String {
    let destination = hex::encode(Sha256::digest(spec.secret_destination()));
    format!(
        "plugboard:credential:v2:{}:{secret}:destination:{destination}",
        spec.name
    )
}

/// The associated data secrets were sealed with before their destination
/// was bound. Read only by [`upgrade`], once per store.
fn legacy_aad(credential: &str, secret: &str) -> String {
    format!("plugboard:credential:{credential}:{secret}")
}

/// Opens every stored secret of `stored` (whose spec is `spec`). Any secret
/// that does not open makes the whole credential unusable: the error names
/// the credential and says what to do, never a value.
pub(super) fn open_secrets(
    key: Option<&SealKey>,
    spec: &CredentialSpec,
    stored: &StoredCredential,
) -> Result<BTreeMap<String, Secret>, CredentialError> {
    let mut out = BTreeMap::new();
    if stored.secrets.is_empty() {
        return Ok(out);
    }
    let key = key.ok_or(CredentialError::NoKey)?;
    for (name, sealed) in &stored.secrets {
        let plain = key.open(&aad(spec, name), sealed).map_err(|_| {
            CredentialError::Unopenable(format!(
                "the stored secrets of credential `{}` do not open (secret `{name}`): they were sealed with another key, or for another destination (its base URL, authentication type, OAuth endpoints, CA or header templates were changed outside Plugboard); nothing is sent through it until its secrets are entered again",
                stored.name
            ))
        })?;
        let text = String::from_utf8(plain).map_err(|_| {
            CredentialError::Unopenable(format!(
                "secret `{name}` of credential `{}` is not text",
                stored.name
            ))
        })?;
        out.insert(name.clone(), Secret::new(text));
    }
    Ok(out)
}

/// Seals `secrets` for the credential `spec` describes.
pub(super) fn seal_all(
    store: &Store,
    key: Option<&SealKey>,
    spec: &CredentialSpec,
    secrets: &BTreeMap<String, Secret>,
) -> Result<SealedSecrets, CredentialError> {
    if secrets.is_empty() {
        return Ok(SealedSecrets::new());
    }
    let key = key.ok_or(CredentialError::NoKey)?;
    check_key(store, Some(key)).map_err(|e| CredentialError::Conflict(format!("{e:#}")))?;
    Ok(secrets
        .iter()
        .map(|(k, v)| (k.clone(), key.seal(&aad(spec, k), v.expose().as_bytes())))
        .collect())
}

/// Checks `key` is the one the store's secrets are sealed with, recording
/// its check value when the store has none yet. A store whose secrets were
/// sealed before destinations were bound (it records the key's legacy check
/// value) is upgraded first, once.
pub fn check_key(store: &Store, key: Option<&SealKey>) -> anyhow::Result<()> {
    let recorded = store.secret_key_check()?;
    match (recorded, key) {
        (Some(_), None) => anyhow::bail!(
            "the store holds sealed secrets but no secret key was given: set PLUGBOARD_SECRET_KEY or --secret-key-file to the key they were sealed with"
        ),
        (Some(recorded), Some(k)) if recorded == k.check_value() => Ok(()),
        (Some(recorded), Some(k)) if recorded == k.legacy_check_value() => upgrade(store, k),
        (Some(expected), Some(k)) => anyhow::bail!(
            "the secret key given (check value {}) is not the one this store's secrets are sealed with (check value {expected}): give the right key, or run `plugboard credentials rotate-key` with the old one",
            k.check_value()
        ),
        (None, Some(k)) => Ok(store.init_secret_key_check(&k.check_value())?),
        (None, None) => Ok(()),
    }
}

/// Re-seals every secret sealed under the legacy associated data (credential
/// and secret name only) for its credential's current destination, and
/// records the key's current check value, in one transaction. Afterwards the
/// legacy associated data is never tried again: a legacy value that appears
/// later simply does not open.
///
/// A value that does not open under the legacy associated data (moved from
/// another credential, or altered) is left as it is, so that credential is
/// reported unusable rather than upgraded.
fn upgrade(store: &Store, key: &SealKey) -> anyhow::Result<()> {
    let mut left = Vec::new();
    let upgraded = store.reseal_secrets(&key.check_value(), |credential, spec, name, sealed| {
        let Ok(plain) = key.open(&legacy_aad(credential, name), sealed) else {
            left.push(format!("`{name}` of credential `{credential}`"));
            return Ok(None);
        };
        let spec = read_spec(credential, spec)?;
        Ok(Some(key.seal(&aad(&spec, name), &plain)))
    })?;
    tracing::info!(
        secrets = upgraded - left.len(),
        "bound each sealed secret to its credential's destination (a one-time upgrade of the store)"
    );
    if !left.is_empty() {
        tracing::warn!(
            secrets = %left.join(", "),
            "these sealed secrets do not open and were not upgraded: enter them again"
        );
    }
    Ok(())
}

/// What `plugboard credentials rotate-key` did.
#[derive(Debug)]
pub struct Rotation {
    /// Secrets re-sealed under the new key.
    pub resealed: usize,
    /// Whether the database's free pages and its write-ahead log were
    /// emptied, so no ciphertext under the old key is left in its files.
    pub scrubbed: bool,
}

/// Re-seals every stored secret under `new` (`old` must be the store's key),
/// in one transaction, then rewrites the database so that no ciphertext
/// under the old key is left in its files (freed pages, the write-ahead log).
/// A secret that does not open stops the rotation: nothing changes.
pub fn rotate_key(store: &Store, old: &SealKey, new: &SealKey) -> anyhow::Result<Rotation> {
    check_key(store, Some(old))?;
    let resealed = store.reseal_secrets(&new.check_value(), |credential, spec, name, sealed| {
        let spec = read_spec(credential, spec)?;
        let aad = aad(&spec, name);
        let plain = old.open(&aad, sealed).map_err(|_| {
            "it does not open: it was altered, or its credential's destination was changed outside Plugboard; delete the credential or enter the secret again, then rotate".to_string()
        })?;
        Ok(Some(new.seal(&aad, &plain)))
    })?;
    let scrubbed = store.scrub_freed_space()?;
    Ok(Rotation { resealed, scrubbed })
}

fn read_spec(credential: &str, spec: &Value) -> Result<CredentialSpec, String> {
    serde_json::from_value(spec.clone())
        .map_err(|e| format!("credential `{credential}` in the store is unreadable: {e}"))
}

/// Who completed a consent flow: the admin token that started it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectedBy {
    /// The token's id (`tok_...`).
    pub token_id: String,
    /// The token's name.
    pub token_name: String,
}

/// Saves tokens a flow obtained, sealed, without bumping the version.
pub(super) struct StorePersist {
    pub(super) store: Arc<Store>,
    pub(super) key: Option<Arc<SealKey>>,
    /// The spec of the credential the tokens were obtained for.
    pub(super) spec: CredentialSpec,
    /// Set when a consent flow saves: who connected. Refreshes keep the
    /// stored one.
    pub(super) connected_by: Option<ConnectedBy>,
}

impl StorePersist {
    /// The stored connection status's `connected_by`, unless this save sets one.
    fn connected_by(&self, stored: Option<&StoredCredential>) -> Value {
        match &self.connected_by {
            Some(by) => json!(by),
            None => stored
                .and_then(|s| s.connection.as_ref())
                .map_or(Value::Null, |c| c["connected_by"].clone()),
        }
    }
}

impl TokenPersist for StorePersist {
    fn save(&self, tokens: &StoredTokens) -> Result<(), String> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| CredentialError::NoKey.to_string())?;
        let name = &self.spec.name;
        let stored = self.store.get_credential(name).map_err(|e| format!("{e:#}"))?;
        let current: Option<CredentialSpec> = stored
            .as_ref()
            .and_then(|s| serde_json::from_value(s.spec.clone()).ok());
        if current.is_none_or(|c| c.secret_destination() != self.spec.secret_destination()) {
            // The credential was deleted or now points elsewhere: these
            // tokens came from the old destination and belong to no one.
            tracing::warn!(credential = %name, "tokens obtained for a previous version of the credential were dropped");
            return Ok(());
        }
        let mut set = SealedSecrets::new();
        let mut remove = Vec::new();
        for (secret, value) in [
            (ACCESS_TOKEN, &tokens.access_token),
            (REFRESH_TOKEN, &tokens.refresh_token),
        ] {
            match value {
                Some(v) => {
                    set.insert(
                        secret.to_string(),
                        key.seal(&aad(&self.spec, secret), v.expose().as_bytes()),
                    );
                }
                None if secret == ACCESS_TOKEN => remove.push(secret),
                None => {}
            }
        }
        self.store
            .set_credential_tokens(name, &set, &remove)
            .map_err(|e| e.to_string())?;
        let value = json!({
            "state": "connected",
            "at_ms": now_ms(),
            "expires_at_ms": tokens.expires_at_ms,
            "connected_by": self.connected_by(stored.as_ref()),
        });
        self.store
            .set_credential_connection(name, &value)
            .map_err(|e| e.to_string())
    }

    fn reconnect_needed(&self, reason: &str) {
        let name = &self.spec.name;
        let stored = self.store.get_credential(name).ok().flatten();
        let value = json!({
            "state": "reconnect_needed",
            "detail": reason,
            "at_ms": now_ms(),
            "connected_by": self.connected_by(stored.as_ref()),
        });
        if let Err(e) = self.store.set_credential_connection(name, &value) {
            tracing::error!(credential = %name, error = %e, "cannot record that the credential needs reconnecting");
        }
        tracing::warn!(credential = %name, reason, "credential needs to be reconnected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::live::CredentialSet;
    use crate::credentials::service::CredentialService;

    const TOKEN: &str = "legacy-token-5a7e";

    fn key(text: &str) -> SealKey {
        SealKey::parse(text).unwrap()
    }

    fn spec(base_url: &str) -> Value {
        json!({
            "name": "crm", "label": "", "base_url": base_url, "allow_http": false,
            "auth": {"type": "bearer"}, "headers": {}, "timeout_ms": 1000,
            "max_request_bytes": 1024, "max_response_bytes": 1024,
            "allowed_plugins": ["*"], "enabled": true, "tls": {}
        })
    }

    /// Stores credential `crm` with its token sealed as hosts did before
    /// destinations were bound.
    fn put_legacy(store: &Store, key: &SealKey, base_url: &str) {
        let sealed = SealedSecrets::from([(
            "token".to_string(),
            key.seal(&legacy_aad("crm", "token"), TOKEN.as_bytes()),
        )]);
        store
            .put_credential("crm", &spec(base_url), &sealed, None)
            .unwrap();
    }

    fn open(store: &Arc<Store>, text: &str) -> Arc<CredentialSet> {
        let set = Arc::new(CredentialSet::default());
        CredentialService::open(store.clone(), Some(key(text)), set.clone()).unwrap();
        set
    }

    /// A store sealed the old way is upgraded once when opened with its key:
    /// the secret keeps working, is now bound to the destination, and the
    /// store records the current check value.
    #[test]
    fn legacy_secrets_are_upgraded_once_and_bound_to_the_destination() {
        let text = SealKey::generate().encode();
        let store = Arc::new(Store::open_in_memory().unwrap());
        put_legacy(&store, &key(&text), "https://crm.example.com/api");
        store
            .init_secret_key_check(&key(&text).legacy_check_value())
            .unwrap();

        let set = open(&store, &text);
        let live = set.get("crm").unwrap();
        assert_eq!(live.problem(), None);
        assert!(live.secret_names().contains("token"));
        assert_eq!(store.secret_key_check().unwrap(), Some(key(&text).check_value()));
        let stored = store.get_credential("crm").unwrap().unwrap();
        let spec: CredentialSpec = serde_json::from_value(stored.spec.clone()).unwrap();
        let sealed = &stored.secrets["token"];
        assert_eq!(
            key(&text).open(&aad(&spec, "token"), sealed).unwrap(),
            TOKEN.as_bytes()
        );
        assert!(key(&text).open(&legacy_aad("crm", "token"), sealed).is_err());
    }

    /// Once upgraded, a store never accepts a value sealed the old way: put
    /// back (say from an old copy) beside a new base URL, it does not open,
    /// and the credential is unusable, saying why.
    #[test]
    fn after_the_upgrade_legacy_values_are_refused() {
        let text = SealKey::generate().encode();
        let store = Arc::new(Store::open_in_memory().unwrap());
        store.init_secret_key_check(&key(&text).check_value()).unwrap();
        put_legacy(&store, &key(&text), "https://attacker.example.net/");

        let set = open(&store, &text);
        let live = set.get("crm").unwrap();
        assert!(live.secret_names().is_empty());
        let problem = live.problem().expect("unusable");
        assert!(
            problem.starts_with("the stored secrets of credential `crm` do not open (secret `token`)"),
            "{problem}"
        );
        assert!(!problem.contains(TOKEN));
        assert!(live.ready().is_err());
        assert_eq!(store.secret_key_check().unwrap(), Some(key(&text).check_value()));
    }

    /// A destination changed in the store behind the host's back (here the
    /// base URL) makes the secret fail to open; an edit through Plugboard
    /// re-seals it for the new destination.
    #[test]
    fn a_changed_destination_does_not_open_but_an_edit_reseals() {
        let text = SealKey::generate().encode();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let set = Arc::new(CredentialSet::default());
        let service = CredentialService::open(store.clone(), Some(key(&text)), set.clone()).unwrap();
        let body = |url: &str, token: Option<&str>| {
            let mut auth = json!({"type": "bearer"});
            if let Some(t) = token {
                auth["token"] = json!(t);
            }
            serde_json::from_value::<crate::credentials::input::RawCredential>(
                json!({"base_url": url, "allowed_plugins": ["*"], "auth": auth}),
            )
            .unwrap()
        };
        service
            .put("crm", body("https://crm.example.com", Some(TOKEN)))
            .unwrap();
        assert!(set.get("crm").unwrap().problem().is_none());
        let stored = store.get_credential("crm").unwrap().unwrap();
        let mut moved = stored.spec.clone();
        moved["base_url"] = json!("https://attacker.example.net/");
        store
            .put_credential("crm", &moved, &stored.secrets, Some(stored.version))
            .unwrap();
        assert_eq!(service.reload_changed().unwrap(), ["crm"]);
        assert!(set.get("crm").unwrap().problem().is_some());

        // Saving it again through Plugboard treats the unopenable secret as cleared.
        let (_, cleared) = service.put("crm", body("https://crm.example.com", None)).unwrap();
        assert_eq!(cleared, ["token"]);
        service
            .put("crm", body("https://crm.example.com", Some(TOKEN)))
            .unwrap();
        let live = set.get("crm").unwrap();
        assert!(live.problem().is_none() && live.ready().is_ok());
    }
}
