//! API tokens: bearer secrets with a role, stored only as their SHA-256.
//!
//! A secret is `pb_` followed by 32 random bytes in lowercase hex. It is
//! returned once, by [`Store::create_token`], and never stored or logged:
//! the table keeps its SHA-256, and a presented secret is hashed and looked
//! up by the whole hash. A fast hash is the right one here: a slow password
//! hash guards low-entropy secrets against guessing, and 256 random bits
//! cannot be guessed at any hashing speed.

use crate::store::Result;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, db_error, from_db, is_unique_violation, now_ms, random_hex, to_db};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: integrations, tokens, runs.
    Admin,
    /// Invoke integrations (all, or the token's list), nothing else.
    Invoker,
}

impl Role {
    /// The role's name: `admin` or `invoker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Invoker => "invoker",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "invoker" => Ok(Role::Invoker),
            _ => Err(format!("role `{s}` is not `admin` or `invoker`")),
        }
    }
}

/// A token as stored: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Random id, `tok_` and 16 hex digits.
    pub id: String,
    /// Name, unique among tokens not revoked.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// For an invoker, the only integrations it may invoke; `None` for all.
    pub integrations: Option<Vec<String>>,
    /// When the token was created.
    pub created_at_ms: u64,
    /// When the token was last verified, to the minute.
    pub last_used_at_ms: Option<u64>,
    /// When the token was revoked; a revoked token verifies as nothing.
    pub revoked_at_ms: Option<u64>,
}

/// The prefix of every secret, so leaked ones are recognizable (secret scanners).
const SECRET_PREFIX: &str = "pb_";

/// `last_used_at_ms` is written at most this often per token, so verifying
/// is not a write per request.
const LAST_USED_EVERY_MS: u64 = 60_000;

/// The columns [`read_token`] reads.
const COLUMNS: &str = "id, name, role, integrations, created_at_ms, last_used_at_ms, revoked_at_ms";

/// Reads one row of [`COLUMNS`].
fn read_token(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let role: String = row.get(2)?;
    let role = role
        .parse::<Role>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into()))?;
    let integrations: Option<String> = row.get(3)?;
    let integrations = integrations
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role,
        integrations,
        created_at_ms: from_db(row.get(4)?),
        last_used_at_ms: row.get::<_, Option<i64>>(5)?.map(from_db),
        revoked_at_ms: row.get::<_, Option<i64>>(6)?.map(from_db),
    })
}

/// The stored form of a secret: its SHA-256 in lowercase hex.
fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The token `id_or_name`: by id whatever its state, else the active one by name.
fn find_for_revoke(conn: &Connection, id_or_name: &str) -> rusqlite::Result<Option<TokenRecord>> {
    let by_id = format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1");
    if let Some(token) = conn.query_row(&by_id, [id_or_name], read_token).optional()? {
        return Ok(Some(token));
    }
    let by_name = format!("SELECT {COLUMNS} FROM tokens WHERE name = ?1 AND revoked_at_ms IS NULL");
    conn.query_row(&by_name, [id_or_name], read_token).optional()
}

impl Store {
    /// Creates a token and returns it with its secret, which is shown this
    /// once and never stored. [`StoreError::Conflict`] when a token not
    /// revoked already has this name.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        integrations: Option<Vec<String>>,
    ) -> Result<(TokenRecord, String), StoreError> {
        let secret = format!("{SECRET_PREFIX}{}", random_hex(32)?);
        let id = format!("tok_{}", random_hex(8)?);
        let list = integrations
            .as_ref()
            .map(|names| serde_json::Value::from(names.clone()).to_string());
        let now = now_ms();
        let inserted = self.conn().execute(
            "INSERT INTO tokens (id, name, role, integrations, secret_sha256, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, name, role.as_str(), list, hash_secret(&secret), to_db(now)],
        );
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a token named `{name}` already exists"
            ))),
            Err(e) => Err(db_error(&format!("cannot create token `{name}`"), e)),
            Ok(_) => {
                let name = name.to_string();
                let (created_at_ms, last_used_at_ms, revoked_at_ms) = (now, None, None);
                let token = TokenRecord {
                    id,
                    name,
                    role,
                    integrations,
                    created_at_ms,
                    last_used_at_ms,
                    revoked_at_ms,
                };
                Ok((token, secret))
            }
        }
    }

    /// The token whose secret is `secret`, unless unknown or revoked. Marks
    /// it used, at most once a minute.
    pub fn verify_token(&self, secret: &str) -> Result<Option<TokenRecord>> {
        // Looked up by the whole hash: comparing hashes leaks nothing usable
        // about the secret, and no prefix of the secret is ever compared.
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tokens WHERE secret_sha256 = ?1 AND revoked_at_ms IS NULL"
        ))?;
        let found = stmt.query_row([hash_secret(secret)], read_token).optional()?;
        drop(stmt);
        let Some(mut token) = found else {
            return Ok(None);
        };
        let now = now_ms();
        if token
            .last_used_at_ms
            .is_none_or(|at| now.saturating_sub(at) >= LAST_USED_EVERY_MS)
        {
            let sql = "UPDATE tokens SET last_used_at_ms = ?1 WHERE id = ?2";
            match conn.execute(sql, params![to_db(now), token.id]) {
                Ok(_) => token.last_used_at_ms = Some(now),
                // Bookkeeping must not fail an otherwise valid request.
                Err(e) => tracing::warn!(token = %token.id, error = %e, "cannot record token use"),
            }
        }
        Ok(Some(token))
    }

    /// Every token, revoked ones included, oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tokens ORDER BY created_at_ms, rowid"
        ))?;
        let rows = stmt.query_map([], read_token)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes the token with id `id_or_name`, or else the one not revoked
    /// with that name. Revoking a revoked token changes nothing.
    pub fn revoke_token(&self, id_or_name: &str) -> Result<TokenRecord, StoreError> {
        let doing = format!("cannot revoke token `{id_or_name}`");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        let found = find_for_revoke(&tx, id_or_name).map_err(|e| db_error(&doing, e))?;
        let mut token =
            found.ok_or_else(|| StoreError::NotFound(format!("token `{id_or_name}` does not exist")))?;
        if token.revoked_at_ms.is_some() {
            return Ok(token);
        }
        let now = now_ms();
        tx.execute(
            "UPDATE tokens SET revoked_at_ms = ?1 WHERE id = ?2",
            params![to_db(now), token.id],
        )
        .and_then(|_| tx.commit())
        .map_err(|e| db_error(&doing, e))?;
        token.revoked_at_ms = Some(now);
        Ok(token)
    }

    /// How many admin tokens are not revoked (callers refuse to revoke the last).
    pub fn count_active_admin_tokens(&self) -> Result<usize> {
        let sql = "SELECT count(*) FROM tokens WHERE role = 'admin' AND revoked_at_ms IS NULL";
        let count: i64 = self.conn().query_row(sql, [], |row| row.get(0))?;
        Ok(count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret is `pb_` and 64 lowercase hex digits, differs per token, and appears in no record.
    #[test]
    fn the_secret_is_shown_once_and_in_no_record() {
        let store = Store::open_in_memory().unwrap();
        let (token, secret) = store.create_token("ci", Role::Admin, None).unwrap();
        let (_, other) = store.create_token("ops", Role::Admin, None).unwrap();
        assert_ne!(secret, other);
        let digits = secret.strip_prefix("pb_").unwrap();
        assert_eq!(digits.len(), 64);
        assert!(
            digits
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert!(
            token.id.starts_with("tok_") && token.id.len() == 20,
            "{}",
            token.id
        );
        let listed = serde_json::to_string(&store.list_tokens().unwrap()).unwrap();
        assert!(!listed.contains(digits));
    }

    /// The database files hold the secret's SHA-256 but never the secret itself.
    #[test]
    fn the_secret_is_stored_only_as_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (_, secret) = store.create_token("ci", Role::Admin, None).unwrap();
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            contains(hash_secret(&secret).as_bytes()),
            "the hash should be on disk"
        );
        assert!(!contains(secret.as_bytes()));
        assert!(!contains(&secret.as_bytes()[3..]));
        assert!(!contains(&hex::decode(&secret[3..]).unwrap()));
    }

    /// A token's secret verifies as that token; a wrong secret or a prefix of it verifies as nothing.
    #[test]
    fn a_secret_verifies_as_its_token() {
        let store = Store::open_in_memory().unwrap();
        let limited = Some(vec!["crm".to_string()]);
        let (token, secret) = store.create_token("ci", Role::Invoker, limited.clone()).unwrap();
        let verified = store.verify_token(&secret).unwrap().unwrap();
        assert_eq!(
            (verified.id, verified.role, verified.integrations),
            (token.id, Role::Invoker, limited)
        );
        assert_eq!(store.verify_token(&secret[..40]).unwrap(), None);
        assert_eq!(store.verify_token("pb_0000").unwrap(), None);
    }

    /// A revoked token no longer verifies, by id or by name, and its name can be reused.
    #[test]
    fn a_revoked_token_fails_verification() {
        let store = Store::open_in_memory().unwrap();
        let (first, secret) = store.create_token("ci", Role::Admin, None).unwrap();
        let (_, second) = store.create_token("ops", Role::Admin, None).unwrap();
        assert_eq!(store.count_active_admin_tokens().unwrap(), 2);
        assert!(store.revoke_token(&first.id).unwrap().revoked_at_ms.is_some());
        assert!(store.revoke_token("ops").unwrap().revoked_at_ms.is_some());
        assert_eq!(store.verify_token(&secret).unwrap(), None);
        assert_eq!(store.verify_token(&second).unwrap(), None);
        assert_eq!(store.count_active_admin_tokens().unwrap(), 0);
        let again = store.revoke_token(&first.id).unwrap();
        assert_eq!(
            store
                .list_tokens()
                .unwrap()
                .into_iter()
                .find(|t| t.id == first.id),
            Some(again)
        );
        store.create_token("ci", Role::Invoker, None).unwrap();
    }

    /// Two active tokens cannot share a name; revoking a missing token is not-found.
    #[test]
    fn names_conflict_and_missing_tokens_are_not_found() {
        let store = Store::open_in_memory().unwrap();
        store.create_token("ci", Role::Admin, None).unwrap();
        let err = store.create_token("ci", Role::Invoker, None).unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict("a token named `ci` already exists".into())
        );
        let err = store.revoke_token("ghost").unwrap_err();
        assert_eq!(err, StoreError::NotFound("token `ghost` does not exist".into()));
    }

    /// Verifying sets last-used, skips the write within a minute, and writes again after it.
    #[test]
    fn last_used_updates_at_most_once_a_minute() {
        let store = Store::open_in_memory().unwrap();
        let (token, secret) = store.create_token("ci", Role::Admin, None).unwrap();
        assert_eq!(token.last_used_at_ms, None);
        let first = store
            .verify_token(&secret)
            .unwrap()
            .unwrap()
            .last_used_at_ms
            .unwrap();
        let set_last_used = |at: u64| {
            store
                .conn()
                .execute("UPDATE tokens SET last_used_at_ms = ?1", [to_db(at)])
                .unwrap();
        };
        set_last_used(first - 30_000);
        assert_eq!(
            store.verify_token(&secret).unwrap().unwrap().last_used_at_ms,
            Some(first - 30_000)
        );
        set_last_used(first - 61_000);
        let later = store
            .verify_token(&secret)
            .unwrap()
            .unwrap()
            .last_used_at_ms
            .unwrap();
        assert!(later >= first, "{later} < {first}");
        assert_eq!(store.list_tokens().unwrap()[0].last_used_at_ms, Some(later));
    }
}
