//! Named credentials as managed objects: create, edit, delete, test,
//! connect (OAuth consent) and key rotation, over the store and the live
//! credential set the callout policy reads.
//!
//! Rules kept here, for every way in (API, CLI, `plugboard apply`):
//! - secrets are sealed before they reach the store, each bound to its
//!   credential's destination ([`sealing`]), and never leave it except into
//!   a [`LiveCredential`];
//! - an edit that changes where secrets go (base URL, authentication type,
//!   OAuth endpoints, custom CA, header templates) clears the stored secrets;
//! - a stored credential whose secrets do not open is kept, shown and
//!   refused as unusable, never sent without them or with the wrong ones;
//! - a credential in use by an integration cannot be deleted;
//! - credentials from the config file are read-only here.
//!
//! Files: `sealing` (associated data, key check and upgrade, rotation,
//! saving tokens) and `consent` (the OAuth consent flow).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::input::{RawCredential, SecretMode, check_material, from_raw};
use super::live::{CredentialSet, LiveCredential, Source};
use super::oauth::TokenPersist;
use super::seal::SealKey;
use super::{CredentialSpec, NamedCredential};
use crate::store::{Store, StoreError, StoredCredential};

mod consent;
mod sealing;

pub use consent::{CONSENT_TTL, ConsentStart, consent_cookie_name};
pub use sealing::{ConnectedBy, Rotation, check_key, rotate_key};
use sealing::{StorePersist, open_secrets, seal_all};

/// Why a credential operation failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No such credential (404).
    #[error("credential `{0}` does not exist")]
    NotFound(String),
    /// The request is not a valid credential (422); every problem listed.
    #[error("invalid credential: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The operation conflicts with the state (409).
    #[error("{0}")]
    Conflict(String),
    /// Integrations still bind the credential (409).
    #[error("credential `{name}` is used by {}: unbind it first", .used_by.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", "))]
    InUse {
        /// The credential.
        name: String,
        /// Integrations that bind it.
        used_by: Vec<String>,
    },
    /// No secret key is configured, so secrets cannot be stored (409).
    #[error(
        "this host has no secret key, so it cannot store secrets: set PLUGBOARD_SECRET_KEY (or --secret-key-file) to a key from `plugboard credentials generate-key` and restart"
    )]
    NoKey,
    /// The consent flow failed (400 for a bad or expired `state`, 502 when
    /// the token endpoint refused the code).
    #[error("{0}")]
    Consent(String),
    /// The stored secrets do not open (another key, or a destination
    /// changed outside Plugboard); the credential is unusable (409).
    #[error("{0}")]
    Unopenable(String),
    /// A store failure (500).
    #[error("{0}")]
    Internal(String),
}

impl From<anyhow::Error> for CredentialError {
    fn from(e: anyhow::Error) -> Self {
        CredentialError::Internal(format!("{e:#}"))
    }
}

impl From<StoreError> for CredentialError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) | StoreError::Conflict(m) => CredentialError::Conflict(m),
            other @ (StoreError::Database(_) | StoreError::QueueFull { .. }) => {
                CredentialError::Internal(other.to_string())
            }
        }
    }
}

/// What `plugboard apply` did to one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// It did not exist.
    Created,
    /// Its spec or secrets changed.
    Updated,
    /// Nothing changed.
    Unchanged,
}

/// The credentials of one host.
pub struct CredentialService {
    store: Arc<Store>,
    key: Option<Arc<SealKey>>,
    set: Arc<CredentialSet>,
}

impl CredentialService {
    /// Checks the key against the store, then loads every stored credential
    /// into `set` (beside the config file's, already there).
    pub fn open(store: Arc<Store>, key: Option<SealKey>, set: Arc<CredentialSet>) -> anyhow::Result<Self> {
        let key = key.map(Arc::new);
        check_key(&store, key.as_deref())?;
        let service = CredentialService { store, key, set };
        for stored in service.store.list_credentials()? {
            if let Some(existing) = service.set.get(&stored.name)
                && existing.source() == Source::Config
            {
                anyhow::bail!(
                    "credential `{}` is declared in the config file and also stored (from the API or `plugboard apply`): remove one of them",
                    stored.name
                );
            }
            let live = service.build(&stored)?;
            service.set.insert(live);
        }
        Ok(service)
    }

    /// The live credential set.
    pub fn set(&self) -> &Arc<CredentialSet> {
        &self.set
    }

    /// The run-time credential for `stored`. A credential whose secrets do
    /// not open, or that no longer builds (a template this version refuses),
    /// becomes an unusable one that says why, so one bad row does not keep
    /// the host from starting and nothing is sent through it.
    fn build(&self, stored: &StoredCredential) -> anyhow::Result<LiveCredential> {
        let spec: CredentialSpec = serde_json::from_value(stored.spec.clone())
            .map_err(|e| anyhow::anyhow!("credential `{}` in the store is unreadable: {e}", stored.name))?;
        let unusable = |spec: CredentialSpec, problem: String| {
            tracing::error!(credential = %stored.name, problem = %problem, "credential unusable");
            LiveCredential::unusable(spec, Source::Store, stored.version, problem).map_err(anyhow::Error::msg)
        };
        let secrets = match open_secrets(self.key.as_deref(), &spec, stored) {
            Ok(secrets) => secrets,
            Err(e) => return unusable(spec, e.to_string()),
        };
        let expires_at_ms = stored
            .connection
            .as_ref()
            .and_then(|c| c["expires_at_ms"].as_u64());
        let persist: Arc<dyn TokenPersist> = Arc::new(StorePersist {
            store: self.store.clone(),
            key: self.key.clone(),
            spec: spec.clone(),
            connected_by: None,
        });
        let named = NamedCredential {
            spec: spec.clone(),
            secrets,
        };
        match LiveCredential::build(named, Source::Store, stored.version, Some(persist), expires_at_ms) {
            Ok(live) => Ok(live),
            Err(problem) => unusable(spec, format!("credential `{}`: {problem}", stored.name)),
        }
    }

    /// Rebuilds credentials another process changed in the store (`plugboard
    /// apply`, `plugboard credentials delete`); returns the names reloaded.
    pub fn reload_changed(&self) -> anyhow::Result<Vec<String>> {
        let versions = self.store.credential_versions()?;
        let mut changed = Vec::new();
        for live in self.set.all() {
            if live.source() == Source::Store && !versions.contains_key(&live.spec().name) {
                self.set.remove(&live.spec().name);
                changed.push(live.spec().name.clone());
            }
        }
        for (name, version) in versions {
            let current = self.set.get(&name);
            if current
                .as_ref()
                .is_some_and(|c| c.version() == version || c.source() == Source::Config)
            {
                continue;
            }
            if let Some(stored) = self.store.get_credential(&name)? {
                match self.build(&stored) {
                    Ok(live) => self.set.insert(live),
                    Err(e) => {
                        tracing::error!(credential = %name, error = %format!("{e:#}"), "credential not reloaded")
                    }
                }
                changed.push(name);
            }
        }
        Ok(changed)
    }

    /// Every credential as the API shows it.
    pub fn list(&self, used: &BTreeMap<String, Vec<Value>>) -> Result<Vec<Value>, CredentialError> {
        let stored: BTreeMap<String, StoredCredential> = self
            .store
            .list_credentials()?
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let tests = self.store.connection_tests()?;
        Ok(self
            .set
            .all()
            .iter()
            .map(|live| {
                let name = &live.spec().name;
                self.view_of(live, stored.get(name), tests.get(name), used)
            })
            .collect())
    }

    /// One credential as the API shows it.
    pub fn get(&self, name: &str, used: &BTreeMap<String, Vec<Value>>) -> Result<Value, CredentialError> {
        let live = self
            .set
            .get(name)
            .ok_or_else(|| CredentialError::NotFound(name.into()))?;
        let stored = self.store.get_credential(name)?;
        let last_test = self.store.connection_tests()?.remove(name);
        Ok(self.view_of(&live, stored.as_ref(), last_test.as_ref(), used))
    }

    fn view_of(
        &self,
        live: &LiveCredential,
        stored: Option<&StoredCredential>,
        last_test: Option<&Value>,
        used: &BTreeMap<String, Vec<Value>>,
    ) -> Value {
        let name = &live.spec().name;
        let mut set = live.secret_names();
        if let Some(s) = stored {
            set.extend(s.secrets.keys().cloned());
        }
        let mut view = live.spec().to_view(&set);
        view["source"] = json!(live.source());
        view["version"] = json!(live.version());
        view["used_by"] = json!(used.get(name).cloned().unwrap_or_default());
        view["last_test"] = last_test.cloned().unwrap_or(Value::Null);
        if let Some(tokens) = live.tokens() {
            view["token"] = json!(tokens.status());
        }
        if let Some(problem) = live.problem() {
            view["problem"] = json!(problem);
        }
        if let Some(c) = stored.and_then(|s| s.connection.clone()) {
            view["connection"] = c;
        }
        if let Some(s) = stored {
            view["created_at_ms"] = json!(s.created_at_ms);
            view["updated_at_ms"] = json!(s.updated_at_ms);
        }
        view
    }

    /// Creates or replaces a credential from the admin API (secret values
    /// given literally; left out means "keep"). Returns whether it was
    /// created and which secrets the edit cleared.
    pub fn put(&self, name: &str, raw: RawCredential) -> Result<(bool, Vec<String>), CredentialError> {
        let named = from_raw(name, raw, SecretMode::Literal).map_err(CredentialError::Invalid)?;
        let (created, cleared, _) = self.save(named)?;
        Ok((created, cleared))
    }

    /// Creates or updates a credential from a `plugboard apply` file
    /// (secrets as references; left out means "keep").
    pub fn apply(&self, name: &str, raw: RawCredential) -> Result<ApplyOutcome, CredentialError> {
        let named = from_raw(name, raw, SecretMode::References).map_err(CredentialError::Invalid)?;
        let (created, _, changed) = self.save(named)?;
        Ok(match (created, changed) {
            (true, _) => ApplyOutcome::Created,
            (false, true) => ApplyOutcome::Updated,
            (false, false) => ApplyOutcome::Unchanged,
        })
    }

    /// The one write path. Returns (created, cleared secret names, changed).
    fn save(&self, named: NamedCredential) -> Result<(bool, Vec<String>, bool), CredentialError> {
        let name = named.spec.name.clone();
        if self.set.get(&name).is_some_and(|c| c.source() == Source::Config) {
            return Err(CredentialError::Conflict(format!(
                "credential `{name}` is declared in the host's config file; change it there"
            )));
        }
        let existing = self.store.get_credential(&name)?;
        let mut secrets = BTreeMap::new();
        let mut cleared = Vec::new();
        let mut old_spec = None;
        if let Some(stored) = &existing {
            let old: CredentialSpec = serde_json::from_value(stored.spec.clone()).map_err(|e| {
                CredentialError::Internal(format!("stored credential `{name}` is unreadable: {e}"))
            })?;
            // Secrets that do not open are as good as gone: the edit can
            // replace them, and they are reported cleared.
            let old_secrets = match open_secrets(self.key.as_deref(), &old, stored) {
                Ok(secrets) => secrets,
                Err(_) => {
                    cleared = stored
                        .secrets
                        .keys()
                        .filter(|k| !named.secrets.contains_key(*k))
                        .cloned()
                        .collect();
                    BTreeMap::new()
                }
            };
            if old.edit_clears_secrets(&named.spec) {
                cleared.extend(
                    old_secrets
                        .keys()
                        .filter(|k| !named.secrets.contains_key(*k))
                        .cloned(),
                );
            } else {
                secrets = old_secrets;
            }
            old_spec = Some(old);
        }
        let given_changes = named.secrets.iter().any(|(k, v)| secrets.get(k) != Some(v));
        secrets.extend(named.secrets);
        let wanted: BTreeSet<String> = named
            .spec
            .secret_requirements()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        secrets.retain(|k, _| wanted.contains(k));
        let mut problems = Vec::new();
        check_material(&named.spec, &secrets, &mut problems);
        if !problems.is_empty() {
            return Err(CredentialError::Invalid(problems));
        }
        let changed = old_spec.as_ref() != Some(&named.spec)
            || given_changes
            || existing
                .as_ref()
                .is_some_and(|s| s.secrets.len() != secrets.len());
        if !changed {
            return Ok((false, cleared, false));
        }
        let sealed = seal_all(&self.store, self.key.as_deref(), &named.spec, &secrets)?;
        let spec_json =
            serde_json::to_value(&named.spec).map_err(|e| CredentialError::Internal(e.to_string()))?;
        let version =
            self.store
                .put_credential(&name, &spec_json, &sealed, existing.as_ref().map(|s| s.version))?;
        let stored = self
            .store
            .get_credential(&name)?
            .ok_or_else(|| CredentialError::Internal(format!("credential `{name}` vanished while saving")))?;
        debug_assert_eq!(stored.version, version);
        let live = self.build(&stored)?;
        self.set.insert(live);
        Ok((existing.is_none(), cleared, true))
    }

    /// Deletes a credential unless an integration binds it (`used` as from
    /// `Integrations::credential_users`).
    pub fn delete(&self, name: &str, used: &BTreeMap<String, Vec<Value>>) -> Result<(), CredentialError> {
        let used_by: Vec<String> = used
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|u| u["integration"].as_str().map(String::from))
            .collect();
        let live = self
            .set
            .get(name)
            .ok_or_else(|| CredentialError::NotFound(name.into()))?;
        if live.source() == Source::Config {
            return Err(CredentialError::Conflict(format!(
                "credential `{name}` is declared in the host's config file; remove it there"
            )));
        }
        if !used_by.is_empty() {
            return Err(CredentialError::InUse {
                name: name.into(),
                used_by,
            });
        }
        self.store.delete_credential(name)?;
        self.set.remove(name);
        Ok(())
    }

    /// The live credential named `name`.
    pub fn live(&self, name: &str) -> Result<Arc<LiveCredential>, CredentialError> {
        self.set
            .get(name)
            .ok_or_else(|| CredentialError::NotFound(name.into()))
    }

    /// Stores the result of a connection test, where every host on the
    /// store sees it: for config-file credentials too, which have no row of
    /// their own.
    pub fn record_test(&self, name: &str, result: &Value) -> Result<(), CredentialError> {
        self.live(name)?;
        self.store.set_connection_test(name, result, now_ms())?;
        Ok(())
    }
}

use crate::time::now_ms;
