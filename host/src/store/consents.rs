//! Pending OAuth consent flows, kept in the store so that a flow started
//! through one host completes through any other on the same store.
//!
//! A row holds no secret (see migration 5): the provider's `state` and the
//! browser's cookie nonce are kept as SHA-256 digests only, and the PKCE
//! verifier is derived from the nonce when the browser brings it back. The
//! callers (`crate::credentials::service`) compute the digests; expiry is
//! the row's own `expires_at_ms`, checked against the clock handed in.

use crate::store::Result;
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, db_error, from_db, to_db};

/// A consent flow waiting for the provider's redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingConsent {
    /// SHA-256 (hex) of the `state` sent to the provider: the flow's key.
    pub state_sha256: String,
    /// The credential being connected.
    pub credential: String,
    /// The redirect URL the provider was given (the exchange repeats it).
    pub redirect_url: String,
    /// SHA-256 (hex) of the nonce the starting browser holds as a cookie.
    pub browser_sha256: String,
    /// Id of the admin token that started the flow.
    pub started_by_id: String,
    /// Name of that token.
    pub started_by_name: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// When it lapses, ms since the epoch.
    pub expires_at_ms: u64,
}

impl Store {
    /// Saves a started consent flow, dropping flows that lapsed by `now_ms`.
    pub fn put_consent(&self, consent: &PendingConsent, now_ms: u64) -> Result<(), StoreError> {
        let doing = format!(
            "cannot save the consent flow of credential `{}`",
            consent.credential
        );
        let conn = self.conn();
        conn.execute(
            "DELETE FROM oauth_consents WHERE expires_at_ms <= ?1",
            [to_db(now_ms)],
        )
        .map_err(|e| db_error(&doing, e))?;
        conn.execute(
            "INSERT INTO oauth_consents (state_sha256, credential, redirect_url, browser_sha256,
                 started_by_id, started_by_name, started_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                consent.state_sha256,
                consent.credential,
                consent.redirect_url,
                consent.browser_sha256,
                consent.started_by_id,
                consent.started_by_name,
                to_db(consent.started_at_ms),
                to_db(consent.expires_at_ms),
            ],
        )
        .map_err(|e| db_error(&doing, e))?;
        Ok(())
    }

    /// The consent flow whose `state` has digest `state_sha256`, unless it
    /// is unknown, already taken, or lapsed by `now_ms`.
    pub fn get_consent(&self, state_sha256: &str, now_ms: u64) -> Result<Option<PendingConsent>, StoreError> {
        self.conn()
            .query_row(
                "SELECT state_sha256, credential, redirect_url, browser_sha256, started_by_id,
                        started_by_name, started_at_ms, expires_at_ms
                 FROM oauth_consents WHERE state_sha256 = ?1 AND expires_at_ms > ?2",
                params![state_sha256, to_db(now_ms)],
                |row| {
                    Ok(PendingConsent {
                        state_sha256: row.get(0)?,
                        credential: row.get(1)?,
                        redirect_url: row.get(2)?,
                        browser_sha256: row.get(3)?,
                        started_by_id: row.get(4)?,
                        started_by_name: row.get(5)?,
                        started_at_ms: from_db(row.get(6)?),
                        expires_at_ms: from_db(row.get(7)?),
                    })
                },
            )
            .optional()
            .map_err(|e| db_error("cannot read a consent flow", e))
    }

    /// Removes the consent flow `state_sha256`; `true` for the one caller
    /// that removed it, so two callbacks racing on one flow cannot both
    /// exchange its code.
    pub fn take_consent(&self, state_sha256: &str) -> Result<bool, StoreError> {
        let removed = self
            .conn()
            .execute(
                "DELETE FROM oauth_consents WHERE state_sha256 = ?1",
                [state_sha256],
            )
            .map_err(|e| db_error("cannot remove a consent flow", e))?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(state: &str, expires_at_ms: u64) -> PendingConsent {
        PendingConsent {
            state_sha256: state.into(),
            credential: "crm".into(),
            redirect_url: "https://plugboard.example/v1/oauth/callback".into(),
            browser_sha256: "b0".into(),
            started_by_id: "tok_1".into(),
            started_by_name: "admin".into(),
            started_at_ms: 1_000,
            expires_at_ms,
        }
    }

    /// A flow saved through one handle on a data folder is found, and taken
    /// once, through another handle on the same folder.
    #[test]
    fn a_consent_saved_by_one_store_is_taken_once_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).unwrap();
        first.put_consent(&pending("s1", 10_000), 1_000).unwrap();
        assert_eq!(
            second.get_consent("s1", 2_000).unwrap(),
            Some(pending("s1", 10_000))
        );
        assert!(second.take_consent("s1").unwrap());
        assert!(!first.take_consent("s1").unwrap(), "a flow is taken once");
        assert_eq!(first.get_consent("s1", 2_000).unwrap(), None);
    }

    /// A lapsed flow is not found, and the next start drops it.
    #[test]
    fn lapsed_consents_are_not_found_and_are_pruned() {
        let store = Store::open_in_memory().unwrap();
        store.put_consent(&pending("old", 5_000), 1_000).unwrap();
        assert!(store.get_consent("old", 4_999).unwrap().is_some());
        assert_eq!(store.get_consent("old", 5_000).unwrap(), None);
        store.put_consent(&pending("new", 20_000), 6_000).unwrap();
        assert!(!store.take_consent("old").unwrap(), "pruned by the later start");
        assert!(store.take_consent("new").unwrap());
    }
}
