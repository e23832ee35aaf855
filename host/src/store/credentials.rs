//! Named credentials in the store: the spec as JSON, each secret sealed in a
//! row of its own, the consent-flow state, and the last connection test of
//! every credential (config-file ones too, which have no other row here).
//!
//! The store never sees a secret in plaintext: callers seal before writing
//! and open after reading (`crate::credentials::seal`). Only a change of the
//! spec or of the operator-given secrets bumps `version`; tokens a flow
//! obtains are written without it, so a serving host does not rebuild the
//! credential (and drop its token cache) on every refresh.

use crate::store::Result;
use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::{Store, StoreError, db_error, from_db, now_ms, opt_json_column, to_db};

/// Sealed secret values by secret name.
pub type SealedSecrets = BTreeMap<String, Vec<u8>>;

/// A credential as stored.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    /// Name.
    pub name: String,
    /// The spec, as JSON (`crate::credentials::CredentialSpec`).
    pub spec: Value,
    /// Bumped by every edit of the spec or the operator's secrets.
    pub version: i64,
    /// Created.
    pub created_at_ms: u64,
    /// Last edited.
    pub updated_at_ms: u64,
    /// Consent-flow state (`connected`, `reconnect_needed`).
    pub connection: Option<Value>,
    /// Sealed secrets.
    pub secrets: SealedSecrets,
}

const KEY_CHECK: &str = "secret_key_check";

impl Store {
    /// Every credential with its sealed secrets.
    pub fn list_credentials(&self) -> Result<Vec<StoredCredential>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT name, spec, version, created_at_ms, updated_at_ms, connection
             FROM credentials ORDER BY name",
        )?;
        let mut out: Vec<StoredCredential> = stmt
            .query_map([], |row| {
                Ok(StoredCredential {
                    name: row.get(0)?,
                    spec: super::json_column(row, 1)?,
                    version: row.get(2)?,
                    created_at_ms: from_db(row.get(3)?),
                    updated_at_ms: from_db(row.get(4)?),
                    connection: opt_json_column(row, 5)?,
                    secrets: BTreeMap::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = conn.prepare("SELECT credential, name, sealed FROM credential_secrets")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in rows {
            let (cred, name, sealed) = row?;
            if let Some(c) = out.iter_mut().find(|c| c.name == cred) {
                c.secrets.insert(name, sealed);
            }
        }
        Ok(out)
    }

    /// One credential.
    pub fn get_credential(&self, name: &str) -> Result<Option<StoredCredential>> {
        Ok(self.list_credentials()?.into_iter().find(|c| c.name == name))
    }

    /// Name and version of every credential: what a serving host polls to
    /// see edits made by another process (`plugboard apply`).
    pub fn credential_versions(&self) -> Result<BTreeMap<String, i64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, version FROM credentials")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Creates or replaces credential `name`: its spec and all its secrets,
    /// in one transaction, bumping its version. `expected_version` (when
    /// given) must match the stored one, so two concurrent edits cannot both
    /// win. Returns the new version.
    pub fn put_credential(
        &self,
        name: &str,
        spec: &Value,
        secrets: &SealedSecrets,
        expected_version: Option<i64>,
    ) -> Result<i64, StoreError> {
        let doing = format!("cannot save credential `{name}`");
        let now = to_db(now_ms());
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        let current: Option<i64> = tx
            .query_row("SELECT version FROM credentials WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| db_error(&doing, e))?;
        if let Some(expected) = expected_version
            && current != Some(expected)
        {
            return Err(StoreError::Conflict(format!(
                "credential `{name}` was changed by someone else meanwhile; read it again and retry"
            )));
        }
        let version = current.unwrap_or(0) + 1;
        let spec_text = spec.to_string();
        if current.is_some() {
            tx.execute(
                "UPDATE credentials SET spec = ?1, version = ?2, updated_at_ms = ?3 WHERE name = ?4",
                params![spec_text, version, now, name],
            )
        } else {
            tx.execute(
                "INSERT INTO credentials (name, spec, version, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, 1, ?3, ?3)",
                params![name, spec_text, now],
            )
        }
        .map_err(|e| db_error(&doing, e))?;
        tx.execute("DELETE FROM credential_secrets WHERE credential = ?1", [name])
            .map_err(|e| db_error(&doing, e))?;
        for (secret, sealed) in secrets {
            tx.execute(
                "INSERT INTO credential_secrets (credential, name, sealed, updated_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![name, secret, sealed, now],
            )
            .map_err(|e| db_error(&doing, e))?;
        }
        tx.commit().map_err(|e| db_error(&doing, e))?;
        Ok(version)
    }

    /// Writes secrets a flow obtained (tokens) and removes `remove`, without
    /// bumping the version.
    pub fn set_credential_tokens(
        &self,
        name: &str,
        set: &SealedSecrets,
        remove: &[&str],
    ) -> Result<(), StoreError> {
        let doing = format!("cannot save the tokens of credential `{name}`");
        let now = to_db(now_ms());
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| db_error(&doing, e))?;
        for r in remove {
            tx.execute(
                "DELETE FROM credential_secrets WHERE credential = ?1 AND name = ?2",
                params![name, r],
            )
            .map_err(|e| db_error(&doing, e))?;
        }
        for (secret, sealed) in set {
            tx.execute(
                "INSERT INTO credential_secrets (credential, name, sealed, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (credential, name) DO UPDATE SET sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms",
                params![name, secret, sealed, now],
            )
            .map_err(|e| db_error(&doing, e))?;
        }
        tx.commit().map_err(|e| db_error(&doing, e))
    }

    /// Records the consent-flow state of credential `name` (`connected`,
    /// `reconnect_needed`).
    pub fn set_credential_connection(&self, name: &str, value: &Value) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE credentials SET connection = ?1 WHERE name = ?2",
                params![value.to_string(), name],
            )
            .map_err(|e| db_error(&format!("cannot save the connection of credential `{name}`"), e))?;
        Ok(())
    }

    /// Records the result of the connection test of credential `name`
    /// (stored or from a config file), replacing the previous one.
    pub fn set_connection_test(&self, name: &str, result: &Value, now_ms: u64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO connection_tests (credential, result, tested_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (credential) DO UPDATE SET result = excluded.result, tested_at_ms = excluded.tested_at_ms",
                params![name, result.to_string(), to_db(now_ms)],
            )
            .map_err(|e| db_error(&format!("cannot save the connection test of credential `{name}`"), e))?;
        Ok(())
    }

    /// The last connection test of every credential that has one, by name.
    pub fn connection_tests(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        let doing = "cannot read the connection tests";
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT credential, result FROM connection_tests")
            .map_err(|e| db_error(doing, e))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, super::json_column(row, 1)?)))
            .map_err(|e| db_error(doing, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| db_error(doing, e))
    }

    /// Deletes credential `name` and its secrets; `false` when it did not exist.
    /// Its connection test goes with it.
    pub fn delete_credential(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM connection_tests WHERE credential = ?1", [name])?;
        let deleted = tx.execute("DELETE FROM credentials WHERE name = ?1", [name])? > 0;
        tx.commit()?;
        Ok(deleted)
    }

    /// The check value of the key the secrets are sealed with.
    pub fn secret_key_check(&self) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM settings WHERE key = ?1", [KEY_CHECK], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Records the check value of the key, when none is recorded yet.
    pub fn init_secret_key_check(&self, check: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO settings (key, value) VALUES (?1, ?2)",
            params![KEY_CHECK, check],
        )?;
        Ok(())
    }

    /// Re-seals every secret with `reseal` and records `new_check`, all in
    /// one transaction: either every secret moves or none does. `reseal`
    /// gets the credential's name and spec, the secret's name and its sealed
    /// value, and returns the new sealed value, `None` to leave it as it is,
    /// or why it cannot (which rolls everything back). Returns how many
    /// secrets there were.
    ///
    /// Deleted content is overwritten on this connection from now on
    /// (`secure_delete`), so the replaced values do not linger in the pages
    /// they leave; [`Store::scrub_freed_space`] takes care of the rest.
    pub fn reseal_secrets(
        &self,
        new_check: &str,
        mut reseal: impl FnMut(&str, &Value, &str, &[u8]) -> Result<Option<Vec<u8>>, String>,
    ) -> Result<usize> {
        let mut conn = self.conn();
        conn.pragma_update(None, "secure_delete", "ON")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: Vec<(String, String, String, Vec<u8>)> = {
            let mut stmt = tx.prepare(
                "SELECT s.credential, c.spec, s.name, s.sealed
                 FROM credential_secrets s JOIN credentials c ON c.name = s.credential",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        for (cred, spec, name, sealed) in &rows {
            let spec: Value = serde_json::from_str(spec).map_err(|e| {
                StoreError::Database(format!("credential `{cred}` in the store is unreadable: {e}"))
            })?;
            let new = reseal(cred, &spec, name, sealed)
                .map_err(|e| StoreError::Database(format!("secret `{name}` of credential `{cred}`: {e}")))?;
            if let Some(new) = new {
                tx.execute(
                    "UPDATE credential_secrets SET sealed = ?1 WHERE credential = ?2 AND name = ?3",
                    params![new, cred, name],
                )?;
            }
        }
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![KEY_CHECK, new_check],
        )?;
        tx.commit()?;
        Ok(rows.len())
    }

    /// Rewrites the database so that nothing deleted or replaced survives in
    /// its files: the write-ahead log is copied in and truncated, `VACUUM`
    /// rebuilds the file without free pages or freed cell space, and the log
    /// (which `VACUUM` wrote the new pages through) is truncated again.
    ///
    /// Returns `false` when another process (a serving host) kept the log
    /// in use, so it could not be truncated and may still hold old pages.
    /// An in-memory store has no files: `true`.
    pub fn scrub_freed_space(&self) -> Result<bool> {
        if self.path.is_none() {
            return Ok(true);
        }
        let conn = self.conn();
        let truncate = |conn: &rusqlite::Connection| -> Result<bool> {
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            Ok(busy == 0)
        };
        let first = truncate(&conn)?;
        conn.execute_batch("VACUUM")?;
        let second = truncate(&conn)?;
        Ok(first && second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A connection test recorded through one handle on a data folder is
    /// seen through another, for a credential the store has no row for
    /// (one from a config file), and a newer test replaces it.
    #[test]
    fn a_connection_test_recorded_by_one_store_is_seen_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).unwrap();
        first
            .set_connection_test("crm", &json!({"ok": false}), 1_000)
            .unwrap();
        assert_eq!(second.connection_tests().unwrap()["crm"], json!({"ok": false}));
        second
            .set_connection_test("crm", &json!({"ok": true}), 2_000)
            .unwrap();
        assert_eq!(first.connection_tests().unwrap()["crm"], json!({"ok": true}));
    }

    /// Deleting a stored credential deletes its connection test.
    #[test]
    fn deleting_a_credential_deletes_its_connection_test() {
        let store = Store::open_in_memory().unwrap();
        store
            .put_credential("crm", &json!({"name": "crm"}), &SealedSecrets::new(), None)
            .unwrap();
        store
            .set_connection_test("crm", &json!({"ok": true}), 1_000)
            .unwrap();
        assert!(store.delete_credential("crm").unwrap());
        assert!(store.connection_tests().unwrap().is_empty());
    }
}
