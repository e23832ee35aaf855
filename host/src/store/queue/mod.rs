//! The durable queue of async runs.
//!
//! An async run is a row of `async_runs` from the moment its invoke is
//! acknowledged until it is pruned. Its `status` moves
//! `queued -> running -> succeeded | failed | retrying -> running ...`,
//! `queued | retrying -> on_hold -> queued`, and any of the non-final ones
//! `-> cancelled`. A host executing a run holds a *lease* (`lease_owner`,
//! `lease_until_ms`) that it renews while the run lasts; a run whose lease
//! expired (its host died) is put back in the queue with the interrupted
//! attempt recorded, so it is never lost and never run by two hosts at once.
//!
//! Idempotency keys live in `idempotency_keys`, one row per
//! (integration, key), written in the same transaction as the run, so two
//! concurrent requests with one key make one run.

mod callbacks;
mod dead_letters;
mod enqueue;
mod finish;
mod holds;
mod leases;
mod listing;
mod prune;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{StoreError, from_db, json_column, opt_json_column};

/// The statuses of an async run.
pub const ASYNC_STATUSES: [&str; 7] = [
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "on_hold",
    "cancelled",
];

/// A run to enqueue.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Run id (`new_run_id`).
    pub id: String,
    /// Integration name.
    pub integration: String,
    /// Integration version the run will use.
    pub version: u32,
    /// The token that invoked it.
    pub token_id: Option<String>,
    /// The input document (JSON text).
    pub input: String,
    /// Where to deliver the result, when the caller asked.
    pub callback_url: Option<String>,
    /// The caller's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `queued`, or `on_hold` when the integration is inactive.
    pub status: String,
    /// Now.
    pub now_ms: u64,
}

/// What [`Store::enqueue_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new run was stored.
    Created(String),
    /// The idempotency key was already used by the same caller with the
    /// same input: the first run's id.
    Existing(String),
    /// The caller already used the idempotency key with another input: the
    /// first run's id (nothing was stored).
    OtherInput(String),
}

/// An async run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedRun {
    /// Run id.
    pub id: String,
    /// Integration name.
    pub integration: String,
    /// Integration version.
    pub version: u32,
    /// Invoking token.
    pub token_id: Option<String>,
    /// One of [`ASYNC_STATUSES`].
    pub status: String,
    /// Input document.
    pub input: String,
    /// Output document, once succeeded.
    pub output: Option<String>,
    /// The last error (`{"code", "message", "retryable", "step"}`).
    pub error: Option<Value>,
    /// Every attempt so far, oldest first (JSON objects; their shape belongs
    /// to the queue engine).
    pub attempts: Vec<Value>,
    /// Attempts started so far (including interrupted ones).
    pub attempt_count: u32,
    /// Attempts counted against the retry policy start after this many
    /// (raised when an admin retries a failed run by hand).
    pub attempt_base: u32,
    /// Not before this time (queued, retrying).
    pub next_at_ms: u64,
    /// Host holding the lease (running).
    pub lease_owner: Option<String>,
    /// Lease end (running).
    pub lease_until_ms: Option<u64>,
    /// Callback URL.
    pub callback_url: Option<String>,
    /// Callback delivery state (`{"state", "attempts", "last_status", "last_error", "next_at_ms", "delivered_at_ms"}`).
    pub callback: Option<Value>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// Set when a running run was asked to stop.
    pub cancel_requested: bool,
    /// When an admin marked a failed run resolved.
    pub resolved_at_ms: Option<u64>,
    /// Acknowledged at.
    pub created_at_ms: u64,
    /// Last change.
    pub updated_at_ms: u64,
    /// Reached a final status at.
    pub finished_at_ms: Option<u64>,
}

/// How an attempt ended, for [`Store::finish_attempt`].
#[derive(Debug, Clone)]
pub enum AttemptResult {
    /// Done: status `succeeded`.
    Succeeded {
        /// Output document.
        output: String,
    },
    /// Failed but will be tried again at `next_at_ms`: status `retrying`.
    Retry {
        /// The error.
        error: Value,
        /// When.
        next_at_ms: u64,
    },
    /// Failed for good: status `failed` (a dead letter until resolved).
    Failed {
        /// The error.
        error: Value,
    },
    /// Stopped on request: status `cancelled`.
    Cancelled,
}

/// Which async runs [`Store::list_async_runs`] returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AsyncRunFilter {
    /// Only this integration's.
    pub integration: Option<String>,
    /// Only with this status.
    pub status: Option<String>,
    /// Only failed runs not marked resolved (the dead-letter list).
    pub dead_letters: bool,
    /// At most this many (capped at 500; 0 means 100).
    pub limit: usize,
    /// Only runs older than this id (paging).
    pub before_id: Option<String>,
}

/// Counts of an integration's runs by status.
pub type QueueCounts = BTreeMap<String, u64>;

/// The columns of `async_runs` in [`QueuedRun`]'s field order, for [`read_run`].
const COLUMNS: &str = "id, integration, version, token_id, status, input, output, error, attempts,
    attempt_count, attempt_base, next_at_ms, lease_owner, lease_until_ms, callback_url, callback,
    idempotency_key, cancel_requested, resolved_at_ms, created_at_ms, updated_at_ms, finished_at_ms";

/// The statuses a run ends in.
const FINAL: &str = "('succeeded', 'failed', 'cancelled')";

/// Sets the callback of a run that reaches a final status: pending when it
/// has a URL and no delivery state yet (`?3` is [`pending_callback`]).
/// Shared by every statement that ends a run so none forgets it.
const CALLBACK_ON_END: &str =
    "callback = CASE WHEN callback_url IS NOT NULL THEN COALESCE(callback, ?3) ELSE callback END";

/// The delivery state a callback starts in: due at once.
fn pending_callback(now_ms: u64) -> String {
    json!({"state": "pending", "attempts": 0, "next_at_ms": now_ms}).to_string()
}

/// Reads one row selected with [`COLUMNS`].
fn read_run(row: &Row<'_>) -> rusqlite::Result<QueuedRun> {
    Ok(QueuedRun {
        id: row.get(0)?,
        integration: row.get(1)?,
        version: row.get(2)?,
        token_id: row.get(3)?,
        status: row.get(4)?,
        input: row.get(5)?,
        output: row.get(6)?,
        error: opt_json_column(row, 7)?,
        attempts: attempts_column(row, 8)?,
        attempt_count: row.get(9)?,
        attempt_base: row.get(10)?,
        next_at_ms: from_db(row.get(11)?),
        lease_owner: row.get(12)?,
        lease_until_ms: opt_ms(row, 13)?,
        callback_url: row.get(14)?,
        callback: opt_json_column(row, 15)?,
        idempotency_key: row.get(16)?,
        cancel_requested: row.get(17)?,
        resolved_at_ms: opt_ms(row, 18)?,
        created_at_ms: from_db(row.get(19)?),
        updated_at_ms: from_db(row.get(20)?),
        finished_at_ms: opt_ms(row, 21)?,
    })
}

/// Column `idx` as an optional time.
fn opt_ms(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(from_db))
}

/// Column `idx` as the JSON array of attempts.
fn attempts_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<Value>> {
    match json_column(row, idx)? {
        Value::Array(attempts) => Ok(attempts),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            format!("attempts are not a JSON array: {other}").into(),
        )),
    }
}

/// The async run `id`, read on `conn` (a connection or a transaction).
fn find(conn: &Connection, id: &str) -> rusqlite::Result<Option<QueuedRun>> {
    let sql = format!("SELECT {COLUMNS} FROM async_runs WHERE id = ?1");
    conn.query_row(&sql, [id], read_run).optional()
}

/// The error for a missing async run.
fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("async run `{id}` does not exist"))
}
