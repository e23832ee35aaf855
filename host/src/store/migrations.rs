//! The store's schema, as versioned forward-only migrations.
//!
//! SQLite's `user_version` holds the number of migrations applied
//! (rusqlite_migration keeps it). A migration is never edited once released:
//! a schema change is a new entry at the end of [`STEPS`], and the upgrade test
//! below then proves that a database at every earlier version still opens
//! and keeps its rows. A database at a version above [`SCHEMA_VERSION`] was
//! written by a newer Plugboard and is refused rather than guessed at.

use crate::store::Context;
use crate::store::{Result, StoreError};
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

/// Migration 1: integrations and their versions, tokens, runs.
///
/// Runs name their integration as text, without a foreign key, so they
/// outlive a deleted integration. Runs have no CHECK on their status: the
/// table is the large one, and widening a CHECK means rebuilding it.
const V1: &str = "
CREATE TABLE integrations (
    name          TEXT PRIMARY KEY NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('draft', 'active', 'inactive')),
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE integration_versions (
    integration   TEXT NOT NULL REFERENCES integrations (name) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    definition    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (integration, version)
);
CREATE TABLE tokens (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'invoker')),
    integrations    TEXT,
    secret_sha256   TEXT NOT NULL UNIQUE,
    created_at_ms   INTEGER NOT NULL,
    last_used_at_ms INTEGER,
    revoked_at_ms   INTEGER
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at_ms IS NULL;
CREATE TABLE runs (
    id            TEXT PRIMARY KEY NOT NULL,
    integration   TEXT NOT NULL,
    version       INTEGER NOT NULL,
    token_id      TEXT,
    status        TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER NOT NULL,
    duration_ms   REAL NOT NULL,
    error_code    TEXT,
    error         TEXT,
    steps         TEXT NOT NULL,
    request       TEXT,
    response      TEXT
);
CREATE INDEX runs_integration ON runs (integration, id);
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_started ON runs (started_at_ms);
";

/// Migration 2: named credentials. The spec is JSON without secrets; each
/// secret is a row of its own, sealed (XChaCha20-Poly1305, the operator's
/// key, bound to credential and secret name), so the file never holds one in
/// plaintext. `settings` keeps the key's check value.
const V2: &str = "
CREATE TABLE credentials (
    name          TEXT PRIMARY KEY NOT NULL,
    spec          TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_test     TEXT,
    connection    TEXT
);
CREATE TABLE credential_secrets (
    credential    TEXT NOT NULL REFERENCES credentials (name) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (credential, name)
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// Migration 3: the durable queue of async runs, and idempotency keys.
///
/// A row lives from the invoke's acknowledgement until pruning; its lease
/// (`lease_owner`, `lease_until_ms`) says which host executes it. Attempts,
/// the error and the callback state are JSON text, booleans are 0/1, times
/// are milliseconds since the epoch. No CHECK on `status`, as for `runs`.
/// The indexes serve the claim (due runs by status and time), the
/// per-integration listing and counts, lease recovery, and the callback
/// poll (a partial index over pending callbacks only, which the poll's
/// WHERE clause repeats word for word so the planner can use it).
/// `idempotency_keys` has no foreign key: it is pruned by its own age.
const V3: &str = "
CREATE TABLE async_runs (
    id               TEXT PRIMARY KEY NOT NULL,
    integration      TEXT NOT NULL,
    version          INTEGER NOT NULL,
    token_id         TEXT,
    status           TEXT NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    attempts         TEXT NOT NULL DEFAULT '[]',
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    attempt_base     INTEGER NOT NULL DEFAULT 0,
    next_at_ms       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until_ms   INTEGER,
    callback_url     TEXT,
    callback         TEXT,
    idempotency_key  TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    resolved_at_ms   INTEGER,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    finished_at_ms   INTEGER
);
CREATE INDEX async_runs_due ON async_runs (status, next_at_ms);
CREATE INDEX async_runs_integration ON async_runs (integration, status, id);
CREATE INDEX async_runs_lease ON async_runs (status, lease_until_ms);
CREATE INDEX async_runs_callbacks_due ON async_runs (json_extract(callback, '$.next_at_ms'))
    WHERE json_extract(callback, '$.state') = 'pending';
CREATE TABLE idempotency_keys (
    integration   TEXT NOT NULL,
    key           TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (integration, key)
);
CREATE TABLE sync_replies (
    integration   TEXT NOT NULL,
    key           TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    status        INTEGER,
    body          TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (integration, key)
);
";

/// Migration 4: idempotency keys belong to the caller that sent them, and
/// remember a digest of the input they were first sent with.
///
/// Keys are unique per (integration, caller, key): another token's key of
/// the same text is another key. Rows from before keep working: their caller
/// is read from the run they made (`''` when the run is gone or had no
/// token), and their digest is NULL, which matches any input.
const V4: &str = "
CREATE TABLE sync_replies_v4 (
    integration   TEXT NOT NULL,
    caller        TEXT NOT NULL,
    key           TEXT NOT NULL,
    input_sha256  TEXT,
    run_id        TEXT NOT NULL,
    status        INTEGER,
    body          TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (integration, caller, key)
);
INSERT OR IGNORE INTO sync_replies_v4
    SELECT s.integration, COALESCE(r.token_id, ''), s.key, NULL, s.run_id, s.status, s.body, s.created_at_ms
    FROM sync_replies s LEFT JOIN runs r ON r.id = s.run_id;
DROP TABLE sync_replies;
ALTER TABLE sync_replies_v4 RENAME TO sync_replies;
CREATE TABLE idempotency_keys_v4 (
    integration   TEXT NOT NULL,
    caller        TEXT NOT NULL,
    key           TEXT NOT NULL,
    input_sha256  TEXT,
    run_id        TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (integration, caller, key)
);
INSERT OR IGNORE INTO idempotency_keys_v4
    SELECT k.integration, COALESCE(a.token_id, ''), k.key, NULL, k.run_id, k.created_at_ms
    FROM idempotency_keys k LEFT JOIN async_runs a ON a.id = k.run_id;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_v4 RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at_ms);
CREATE INDEX sync_replies_age ON sync_replies (created_at_ms);
";

/// Migration 5: state several hosts on one store must share, which lived in
/// one process's memory before: pending OAuth consent flows and the last
/// connection test of every credential, config-file ones included.
///
/// A consent row holds no secret: the provider's `state` and the browser's
/// cookie nonce are kept only as SHA-256 digests (a lookup and a comparison
/// need no more), and the PKCE verifier is not kept at all but derived from
/// the nonce the browser brings back (`crate::credentials::service`).
/// Test results move out of `credentials.last_test` into a table keyed by
/// credential name alone, since a config-file credential has no
/// `credentials` row to hang them on.
const V5: &str = "
CREATE TABLE oauth_consents (
    state_sha256       TEXT PRIMARY KEY NOT NULL,
    credential         TEXT NOT NULL,
    redirect_url       TEXT NOT NULL,
    browser_sha256     TEXT NOT NULL,
    started_by_id      TEXT NOT NULL,
    started_by_name    TEXT NOT NULL,
    started_at_ms      INTEGER NOT NULL,
    expires_at_ms      INTEGER NOT NULL
);
CREATE INDEX oauth_consents_expiry ON oauth_consents (expires_at_ms);
CREATE TABLE connection_tests (
    credential    TEXT PRIMARY KEY NOT NULL,
    result        TEXT NOT NULL,
    tested_at_ms  INTEGER NOT NULL
);
INSERT INTO connection_tests (credential, result, tested_at_ms)
    SELECT name, last_test, updated_at_ms FROM credentials WHERE last_test IS NOT NULL;
ALTER TABLE credentials DROP COLUMN last_test;
";

/// Every migration, oldest first; entry `i` takes the schema to version `i + 1`.
pub(super) const STEPS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this Plugboard writes: the number of migrations.
pub const SCHEMA_VERSION: u32 = STEPS.len() as u32;

/// The migrations in rusqlite_migration's form.
fn migrations() -> Migrations<'static> {
    Migrations::new(STEPS.iter().map(|sql| M::up(sql)).collect())
}

/// Brings the database `name` up to [`SCHEMA_VERSION`], refusing one written
/// by a newer Plugboard. The pending migrations run in one transaction:
/// an upgrade that fails leaves the database as it was.
pub(super) fn migrate(conn: &mut Connection, name: &str) -> Result<()> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .with_context(|| format!("cannot read the schema version of {name}"))?;
    if found > i64::from(SCHEMA_VERSION) {
        return Err(StoreError::Database(format!(
            "{name} has schema version {found}, but this Plugboard understands schema versions up to \
             {SCHEMA_VERSION}: it was written by a newer Plugboard; run that version or use another data folder"
        )));
    }
    migrations()
        .to_latest(conn)
        .with_context(|| format!("cannot upgrade {name} from schema version {found} to {SCHEMA_VERSION}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DB_FILE, Store};
    use serde_json::json;

    /// The migration list applies cleanly to an empty database.
    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    /// Rows written at schema version 1, the oldest release, in v1's own SQL.
    const V1_ROWS: &str = "
        INSERT INTO integrations VALUES ('legacy', 'active', 2, 1000, 2000);
        INSERT INTO integration_versions VALUES ('legacy', 1, '{\"v\":1}', 1000);
        INSERT INTO integration_versions VALUES ('legacy', 2, '{\"v\":2}', 2000);
        INSERT INTO tokens VALUES ('tok_01', 'ops', 'invoker', '[\"legacy\"]', 'ab12', 1000, NULL, NULL);
        INSERT INTO runs VALUES ('0190c0de-0000-7000-8000-000000000001', 'legacy', 2, 'tok_01',
            'failed', 3000, 3010, 10.5, 'timeout', '{\"code\":\"timeout\"}', '[]', 'in', NULL);
    ";

    /// A database left at every released schema version (built by applying
    /// that many migrations' SQL directly) opens with the current code, is
    /// upgraded to the current version, and keeps its rows.
    #[test]
    fn a_database_at_every_older_version_upgrades_and_keeps_its_rows() {
        for at in 1..=STEPS.len() {
            let dir = tempfile::tempdir().unwrap();
            {
                let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
                conn.execute_batch(STEPS[0]).unwrap();
                conn.execute_batch(V1_ROWS).unwrap();
                for sql in &STEPS[1..at] {
                    conn.execute_batch(sql).unwrap();
                }
                conn.pragma_update(None, "user_version", at as i64).unwrap();
            }
            let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("from version {at}: {e:#}"));
            let version: i64 = store
                .conn()
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, i64::from(SCHEMA_VERSION), "from version {at}");
            let legacy = store.get_integration("legacy").unwrap().unwrap();
            assert_eq!(
                (legacy.version, legacy.definition),
                (2, json!({"v": 2})),
                "from version {at}"
            );
            assert_eq!(
                store.integration_versions("legacy").unwrap().len(),
                2,
                "from version {at}"
            );
            assert_eq!(
                store.list_tokens().unwrap()[0].integrations,
                Some(vec!["legacy".to_string()])
            );
            let run = store
                .get_run("0190c0de-0000-7000-8000-000000000001")
                .unwrap()
                .unwrap();
            assert_eq!(run.error, Some(json!({"code": "timeout"})), "from version {at}");
            let summary = &store.list_runs(&Default::default()).unwrap()[0];
            assert_eq!(
                summary.error_code.as_deref(),
                Some("timeout"),
                "from version {at}"
            );
        }
    }

    /// Idempotency keys stored before keys were scoped to callers keep
    /// answering their caller (read from the run they made) after the
    /// upgrade, and only that caller.
    #[test]
    fn idempotency_keys_keep_their_caller_through_the_upgrade() {
        use crate::store::{ReplyClaim, ScopedKey};
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            for sql in &STEPS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(V1_ROWS).unwrap();
            conn.execute_batch(
                "INSERT INTO sync_replies VALUES ('legacy', 'k', '0190c0de-0000-7000-8000-000000000001', 200, '{}', 5000);
                 INSERT INTO sync_replies VALUES ('legacy', 'gone', 'no-such-run', NULL, NULL, 5000);",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let mine = ScopedKey::new("legacy", Some("tok_01"), "k");
        let claim = store
            .claim_sync_reply(mine, "{}", "new-run", 6000, 60_000)
            .unwrap();
        assert!(matches!(claim, ReplyClaim::Earlier(_)), "{claim:?}");
        let other = ScopedKey::new("legacy", Some("tok_02"), "k");
        let claim = store
            .claim_sync_reply(other, "{}", "new-run", 6000, 60_000)
            .unwrap();
        assert_eq!(claim, ReplyClaim::New);
    }

    /// A database written by a newer Plugboard is refused, naming the file and both versions.
    #[test]
    fn a_newer_schema_version_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let newer = SCHEMA_VERSION + 5;
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", newer).unwrap();
        drop(conn);
        let err = format!("{:#}", Store::open(dir.path()).err().unwrap());
        let file = dir.path().join(DB_FILE).display().to_string();
        assert!(err.contains(&format!("`{file}`")), "{err}");
        assert!(err.contains(&format!("schema version {newer}")), "{err}");
        assert!(err.contains(&format!("up to {SCHEMA_VERSION}")), "{err}");
        assert!(err.contains("newer Plugboard"), "{err}");
    }
}
