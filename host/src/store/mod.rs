//! The embedded store: integrations and their versions, API tokens and runs,
//! kept in one SQLite database, `<data_dir>/plugboard.db` (bundled SQLite, WAL).
//!
//! The interface is narrow on purpose so that a PostgreSQL backend can follow
//! behind the same methods: plain synchronous methods on [`Store`] that take
//! and return this module's record types; no SQL, no connection and no
//! rusqlite type crosses it. Every method returns [`Result`], with the one
//! [`StoreError`] whose cases callers branch on (not found, conflict, queue
//! full) and a `Database` case naming what was being done. Callers on async
//! tasks wrap calls in `spawn_blocking` where latency matters.
//!
//! Concurrency. SQLite connections are `Send` but not `Sync`, and a pool buys
//! little when every query is an indexed lookup or a page of at most
//! [`MAX_RUN_PAGE`] rows, so reads and the rare writes (integrations, tokens,
//! retention) share one connection behind a `std::sync::Mutex`. Runs, the one
//! write on the invoke path, never take that mutex: [`RunWriter`] queues them
//! to a background thread with its own connection that commits them in
//! batches, and WAL lets it commit while the mutex connection reads.
//!
//! Files: `migrations` (the versioned schema), `integrations`, `tokens`,
//! `runs` (records, queries, retention) and `writer` (the run writer).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

mod consents;
mod credentials;
mod integrations;
mod migrations;
mod queue;
mod replies;
mod runs;
mod tokens;
mod writer;

pub use consents::PendingConsent;
pub use credentials::{SealedSecrets, StoredCredential};
pub use integrations::{INTEGRATION_STATUSES, IntegrationRecord, IntegrationStatus, IntegrationVersion};
pub use migrations::SCHEMA_VERSION;
pub use queue::{ASYNC_STATUSES, AsyncRunFilter, AttemptResult, Enqueued, NewRun, QueueCounts, QueuedRun};
pub use replies::{ReplyClaim, ScopedKey, SyncReply, input_digest};
pub use runs::{MAX_RUN_PAGE, RunFilter, RunRecord, RunSummary, new_run_id};
pub use tokens::{Role, TokenRecord};
pub use writer::RunWriter;

/// The database file inside the data folder.
pub const DB_FILE: &str = "plugboard.db";

/// How long a connection waits for another one's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed, for callers that branch on it (the HTTP
/// layer maps these to 404, 409 and 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The named integration or token does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is already taken.
    #[error("{0}")]
    Conflict(String),
    /// An integration's async queue holds `max_pending` runs that are not
    /// final: a new run is refused.
    #[error(
        "queue full: integration `{integration}` has {pending} runs waiting or running (at most {max_pending})"
    )]
    QueueFull {
        /// Integration name.
        integration: String,
        /// Runs not final.
        pending: u64,
        /// Its bound.
        max_pending: u64,
    },
    /// The store could not do its work: a database failure, a value the
    /// schema refuses, no random source.
    #[error("{0}")]
    Database(String),
}

/// What store operations return.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// A [`StoreError::Database`] from any failure, naming what was being done.
    fn doing(doing: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
        StoreError::Database(format!("{doing}: {e}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(format!("database error: {e}"))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> StoreError {
        StoreError::Database(format!("a stored document is not valid JSON: {e}"))
    }
}

/// Adds what was being done to a failure, making it a [`StoreError`]:
/// the store's counterpart of `anyhow::Context`, so every store method
/// returns the one error type callers branch on.
pub(crate) trait Context<T> {
    /// The failure, prefixed with `doing`.
    fn context(self, doing: impl std::fmt::Display) -> Result<T>;
    /// The failure, prefixed with what `doing` returns (built only on failure).
    fn with_context<D: std::fmt::Display>(self, doing: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, doing: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| StoreError::doing(doing, e))
    }

    fn with_context<D: std::fmt::Display>(self, doing: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| StoreError::doing(doing(), e))
    }
}

/// Wraps a database failure, naming what was being done.
fn db_error(doing: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Database(format!("{doing}: {e}"))
}

/// Whether `e` is a violated UNIQUE or PRIMARY KEY constraint.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The embedded store. `Send + Sync`: share it behind an `Arc`.
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    writer: RunWriter,
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating the folder and the file when missing)
    /// `<data_dir>/plugboard.db`, brings its schema up to date, and starts
    /// the run writer. A database written by a newer Plugboard is refused.
    ///
    /// The folder and the database files are owner-only (see
    /// [`crate::owner_only`]): created so, and tightened when found open to
    /// other users.
    pub fn open(data_dir: &Path) -> Result<Store> {
        crate::owner_only::create_dir(data_dir)
            .with_context(|| format!("cannot create the data folder `{}`", data_dir.display()))?;
        let path = data_dir.join(DB_FILE);
        // SQLite gives `-wal` and `-shm` the database file's mode when it
        // creates them, so an owner-only database makes owner-only logs.
        crate::owner_only::create_file(&path)
            .with_context(|| format!("cannot create the database `{}`", path.display()))?;
        let mut conn = open_connection(&path)?;
        for suffix in ["-wal", "-shm"] {
            let file = data_dir.join(format!("{DB_FILE}{suffix}"));
            crate::owner_only::tighten(&file, crate::owner_only::FILE_MODE)
                .with_context(|| format!("cannot make `{}` private", file.display()))?;
        }
        migrations::migrate(&mut conn, &format!("database `{}`", path.display()))?;
        let writer_conn = Arc::new(Mutex::new(open_connection(&path)?));
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            writer: RunWriter::start(writer_conn)?,
            path: Some(path),
        })
    }

    /// A store in memory, for tests: nothing survives it. The run writer
    /// shares the one connection, since a second connection would see
    /// another database.
    pub fn open_in_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory().context("cannot open an in-memory database")?;
        configure(&conn, "the in-memory database")?;
        migrations::migrate(&mut conn, "the in-memory database")?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Store {
            writer: RunWriter::start(Arc::clone(&conn))?,
            conn,
            path: None,
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A handle on the run writer; clones share one background thread.
    pub fn run_writer(&self) -> RunWriter {
        self.writer.clone()
    }

    /// The shared connection. A panic while it was held poisons the mutex
    /// but leaves the connection sound (an open transaction rolls back when
    /// dropped), so the poison is ignored.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks a connection, ignoring poison (see [`Store::conn`]).
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens one connection to the database file with the store's settings.
fn open_connection(path: &Path) -> Result<Connection> {
    let name = format!("database `{}`", path.display());
    let conn = Connection::open(path).with_context(|| format!("cannot open {name}"))?;
    configure(&conn, &name)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .with_context(|| format!("cannot switch {name} to WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!(
            "{name} refused WAL journaling (mode `{mode}`)"
        )));
    }
    Ok(conn)
}

/// Applies the per-connection settings every connection needs.
fn configure(conn: &Connection, name: &str) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
        .with_context(|| format!("cannot configure {name}"))
}

/// Milliseconds since the Unix epoch, now.
use crate::time::now_ms;

/// A `u64` for an SQLite integer column (saturating; real values are far below).
fn to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `u64` from an SQLite integer column (negative values, never written, read as 0).
fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A JSON document kept as its text: built by serialising straight into
/// it, written to the store and into API answers as is, and checked (not
/// built into a tree) when read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonText(Box<serde_json::value::RawValue>);

impl JsonText {
    /// `value` serialised.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<JsonText> {
        serde_json::value::to_raw_value(value).map(JsonText)
    }

    /// `text`, if it is one JSON document.
    pub fn parse(text: String) -> serde_json::Result<JsonText> {
        serde_json::value::RawValue::from_string(text).map(JsonText)
    }

    /// The document's text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The document as a tree.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for JsonText {
    /// Equal when the documents are: formatting aside.
    fn eq(&self, other: &JsonText) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

/// Column `idx` as JSON text, checked but not parsed into a tree.
fn json_text_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<JsonText> {
    let text: String = row.get(idx)?;
    JsonText::parse(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

/// Column `idx` as a JSON document stored as text.
fn json_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(idx)?;
    parse_json(idx, &text)
}

/// Column `idx` as an optional JSON document stored as text.
fn opt_json_column(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| parse_json(idx, &t)).transpose()
}

/// Parses the JSON text of column `idx`, failing as a column conversion would.
fn parse_json(idx: usize, text: &str) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

/// `bytes` random bytes in lowercase hex.
fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Database(format!("no random source: {e}")))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The store can be shared between threads.
    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
        check::<RunWriter>();
    }

    /// A file-backed store uses WAL, NORMAL sync, foreign keys and a busy timeout.
    #[test]
    fn open_configures_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("nested/data")).unwrap();
        let conn = store.conn();
        let pragma = |name: &str| -> i64 { conn.pragma_query_value(None, name, |r| r.get(0)).unwrap() };
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma("synchronous"), 1);
        assert_eq!(pragma("foreign_keys"), 1);
        assert_eq!(pragma("busy_timeout"), 5000);
        assert_eq!(pragma("user_version"), SCHEMA_VERSION as i64);
    }

    /// Closing and reopening the same file keeps integrations, tokens and runs.
    #[test]
    fn reopening_the_same_file_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (run_id, secret) = {
            let store = Store::open(dir.path()).unwrap();
            store
                .create_integration("crm-sync", &json!({"a": 1}), IntegrationStatus::Active)
                .unwrap();
            store.update_integration("crm-sync", &json!({"a": 2})).unwrap();
            let (_, secret) = store.create_token("ci", Role::Admin, None).unwrap();
            let run = runs::tests::sample_run("crm-sync", "succeeded", 1_000);
            store.run_writer().record(run.clone()).unwrap();
            (run.id, secret)
        };
        let store = Store::open(dir.path()).unwrap();
        let record = store.get_integration("crm-sync").unwrap().unwrap();
        assert_eq!((record.version, record.definition), (2, json!({"a": 2})));
        assert_eq!(store.integration_versions("crm-sync").unwrap().len(), 2);
        assert_eq!(store.verify_token(&secret).unwrap().unwrap().name, "ci");
        assert!(store.get_run(&run_id).unwrap().is_some());
    }

    /// The data folder and the database files are created owner-only, and
    /// loose ones found on open are tightened.
    #[cfg(unix)]
    #[test]
    fn data_folder_and_database_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let loosen =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let files = ["plugboard.db", "plugboard.db-wal", "plugboard.db-shm"].map(|f| data.join(f));
        {
            let store = Store::open(&data).unwrap();
            store.create_token("ci", Role::Admin, None).unwrap();
            assert_eq!(mode(&data), 0o700);
            for file in &files {
                assert_eq!(mode(file), 0o600, "{}", file.display());
            }
            loosen(&data, 0o755);
            for file in &files {
                loosen(file, 0o644);
            }
            // While this store is open, the next one finds all three files loose.
            let _again = Store::open(&data).unwrap();
            assert_eq!(mode(&data), 0o700);
            for file in &files {
                assert_eq!(mode(file), 0o600, "{} was not tightened", file.display());
            }
        }
    }

    /// A file that is not a database is refused with its path in the message.
    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![7u8; 4096]).unwrap();
        let err = format!("{:#}", Store::open(dir.path()).err().unwrap());
        assert!(err.contains(DB_FILE), "{err}");
    }
}
