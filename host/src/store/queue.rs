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

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use rusqlite::types::{Type, Value as SqlValue};
use rusqlite::{
    Connection, OptionalExtension, Params, Row, Transaction, TransactionBehavior, params, params_from_iter,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    MAX_RUN_PAGE, Store, StoreError, db_error, from_db, is_unique_violation, json_column, opt_json_column,
    to_db,
};

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

/// The statuses that count against an integration's `max_pending`.
const NOT_FINAL: &str = "('queued', 'running', 'retrying', 'on_hold')";

/// The statuses a run ends in.
const FINAL: &str = "('succeeded', 'failed', 'cancelled')";

/// Runs listed when a filter asks for none.
const DEFAULT_PAGE: usize = 100;

/// Rows deleted per statement by [`Store::prune_queue`], so a claim never
/// waits long behind retention for the write lock.
const PRUNE_CHUNK: i64 = 5_000;

/// Sets the callback of a run that reaches a final status: pending when it
/// has a URL and no delivery state yet (`?3` is [`pending_callback`]).
/// Shared by every statement that ends a run so none forgets it.
const CALLBACK_ON_END: &str =
    "callback = CASE WHEN callback_url IS NOT NULL THEN COALESCE(callback, ?3) ELSE callback END";

/// Ends the run `?1` as `cancelled` at `?2`.
fn cancel_sql() -> String {
    format!(
        "UPDATE async_runs SET status = 'cancelled', finished_at_ms = ?2, updated_at_ms = ?2,
            lease_owner = NULL, lease_until_ms = NULL, {CALLBACK_ON_END}
         WHERE id = ?1"
    )
}

/// Takes the lease off the run `?1` at `?2`, appending the attempt `?4`:
/// back to `queued` (due now), or `cancelled` when a cancel was requested,
/// since a cancel-requested run is never claimed again (`?3` as in
/// [`CALLBACK_ON_END`]).
const INTERRUPT: &str = "UPDATE async_runs SET attempts = json_insert(attempts, '$[#]', json(?4)),
        status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
        next_at_ms = CASE WHEN cancel_requested THEN next_at_ms ELSE ?2 END,
        finished_at_ms = CASE WHEN cancel_requested THEN ?2 END,
        callback = CASE WHEN cancel_requested AND callback_url IS NOT NULL
            THEN COALESCE(callback, ?3) ELSE callback END,
        lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ?2
    WHERE id = ?1";

/// The delivery state a callback starts in: due at once.
fn pending_callback(now_ms: u64) -> String {
    json!({"state": "pending", "attempts": 0, "next_at_ms": now_ms}).to_string()
}

/// The runs whose callback is due at `?1`, at most `?2`. The state test
/// repeats the partial index's WHERE word for word, so the planner can use
/// it; `+status` keeps it from preferring a status index, which would read
/// every final run.
fn due_callbacks_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM async_runs
         WHERE json_extract(callback, '$.state') = 'pending'
            AND json_extract(callback, '$.next_at_ms') <= ?1
            AND +status IN {FINAL} AND callback_url IS NOT NULL
         ORDER BY json_extract(callback, '$.next_at_ms'), id LIMIT ?2"
    )
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

/// An earlier run that used `run`'s idempotency key (the same caller's)
/// less than `window_ms` ago, and whether its input was the same.
fn live_key(conn: &Connection, run: &NewRun, window_ms: u64) -> rusqlite::Result<Option<Enqueued>> {
    let Some(key) = &run.idempotency_key else {
        return Ok(None);
    };
    let scoped = super::ScopedKey::new(&run.integration, run.token_id.as_deref(), key);
    let found: Option<(String, Option<String>, i64)> = conn
        .query_row(
            "SELECT run_id, input_sha256, created_at_ms FROM idempotency_keys
             WHERE integration = ?1 AND caller = ?2 AND key = ?3",
            params![scoped.integration, scoped.caller, scoped.key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let live = found.filter(|(_, _, at)| run.now_ms.saturating_sub(from_db(*at)) < window_ms);
    Ok(live.map(|(id, digest, _)| match digest {
        Some(d) if d != super::input_digest(&run.input) => Enqueued::OtherInput(id),
        _ => Enqueued::Existing(id),
    }))
}

/// How many runs of `integration` are not final.
fn count_pending(conn: &Connection, integration: &str) -> rusqlite::Result<u64> {
    let sql = format!("SELECT COUNT(*) FROM async_runs WHERE integration = ?1 AND status IN {NOT_FINAL}");
    conn.query_row(&sql, [integration], |r| r.get::<_, i64>(0))
        .map(from_db)
}

/// Writes a new run and claims its idempotency key (replacing an expired
/// claim: the caller checked [`live_key`] in the same transaction).
fn insert_run(conn: &Connection, run: &NewRun) -> rusqlite::Result<()> {
    let now = to_db(run.now_ms);
    conn.execute(
        "INSERT INTO async_runs (id, integration, version, token_id, status, input, next_at_ms,
             callback_url, idempotency_key, created_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?7, ?7)",
        params![
            run.id,
            run.integration,
            run.version,
            run.token_id,
            run.status,
            run.input,
            now,
            run.callback_url,
            run.idempotency_key
        ],
    )?;
    if let Some(key) = &run.idempotency_key {
        let scoped = super::ScopedKey::new(&run.integration, run.token_id.as_deref(), key);
        conn.execute(
            "INSERT INTO idempotency_keys (integration, caller, key, input_sha256, run_id, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (integration, caller, key) DO UPDATE
                SET run_id = excluded.run_id, input_sha256 = excluded.input_sha256,
                    created_at_ms = excluded.created_at_ms",
            params![
                scoped.integration,
                scoped.caller,
                scoped.key,
                super::input_digest(&run.input),
                run.id,
                now
            ],
        )?;
    }
    Ok(())
}

/// One [`Store::claim_runs`] call: who leases, until when, and the
/// concurrency bounds with the running counts they are checked against.
struct Claim<'a> {
    owner: &'a str,
    now_ms: u64,
    until_ms: u64,
    concurrency: &'a BTreeMap<String, u32>,
    default_concurrency: u32,
    running: BTreeMap<String, u32>,
}

impl Claim<'_> {
    /// Whether `integration` already runs as many runs as it may.
    fn is_full(&self, integration: &str) -> bool {
        let limit = self.concurrency.get(integration).copied();
        let running = self.running.get(integration).copied().unwrap_or(0);
        running >= limit.unwrap_or(self.default_concurrency)
    }

    /// Claims up to `max` due runs on `tx`. Due runs are read a page at a
    /// time, leaving out integrations known to be full; when one fills up
    /// mid-page the page is read again without it, so a backlog of one
    /// saturated integration is never walked row by row.
    fn run(&mut self, tx: &Transaction<'_>, max: usize) -> rusqlite::Result<Vec<QueuedRun>> {
        self.running = running_counts(tx)?;
        let mut full: BTreeSet<String> = self.running.keys().filter(|i| self.is_full(i)).cloned().collect();
        let mut claimed = Vec::new();
        'page: while claimed.len() < max {
            let wanted = max - claimed.len();
            let due = due_runs(tx, self.now_ms, &full, wanted)?;
            let last_page = due.len() < wanted;
            for run in due {
                if self.is_full(&run.integration) {
                    full.insert(run.integration);
                    continue 'page;
                }
                claimed.push(self.lease(tx, run)?);
            }
            if last_page {
                break;
            }
        }
        Ok(claimed)
    }

    /// Leases `run` to the owner.
    fn lease(&mut self, tx: &Transaction<'_>, run: QueuedRun) -> rusqlite::Result<QueuedRun> {
        tx.execute(
            "UPDATE async_runs SET status = 'running', lease_owner = ?2, lease_until_ms = ?3,
                attempt_count = attempt_count + 1, updated_at_ms = ?4
             WHERE id = ?1",
            params![run.id, self.owner, to_db(self.until_ms), to_db(self.now_ms)],
        )?;
        *self.running.entry(run.integration.clone()).or_default() += 1;
        Ok(QueuedRun {
            status: "running".into(),
            lease_owner: Some(self.owner.to_string()),
            lease_until_ms: Some(self.until_ms),
            attempt_count: run.attempt_count + 1,
            updated_at_ms: self.now_ms,
            ..run
        })
    }
}

/// How many runs each integration has `running`.
fn running_counts(conn: &Connection) -> rusqlite::Result<BTreeMap<String, u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT integration, COUNT(*) FROM async_runs WHERE status = 'running' GROUP BY integration",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Up to `max` runs due at `now_ms`, oldest due first, of integrations not in `full`.
fn due_runs(
    conn: &Connection,
    now_ms: u64,
    full: &BTreeSet<String>,
    max: usize,
) -> rusqlite::Result<Vec<QueuedRun>> {
    let skip = vec!["?"; full.len()].join(", ");
    let sql = format!(
        "SELECT {COLUMNS} FROM async_runs
         WHERE status IN ('queued', 'retrying') AND next_at_ms <= ? AND cancel_requested = 0
            AND integration NOT IN ({skip})
         ORDER BY next_at_ms, id LIMIT ?"
    );
    let mut args = vec![SqlValue::Integer(to_db(now_ms))];
    args.extend(full.iter().map(|i| SqlValue::Text(i.clone())));
    args.push(SqlValue::Integer(i64::try_from(max).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), read_run)?;
    rows.collect()
}

/// What [`Store::finish_attempt`] writes: the status and the columns that
/// change with it.
struct Outcome<'a> {
    status: &'static str,
    output: Option<&'a str>,
    error: Option<String>,
    next_at_ms: Option<u64>,
}

impl<'a> Outcome<'a> {
    /// The outcome of `result`. A retry of a run whose cancel was requested
    /// ends it as `cancelled` instead: claims skip cancel-requested runs, so
    /// as `retrying` it would wait forever.
    fn of(result: &'a AttemptResult, cancel_requested: bool) -> Outcome<'a> {
        let (status, output, error, next_at_ms) = match result {
            AttemptResult::Succeeded { output } => ("succeeded", Some(output.as_str()), None, None),
            AttemptResult::Retry { error, .. } if cancel_requested => ("cancelled", None, Some(error), None),
            AttemptResult::Retry { error, next_at_ms } => ("retrying", None, Some(error), Some(*next_at_ms)),
            AttemptResult::Failed { error } => ("failed", None, Some(error), None),
            AttemptResult::Cancelled => ("cancelled", None, None, None),
        };
        let error = error.map(Value::to_string);
        Outcome {
            status,
            output,
            error,
            next_at_ms,
        }
    }
}

/// Applies [`Store::finish_attempt`] on `tx`.
fn finish(
    tx: &Transaction<'_>,
    id: &str,
    owner: &str,
    attempt: &Value,
    result: &AttemptResult,
    now_ms: u64,
) -> rusqlite::Result<bool> {
    let held: Option<bool> = tx
        .query_row(
            "SELECT cancel_requested FROM async_runs WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
            params![id, owner],
            |r| r.get(0),
        )
        .optional()?;
    let Some(cancel_requested) = held else {
        return Ok(false);
    };
    let outcome = Outcome::of(result, cancel_requested);
    let ended = (outcome.status != "retrying").then_some(to_db(now_ms));
    let callback = ended.map(|_| pending_callback(now_ms));
    let sql = format!(
        "UPDATE async_runs SET status = ?4, attempts = json_insert(attempts, '$[#]', json(?5)),
            output = COALESCE(?6, output), error = COALESCE(?7, error),
            next_at_ms = COALESCE(?8, next_at_ms), finished_at_ms = ?9, {CALLBACK_ON_END},
            lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ?2
         WHERE id = ?1"
    );
    tx.execute(
        &sql,
        params![
            id,
            to_db(now_ms),
            callback,
            outcome.status,
            attempt.to_string(),
            outcome.output,
            outcome.error,
            outcome.next_at_ms.map(to_db),
            ended
        ],
    )?;
    Ok(true)
}

/// Takes the lease off every run `select` finds (it selects `id` and
/// `attempt_count`, taking `args`), appending the attempt `interrupted`
/// builds; see [`INTERRUPT`]. Returns their ids.
fn interrupt<P: Params>(
    tx: &Transaction<'_>,
    select: &str,
    args: P,
    now_ms: u64,
    interrupted: &dyn Fn(u32) -> Value,
) -> rusqlite::Result<Vec<String>> {
    let found: Vec<(String, u32)> = {
        let mut stmt = tx.prepare(select)?;
        let rows = stmt.query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let callback = pending_callback(now_ms);
    for (id, attempt) in &found {
        let entry = interrupted(*attempt).to_string();
        tx.execute(INTERRUPT, params![id, to_db(now_ms), callback, entry])?;
    }
    Ok(found.into_iter().map(|(id, _)| id).collect())
}

/// Runs `sql` (taking one id as `?1` and now as `?2`) for each of `ids`
/// in one transaction; returns the ids it changed.
fn update_each(
    conn: &mut Connection,
    sql: &str,
    ids: &[String],
    now_ms: u64,
) -> rusqlite::Result<Vec<String>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut changed = Vec::new();
    for id in ids {
        if tx.execute(sql, params![id, to_db(now_ms)])? > 0 {
            changed.push(id.clone());
        }
    }
    tx.commit()?;
    Ok(changed)
}

/// The listing query for `filter` and its arguments.
fn list_sql(filter: &AsyncRunFilter) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {COLUMNS} FROM async_runs WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(integration) = &filter.integration {
        sql.push_str(" AND integration = ?");
        args.push(SqlValue::Text(integration.clone()));
    }
    if let Some(status) = &filter.status {
        sql.push_str(" AND status = ?");
        args.push(SqlValue::Text(status.clone()));
    }
    if filter.dead_letters {
        sql.push_str(" AND status = 'failed' AND resolved_at_ms IS NULL");
    }
    if let Some(before) = &filter.before_id {
        sql.push_str(" AND id < ?");
        args.push(SqlValue::Text(before.clone()));
    }
    let limit = match filter.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_RUN_PAGE),
    };
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(SqlValue::Integer(limit as i64));
    (sql, args)
}

impl Store {
    /// Stores a new run (and its idempotency key) in one transaction. A key
    /// the same caller already used for this integration within
    /// `key_window_ms` returns the first run instead (or, when that run had
    /// another input, [`Enqueued::OtherInput`]); keys of other callers are
    /// other keys. When the integration already has `max_pending`
    /// runs that are not final (queued, running, retrying, on_hold), the
    /// run is refused with [`StoreError::QueueFull`].
    pub fn enqueue_run(
        &self,
        run: &NewRun,
        max_pending: u64,
        key_window_ms: u64,
    ) -> Result<Enqueued, StoreError> {
        if !matches!(run.status.as_str(), "queued" | "on_hold") {
            return Err(StoreError::Database(format!(
                "a new async run cannot have status `{}`, only queued or on_hold",
                run.status
            )));
        }
        let doing = format!("cannot enqueue a run of integration `{}`", run.integration);
        let mut conn = self.conn();
        // IMMEDIATE: the key check, the count and the insert see one state,
        // so two requests with one key, on any connection, make one run.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        if let Some(first) = live_key(&tx, run, key_window_ms).map_err(|e| db_error(&doing, e))? {
            return Ok(first);
        }
        let pending = count_pending(&tx, &run.integration).map_err(|e| db_error(&doing, e))?;
        if pending >= max_pending {
            return Err(StoreError::QueueFull {
                integration: run.integration.clone(),
                pending,
                max_pending,
            });
        }
        insert_run(&tx, run).map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("async run `{}` already exists", run.id))
            } else {
                db_error(&doing, e)
            }
        })?;
        tx.commit().map_err(|e| db_error(&doing, e))?;
        Ok(Enqueued::Created(run.id.clone()))
    }

    /// Leases up to `max` runs that are due (`queued` or `retrying`,
    /// `next_at_ms <= now_ms`, not cancel-requested), oldest due first,
    /// skipping integrations that already have `concurrency[integration]`
    /// (default `default_concurrency`) runs `running`. Each claimed run
    /// becomes `running` with `lease_owner = owner`, `lease_until_ms =
    /// now_ms + lease_ms` and `attempt_count + 1`, all in one transaction.
    pub fn claim_runs(
        &self,
        owner: &str,
        now_ms: u64,
        lease_ms: u64,
        concurrency: &BTreeMap<String, u32>,
        default_concurrency: u32,
        max: usize,
    ) -> anyhow::Result<Vec<QueuedRun>> {
        let mut claim = Claim {
            owner,
            now_ms,
            until_ms: now_ms.saturating_add(lease_ms),
            concurrency,
            default_concurrency,
            running: BTreeMap::new(),
        };
        let mut conn = self.conn();
        // IMMEDIATE: the running counts and the leases are one snapshot, so
        // two hosts claiming at once neither share a run nor overshoot a bound.
        let claimed = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let claimed = claim.run(&tx, max)?;
                tx.commit().map(|()| claimed)
            })
            .with_context(|| format!("cannot claim async runs for `{owner}`"))?;
        Ok(claimed)
    }

    /// Extends the leases `owner` holds on `ids` to `until_ms`; returns the
    /// ids whose lease it no longer holds (lost: another host took over).
    pub fn renew_leases(&self, owner: &str, ids: &[String], until_ms: u64) -> anyhow::Result<Vec<String>> {
        let mut conn = self.conn();
        let renew = |tx: &Transaction<'_>| -> rusqlite::Result<Vec<String>> {
            let mut stmt = tx.prepare_cached(
                "UPDATE async_runs SET lease_until_ms = ?3
                 WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'",
            )?;
            let mut lost = Vec::new();
            for id in ids {
                if stmt.execute(params![id, owner, to_db(until_ms)])? == 0 {
                    lost.push(id.clone());
                }
            }
            Ok(lost)
        };
        let lost = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let lost = renew(&tx)?;
                tx.commit().map(|()| lost)
            })
            .with_context(|| format!("cannot renew the leases of `{owner}`"))?;
        Ok(lost)
    }

    /// Records the end of the attempt `owner` leased: appends `attempt` to
    /// the attempts list and applies `result`, clearing the lease. Returns
    /// `false` (changing nothing) when `owner` no longer holds the lease.
    pub fn finish_attempt(
        &self,
        id: &str,
        owner: &str,
        attempt: &Value,
        result: &AttemptResult,
        now_ms: u64,
    ) -> anyhow::Result<bool> {
        let mut conn = self.conn();
        let done = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let done = finish(&tx, id, owner, attempt, result, now_ms)?;
                tx.commit().map(|()| done)
            })
            .with_context(|| format!("cannot record the attempt of async run `{id}`"))?;
        Ok(done)
    }

    /// Puts back every `running` run whose lease ended before `now_ms` (its
    /// host stopped): status `queued`, due now, with `interrupted` (an
    /// attempt entry the caller builds, given the attempt number) appended.
    /// Returns their ids.
    pub fn recover_expired_leases(
        &self,
        now_ms: u64,
        interrupted: impl Fn(u32) -> Value,
    ) -> anyhow::Result<Vec<String>> {
        let select = "SELECT id, attempt_count FROM async_runs
            WHERE status = 'running' AND lease_until_ms < ?1 ORDER BY id";
        let mut conn = self.conn();
        let ids = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let ids = interrupt(&tx, select, [to_db(now_ms)], now_ms, &interrupted)?;
                tx.commit().map(|()| ids)
            })
            .context("cannot recover async runs whose lease expired")?;
        Ok(ids)
    }

    /// Releases every lease `owner` holds (graceful shutdown): the runs go
    /// back to `queued`, due now, with `interrupted` appended.
    pub fn release_leases(
        &self,
        owner: &str,
        now_ms: u64,
        interrupted: impl Fn(u32) -> Value,
    ) -> anyhow::Result<usize> {
        let select = "SELECT id, attempt_count FROM async_runs
            WHERE status = 'running' AND lease_owner = ?1 ORDER BY id";
        let mut conn = self.conn();
        let ids = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let ids = interrupt(&tx, select, [owner], now_ms, &interrupted)?;
                tx.commit().map(|()| ids)
            })
            .with_context(|| format!("cannot release the leases of `{owner}`"))?;
        Ok(ids.len())
    }

    /// Cancels a run: a queued, retrying or on-hold run becomes `cancelled`
    /// at once; a running one gets `cancel_requested` (its host stops it).
    /// Returns the run as it is now; [`StoreError::NotFound`] when unknown,
    /// [`StoreError::Conflict`] when already final.
    pub fn cancel_run(&self, id: &str, now_ms: u64) -> Result<QueuedRun, StoreError> {
        let doing = format!("cannot cancel async run `{id}`");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        let run = find(&tx, id)
            .map_err(|e| db_error(&doing, e))?
            .ok_or_else(|| not_found(id))?;
        let now = to_db(now_ms);
        let changed = match run.status.as_str() {
            "queued" | "retrying" | "on_hold" => {
                tx.execute(&cancel_sql(), params![id, now, pending_callback(now_ms)])
            }
            "running" => tx.execute(
                "UPDATE async_runs SET cancel_requested = 1, updated_at_ms = ?2 WHERE id = ?1",
                params![id, now],
            ),
            status => {
                return Err(StoreError::Conflict(format!(
                    "async run `{id}` is already `{status}`"
                )));
            }
        };
        changed.map_err(|e| db_error(&doing, e))?;
        let run = find(&tx, id)
            .map_err(|e| db_error(&doing, e))?
            .ok_or_else(|| not_found(id))?;
        tx.commit().map_err(|e| db_error(&doing, e))?;
        Ok(run)
    }

    /// Puts an integration's `queued` and `retrying` runs `on_hold`;
    /// returns how many.
    pub fn hold_runs(&self, integration: &str, now_ms: u64) -> anyhow::Result<usize> {
        let held = self
            .conn()
            .execute(
                "UPDATE async_runs SET status = 'on_hold', updated_at_ms = ?2
                 WHERE integration = ?1 AND status IN ('queued', 'retrying')",
                params![integration, to_db(now_ms)],
            )
            .with_context(|| format!("cannot hold the async runs of integration `{integration}`"))?;
        Ok(held)
    }

    /// Releases an integration's `on_hold` runs back to `queued`, oldest
    /// first, spreading their due times `interval_ms` apart from `now_ms`
    /// so a backlog does not flood the external system. Returns how many.
    pub fn release_runs(&self, integration: &str, now_ms: u64, interval_ms: u64) -> anyhow::Result<usize> {
        let release = |tx: &Transaction<'_>| -> rusqlite::Result<usize> {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM async_runs WHERE integration = ?1 AND status = 'on_hold'
                     ORDER BY created_at_ms, id",
                )?;
                stmt.query_map([integration], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for (i, id) in ids.iter().enumerate() {
                let due = now_ms.saturating_add(interval_ms.saturating_mul(i as u64));
                tx.execute(
                    "UPDATE async_runs SET status = 'queued', next_at_ms = ?2, updated_at_ms = ?3 WHERE id = ?1",
                    params![id, to_db(due), to_db(now_ms)],
                )?;
            }
            Ok(ids.len())
        };
        let mut conn = self.conn();
        let released = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let released = release(&tx)?;
                tx.commit().map(|()| released)
            })
            .with_context(|| format!("cannot release the async runs of integration `{integration}`"))?;
        Ok(released)
    }

    /// Sends `failed` runs back to the queue (due now, `attempt_base` set to
    /// their attempt count so the retry policy starts afresh, `resolved_at_ms`
    /// cleared, a `{"manual_retry_at_ms"}` entry appended to attempts).
    /// Runs that are not `failed` are skipped. Returns the ids re-queued.
    pub fn retry_failed_runs(&self, ids: &[String], now_ms: u64) -> anyhow::Result<Vec<String>> {
        // The callback state is cleared too: the run will end again, and the
        // caller should hear how (the failure it may have heard of is moot).
        let sql = "UPDATE async_runs SET status = 'queued', next_at_ms = ?2, attempt_base = attempt_count,
                resolved_at_ms = NULL, finished_at_ms = NULL, callback = NULL, updated_at_ms = ?2,
                attempts = json_insert(attempts, '$[#]', json_object('manual_retry_at_ms', ?2))
             WHERE id = ?1 AND status = 'failed'";
        let retried =
            update_each(&mut self.conn(), sql, ids, now_ms).context("cannot retry failed async runs")?;
        Ok(retried)
    }

    /// Marks `failed` runs resolved (they leave the dead-letter list);
    /// returns the ids changed.
    pub fn resolve_failed_runs(&self, ids: &[String], now_ms: u64) -> anyhow::Result<Vec<String>> {
        let sql = "UPDATE async_runs SET resolved_at_ms = ?2, updated_at_ms = ?2
             WHERE id = ?1 AND status = 'failed' AND resolved_at_ms IS NULL";
        let resolved = update_each(&mut self.conn(), sql, ids, now_ms)
            .context("cannot mark failed async runs resolved")?;
        Ok(resolved)
    }

    /// Ids of an integration's dead letters (failed, not resolved), newest
    /// first, at most 500; only those whose error `code` is `error_code`
    /// when given.
    pub fn dead_letter_ids(
        &self,
        integration: &str,
        error_code: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let filter = AsyncRunFilter {
            integration: Some(integration.to_string()),
            dead_letters: true,
            limit: 500,
            ..AsyncRunFilter::default()
        };
        Ok(self
            .list_async_runs(&filter)?
            .into_iter()
            .filter(|r| {
                error_code.is_none_or(|c| r.error.as_ref().and_then(|e| e["code"].as_str()) == Some(c))
            })
            .map(|r| r.id)
            .collect())
    }

    /// One async run.
    pub fn get_async_run(&self, id: &str) -> anyhow::Result<Option<QueuedRun>> {
        let run = find(&self.conn(), id).with_context(|| format!("cannot read async run `{id}`"))?;
        Ok(run)
    }

    /// Async runs matching `filter`, newest first.
    pub fn list_async_runs(&self, filter: &AsyncRunFilter) -> anyhow::Result<Vec<QueuedRun>> {
        let (sql, args) = list_sql(filter);
        let conn = self.conn();
        let runs = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_map(params_from_iter(args), read_run)?.collect())
            .context("cannot list async runs")?;
        Ok(runs)
    }

    /// Records the callback delivery state of a run.
    pub fn set_callback_state(&self, id: &str, state: &Value) -> anyhow::Result<()> {
        self.conn()
            .execute(
                "UPDATE async_runs SET callback = ?2 WHERE id = ?1",
                params![id, state.to_string()],
            )
            .with_context(|| format!("cannot record the callback state of async run `{id}`"))?;
        Ok(())
    }

    /// Final runs whose callback is still due (`callback.state == "pending"`
    /// and `callback.next_at_ms <= now_ms`), at most `max`.
    pub fn due_callbacks(&self, now_ms: u64, max: usize) -> anyhow::Result<Vec<QueuedRun>> {
        let sql = due_callbacks_sql();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let conn = self.conn();
        let runs = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_map(params![to_db(now_ms), max], read_run)?.collect())
            .context("cannot read the async runs whose callback is due")?;
        Ok(runs)
    }

    /// Counts of an integration's runs by status.
    pub fn queue_counts(&self, integration: &str) -> anyhow::Result<QueueCounts> {
        // Every status is present, zero or not, so callers see one shape.
        let mut counts: QueueCounts = ASYNC_STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
        let conn = self.conn();
        let found: Vec<(String, i64)> = conn
            .prepare_cached("SELECT status, COUNT(*) FROM async_runs WHERE integration = ?1 GROUP BY status")
            .and_then(|mut stmt| {
                stmt.query_map([integration], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .with_context(|| format!("cannot count the async runs of integration `{integration}`"))?;
        counts.extend(found.into_iter().map(|(status, n)| (status, from_db(n))));
        Ok(counts)
    }

    /// Deletes idempotency keys older than `older_than_ms`, and final async
    /// runs finished before `runs_older_than_ms`; returns (keys, runs).
    pub fn prune_queue(&self, older_than_ms: u64, runs_older_than_ms: u64) -> anyhow::Result<(usize, usize)> {
        let keys = self
            .delete_in_chunks(
                "DELETE FROM idempotency_keys WHERE rowid IN
                    (SELECT rowid FROM idempotency_keys WHERE created_at_ms < ?1 LIMIT ?2)",
                older_than_ms,
            )
            .context("cannot prune idempotency keys")?;
        let runs_sql = format!(
            "DELETE FROM async_runs WHERE rowid IN
                (SELECT rowid FROM async_runs WHERE status IN {FINAL} AND finished_at_ms < ?1 LIMIT ?2)"
        );
        let runs = self
            .delete_in_chunks(&runs_sql, runs_older_than_ms)
            .context("cannot prune finished async runs")?;
        Ok((keys, runs))
    }

    /// Runs `sql` (taking the cutoff and a chunk size) until it deletes
    /// fewer rows than a chunk, releasing the connection in between so
    /// claims and reads get their turn.
    fn delete_in_chunks(&self, sql: &str, cutoff: u64) -> rusqlite::Result<usize> {
        let mut total = 0;
        loop {
            let done = self.conn().execute(sql, params![to_db(cutoff), PRUNE_CHUNK])?;
            total += done;
            if (done as i64) < PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::new_run_id;
    use std::sync::{Arc, Barrier};

    /// A window long enough that no key expires in a test.
    const WINDOW: u64 = 60_000;

    /// A run of `integration` enqueued at `now_ms`, with an idempotency key.
    fn new_run(integration: &str, key: Option<&str>, now_ms: u64) -> NewRun {
        NewRun {
            id: new_run_id(),
            integration: integration.to_string(),
            version: 3,
            token_id: Some("tok_01".to_string()),
            input: r#"{"order":42}"#.to_string(),
            callback_url: None,
            idempotency_key: key.map(str::to_string),
            status: "queued".to_string(),
            now_ms,
        }
    }

    /// Enqueues `run` on `store` with no bound, returning its id.
    fn enqueue(store: &Store, run: &NewRun) -> String {
        match store.enqueue_run(run, 1_000, WINDOW).unwrap() {
            Enqueued::Created(id) => id,
            other => panic!("expected a new run, got {other:?}"),
        }
    }

    /// Claims every due run for `owner` at `now_ms` with a 1 s lease and no concurrency bound.
    fn claim(store: &Store, owner: &str, now_ms: u64) -> Vec<String> {
        let runs = store
            .claim_runs(owner, now_ms, 1_000, &BTreeMap::new(), 100, 100)
            .unwrap();
        runs.into_iter().map(|r| r.id).collect()
    }

    /// The run `id`, which must exist.
    fn get(store: &Store, id: &str) -> QueuedRun {
        store.get_async_run(id).unwrap().unwrap()
    }

    /// An attempt entry.
    fn attempt(n: u32) -> Value {
        json!({"attempt": n})
    }

    /// Ids of a listing.
    fn ids(runs: Vec<QueuedRun>) -> Vec<String> {
        runs.into_iter().map(|r| r.id).collect()
    }

    /// A file-backed store and `n` more stores on the same file (each its own connection).
    fn file_stores(n: usize) -> (tempfile::TempDir, Vec<Arc<Store>>) {
        let dir = tempfile::tempdir().unwrap();
        let stores = (0..n)
            .map(|_| Arc::new(Store::open(dir.path()).unwrap()))
            .collect();
        (dir, stores)
    }

    /// An enqueued run reads back with every field, fresh; an unknown id reads as nothing.
    #[test]
    fn an_enqueued_run_reads_back_whole() {
        let store = Store::open_in_memory().unwrap();
        let mut run = new_run("crm", Some("k1"), 1_000);
        run.callback_url = Some("https://example.test/done".into());
        let id = enqueue(&store, &run);
        let expected = QueuedRun {
            id: run.id.clone(),
            integration: "crm".into(),
            version: 3,
            token_id: Some("tok_01".into()),
            status: "queued".into(),
            input: r#"{"order":42}"#.into(),
            output: None,
            error: None,
            attempts: vec![],
            attempt_count: 0,
            attempt_base: 0,
            next_at_ms: 1_000,
            lease_owner: None,
            lease_until_ms: None,
            callback_url: Some("https://example.test/done".into()),
            callback: None,
            idempotency_key: Some("k1".into()),
            cancel_requested: false,
            resolved_at_ms: None,
            created_at_ms: 1_000,
            updated_at_ms: 1_000,
            finished_at_ms: None,
        };
        assert_eq!(get(&store, &id), expected);
        assert_eq!(store.get_async_run("nope").unwrap(), None);
        let held = NewRun {
            status: "on_hold".into(),
            ..new_run("crm", None, 1_000)
        };
        assert_eq!(get(&store, &enqueue(&store, &held)).status, "on_hold");
        let bad = NewRun {
            status: "running".into(),
            ..new_run("crm", None, 1_000)
        };
        let err = store.enqueue_run(&bad, 10, WINDOW).unwrap_err();
        assert!(err.to_string().contains("`running`"), "{err}");
    }

    /// A key reused within the window returns the first run; per integration;
    /// an expired key is taken over by the new run.
    #[test]
    fn a_reused_key_returns_the_first_run_until_it_expires() {
        let store = Store::open_in_memory().unwrap();
        let first = enqueue(&store, &new_run("crm", Some("k"), 1_000));
        let again = store
            .enqueue_run(&new_run("crm", Some("k"), 1_000 + WINDOW - 1), 10, WINDOW)
            .unwrap();
        assert_eq!(again, Enqueued::Existing(first.clone()));
        enqueue(&store, &new_run("erp", Some("k"), 2_000));
        enqueue(&store, &new_run("crm", Some("other"), 2_000));
        enqueue(&store, &new_run("crm", None, 2_000));
        let late = enqueue(&store, &new_run("crm", Some("k"), 1_000 + WINDOW));
        assert_ne!(late, first);
        let after = store
            .enqueue_run(&new_run("crm", Some("k"), 2_000 + WINDOW), 10, WINDOW)
            .unwrap();
        assert_eq!(after, Enqueued::Existing(late));
        assert_eq!(store.queue_counts("crm").unwrap()["queued"], 4);
    }

    /// A key belongs to its caller: another token's key of the same text
    /// makes its own run; the same caller reusing it with another input is
    /// refused and stores nothing.
    #[test]
    fn keys_are_scoped_to_the_caller_and_bound_to_the_input() {
        let store = Store::open_in_memory().unwrap();
        let mine = NewRun {
            token_id: Some("tok_a".into()),
            ..new_run("crm", Some("k"), 1_000)
        };
        let first = enqueue(&store, &mine);
        let theirs = NewRun {
            id: new_run_id(),
            token_id: Some("tok_b".into()),
            ..mine.clone()
        };
        let other = enqueue(&store, &theirs);
        assert_ne!(other, first);
        let repeat = NewRun {
            id: new_run_id(),
            ..mine.clone()
        };
        assert_eq!(
            store.enqueue_run(&repeat, 10, WINDOW).unwrap(),
            Enqueued::Existing(first.clone())
        );
        let changed = NewRun {
            id: new_run_id(),
            input: "{\"changed\":true}".into(),
            ..mine.clone()
        };
        assert_eq!(
            store.enqueue_run(&changed, 10, WINDOW).unwrap(),
            Enqueued::OtherInput(first)
        );
        assert_eq!(store.queue_counts("crm").unwrap()["queued"], 2);
    }

    /// Eight connections enqueueing one key at once make exactly one run.
    #[test]
    fn concurrent_enqueues_with_one_key_make_one_run() {
        let (_dir, stores) = file_stores(8);
        let barrier = Arc::new(Barrier::new(stores.len()));
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    store
                        .enqueue_run(&new_run("crm", Some("same"), 1_000), 100, WINDOW)
                        .unwrap()
                })
            })
            .collect();
        let results: Vec<Enqueued> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let created: Vec<&String> = results
            .iter()
            .filter_map(|r| match r {
                Enqueued::Created(id) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "{results:?}");
        for result in &results {
            if let Enqueued::Existing(id) = result {
                assert_eq!(id, created[0]);
            }
        }
        assert_eq!(
            ids(stores[0].list_async_runs(&AsyncRunFilter::default()).unwrap()),
            [created[0].clone()]
        );
    }

    /// At `max_pending` runs not final the queue refuses more, naming the integration; a
    /// final run frees a place, other integrations are unaffected, and a reused key still answers.
    #[test]
    fn a_full_queue_refuses_new_runs() {
        let store = Store::open_in_memory().unwrap();
        let a = store
            .enqueue_run(&new_run("crm", Some("a"), 1), 2, WINDOW)
            .unwrap();
        store.enqueue_run(&new_run("crm", None, 2), 2, WINDOW).unwrap();
        assert_eq!(claim(&store, "h1", 10).len(), 2);
        let err = store
            .enqueue_run(&new_run("crm", None, 20), 2, WINDOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::QueueFull {
                    pending: 2,
                    max_pending: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("`crm`"), "{err}");
        let repeat = store
            .enqueue_run(&new_run("crm", Some("a"), 20), 2, WINDOW)
            .unwrap();
        let Enqueued::Created(id) = a else { unreachable!() };
        assert_eq!(repeat, Enqueued::Existing(id.clone()));
        store.enqueue_run(&new_run("erp", None, 20), 2, WINDOW).unwrap();

        let done = AttemptResult::Succeeded { output: "{}".into() };
        assert!(store.finish_attempt(&id, "h1", &attempt(1), &done, 30).unwrap());
        store.enqueue_run(&new_run("crm", None, 40), 2, WINDOW).unwrap();
    }

    /// Claims take due runs oldest due first and lease them; runs not yet due stay.
    #[test]
    fn claims_take_due_runs_oldest_first() {
        let store = Store::open_in_memory().unwrap();
        let later = enqueue(&store, &new_run("crm", None, 300));
        let first = enqueue(&store, &new_run("crm", None, 100));
        let future = enqueue(&store, &new_run("erp", None, 5_000));
        let second = enqueue(&store, &new_run("erp", None, 200));
        let claimed = store
            .claim_runs("h1", 1_000, 30_000, &BTreeMap::new(), 10, 2)
            .unwrap();
        assert_eq!(ids(claimed.clone()), [first.clone(), second]);
        assert_eq!(claimed[0], get(&store, &first));
        assert_eq!(claimed[0].status, "running");
        assert_eq!(claimed[0].lease_owner.as_deref(), Some("h1"));
        assert_eq!(
            (claimed[0].lease_until_ms, claimed[0].attempt_count),
            (Some(31_000), 1)
        );
        assert_eq!(claimed[0].updated_at_ms, 1_000);
        assert_eq!(claim(&store, "h1", 1_000), [later]);
        assert!(claim(&store, "h1", 4_999).is_empty());
        assert_eq!(claim(&store, "h1", 5_000), [future]);
    }

    /// No integration ever has more runs running than its bound (or the default).
    #[test]
    fn claims_respect_each_integrations_concurrency() {
        let store = Store::open_in_memory().unwrap();
        let crm: Vec<_> = (0..4)
            .map(|i| enqueue(&store, &new_run("crm", None, i)))
            .collect();
        (0..3).for_each(|i| drop(enqueue(&store, &new_run("erp", None, 10 + i))));
        enqueue(&store, &new_run("paused", None, 0));
        let bounds = BTreeMap::from([("crm".to_string(), 2), ("paused".to_string(), 0)]);
        let claim_with = |now| {
            let runs = store.claim_runs("h1", now, 1_000, &bounds, 1, 10).unwrap();
            runs.into_iter().map(|r| r.integration).collect::<Vec<_>>()
        };
        assert_eq!(claim_with(100), ["crm", "crm", "erp"]);
        assert!(claim_with(100).is_empty());
        let done = AttemptResult::Succeeded { output: "{}".into() };
        assert!(
            store
                .finish_attempt(&crm[0], "h1", &attempt(1), &done, 200)
                .unwrap()
        );
        assert_eq!(claim_with(300), ["crm"]);
        assert_eq!(store.queue_counts("crm").unwrap()["running"], 2);
        assert_eq!(get(&store, &crm[3]).status, "queued");
        assert_eq!(store.queue_counts("paused").unwrap()["queued"], 1);
    }

    /// Two claims in a row never hand out one run twice.
    #[test]
    fn sequential_claims_never_share_a_run() {
        let store = Store::open_in_memory().unwrap();
        let all: BTreeSet<String> = (0..6)
            .map(|i| enqueue(&store, &new_run("crm", None, i)))
            .collect();
        let one = store
            .claim_runs("h1", 100, 1_000, &BTreeMap::new(), 100, 4)
            .unwrap();
        let two = store
            .claim_runs("h2", 100, 1_000, &BTreeMap::new(), 100, 4)
            .unwrap();
        assert_eq!((one.len(), two.len()), (4, 2));
        let seen: BTreeSet<String> = ids(one).into_iter().chain(ids(two)).collect();
        assert_eq!(seen, all);
    }

    /// Two hosts (two connections) claiming at once never share a run, and
    /// together never exceed an integration's bound.
    #[test]
    fn concurrent_claims_never_share_a_run() {
        let (_dir, stores) = file_stores(2);
        let mut all = BTreeSet::new();
        for i in 0..40 {
            let integration = ["crm", "erp", "hr", "ops"][i % 4];
            all.insert(enqueue(&stores[0], &new_run(integration, None, i as u64)));
        }
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let owner = format!("h{n}");
                    let mut got = Vec::new();
                    loop {
                        let runs = store
                            .claim_runs(&owner, 100, 1_000, &BTreeMap::new(), 6, 3)
                            .unwrap();
                        if runs.is_empty() {
                            return got;
                        }
                        got.extend(ids(runs));
                    }
                })
            })
            .collect();
        let claimed: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let unique: BTreeSet<String> = claimed.iter().cloned().collect();
        assert_eq!(unique.len(), claimed.len(), "a run was claimed twice");
        assert_eq!(unique.len(), 24, "four integrations, six each");
        assert!(unique.is_subset(&all));
        for integration in ["crm", "erp", "hr", "ops"] {
            assert_eq!(stores[1].queue_counts(integration).unwrap()["running"], 6);
        }
    }

    /// The holder extends its lease; a lease another host holds, or none holds, is reported lost.
    #[test]
    fn leases_renew_for_their_holder_only() {
        let store = Store::open_in_memory().unwrap();
        let a = enqueue(&store, &new_run("crm", None, 0));
        let b = enqueue(&store, &new_run("crm", None, 0));
        let queued = enqueue(&store, &new_run("crm", None, 50));
        let claimed = store
            .claim_runs("h1", 10, 1_000, &BTreeMap::new(), 100, 2)
            .unwrap();
        assert_eq!(ids(claimed), [a.clone(), b.clone()]);
        let lost = store.renew_leases("h1", &[a.clone(), b.clone()], 9_000).unwrap();
        assert!(lost.is_empty(), "{lost:?}");
        assert_eq!(get(&store, &a).lease_until_ms, Some(9_000));
        assert_eq!(
            store
                .renew_leases("h2", std::slice::from_ref(&a), 20_000)
                .unwrap(),
            vec![a.clone()]
        );
        assert_eq!(get(&store, &a).lease_until_ms, Some(9_000));
        store.recover_expired_leases(10_000, attempt).unwrap();
        assert_eq!(
            claim(&store, "h2", 10_000),
            [queued.clone(), a.clone(), b.clone()]
        );
        let lost = store
            .renew_leases("h1", &[a.clone(), b.clone(), queued], 30_000)
            .unwrap();
        assert_eq!(lost.len(), 3);
        assert_eq!(
            store.renew_leases("h1", &["ghost".to_string()], 1).unwrap(),
            ["ghost"]
        );
    }

    /// Each attempt result sets its status and columns, appends the attempt and clears the lease.
    #[test]
    fn finishing_applies_each_result() {
        let store = Store::open_in_memory().unwrap();
        let ids: [String; 4] = std::array::from_fn(|i| enqueue(&store, &new_run("crm", None, i as u64)));
        assert_eq!(claim(&store, "h1", 10).len(), 4);
        let error = json!({"code": "upstream", "message": "502", "retryable": true, "step": "post"});
        let results = [
            AttemptResult::Succeeded {
                output: r#"{"ok":1}"#.into(),
            },
            AttemptResult::Retry {
                error: error.clone(),
                next_at_ms: 500,
            },
            AttemptResult::Failed { error: error.clone() },
            AttemptResult::Cancelled,
        ];
        for (id, result) in ids.iter().zip(&results) {
            assert!(store.finish_attempt(id, "h1", &attempt(1), result, 100).unwrap());
        }
        let [ok, retry, failed, cancelled] = ids.each_ref().map(|id| get(&store, id));
        assert_eq!(
            (ok.status.as_str(), ok.output.as_deref()),
            ("succeeded", Some(r#"{"ok":1}"#))
        );
        assert_eq!((retry.status.as_str(), retry.next_at_ms), ("retrying", 500));
        assert_eq!((retry.error.as_ref(), retry.finished_at_ms), (Some(&error), None));
        assert_eq!(
            (failed.status.as_str(), failed.error.as_ref()),
            ("failed", Some(&error))
        );
        assert_eq!(
            (cancelled.status.as_str(), cancelled.error.as_ref()),
            ("cancelled", None)
        );
        for run in [&ok, &failed, &cancelled] {
            assert_eq!(run.finished_at_ms, Some(100), "{}", run.status);
        }
        for run in [&ok, &retry, &failed, &cancelled] {
            assert_eq!((run.lease_owner.as_deref(), run.lease_until_ms), (None, None));
            assert_eq!(
                (run.attempts.as_slice(), run.updated_at_ms),
                ([attempt(1)].as_slice(), 100)
            );
            assert_eq!(run.callback, None, "no callback URL, no callback");
        }
        assert!(claim(&store, "h1", 499).is_empty());
        assert_eq!(claim(&store, "h1", 500), vec![retry.id.clone()]);
        assert_eq!(get(&store, &retry.id).attempt_count, 2);
    }

    /// A host that lost its lease cannot record an attempt: nothing changes.
    #[test]
    fn finishing_without_the_lease_changes_nothing() {
        let store = Store::open_in_memory().unwrap();
        let id = enqueue(&store, &new_run("crm", None, 0));
        let done = AttemptResult::Succeeded { output: "{}".into() };
        assert!(
            !store.finish_attempt(&id, "h1", &attempt(1), &done, 5).unwrap(),
            "not running"
        );
        claim(&store, "h1", 10);
        let before = get(&store, &id);
        assert!(!store.finish_attempt(&id, "h2", &attempt(1), &done, 20).unwrap());
        assert_eq!(get(&store, &id), before);
        assert!(store.finish_attempt(&id, "h1", &attempt(1), &done, 20).unwrap());
        let after = get(&store, &id);
        assert!(!store.finish_attempt(&id, "h1", &attempt(2), &done, 30).unwrap());
        assert_eq!(get(&store, &id), after);
        assert!(
            !store
                .finish_attempt("ghost", "h1", &attempt(1), &done, 30)
                .unwrap()
        );
    }

    /// A final run with a callback URL gets a pending callback, which is due
    /// until its state changes; retries and runs without a URL get none.
    #[test]
    fn final_runs_with_a_url_have_a_due_callback() {
        let store = Store::open_in_memory().unwrap();
        let with_url = |now| NewRun {
            callback_url: Some("https://example.test/cb".into()),
            ..new_run("crm", None, now)
        };
        let (ok, retried, plain) = (
            enqueue(&store, &with_url(0)),
            enqueue(&store, &with_url(1)),
            enqueue(&store, &new_run("crm", None, 2)),
        );
        claim(&store, "h1", 10);
        let done = AttemptResult::Succeeded { output: "{}".into() };
        let retry = AttemptResult::Retry {
            error: json!({"code": "x"}),
            next_at_ms: 99,
        };
        store.finish_attempt(&ok, "h1", &attempt(1), &done, 100).unwrap();
        store
            .finish_attempt(&retried, "h1", &attempt(1), &retry, 100)
            .unwrap();
        store
            .finish_attempt(&plain, "h1", &attempt(1), &done, 100)
            .unwrap();
        let pending = json!({"state": "pending", "attempts": 0, "next_at_ms": 100});
        assert_eq!(get(&store, &ok).callback, Some(pending));
        assert_eq!(
            (get(&store, &retried).callback, get(&store, &plain).callback),
            (None, None)
        );
        assert!(store.due_callbacks(99, 10).unwrap().is_empty());
        assert_eq!(ids(store.due_callbacks(100, 10).unwrap()), vec![ok.clone()]);
        assert!(store.due_callbacks(100, 0).unwrap().is_empty());
        let later = json!({"state": "pending", "attempts": 1, "last_status": 503, "next_at_ms": 200});
        store.set_callback_state(&ok, &later).unwrap();
        assert_eq!(get(&store, &ok).callback, Some(later));
        assert!(store.due_callbacks(199, 10).unwrap().is_empty());
        assert_eq!(store.due_callbacks(200, 10).unwrap().len(), 1);
        let delivered = json!({"state": "delivered", "attempts": 2, "delivered_at_ms": 210});
        store.set_callback_state(&ok, &delivered).unwrap();
        assert!(store.due_callbacks(10_000, 10).unwrap().is_empty());
    }

    /// The callback poll uses the partial index rather than reading every run.
    #[test]
    fn the_callback_poll_uses_its_index() {
        let store = Store::open_in_memory().unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", due_callbacks_sql());
        let conn = store.conn();
        let mut stmt = conn.prepare(&sql).unwrap();
        let plan: Vec<String> = stmt
            .query_map(params![0, 10], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("async_runs_callbacks_due")),
            "{plan:?}"
        );
    }

    /// A run whose host died goes back to the queue with the interrupted
    /// attempt recorded; one whose cancel was requested ends cancelled.
    #[test]
    fn expired_leases_are_recovered() {
        let store = Store::open_in_memory().unwrap();
        let run = enqueue(&store, &new_run("crm", None, 0));
        let doomed = enqueue(
            &store,
            &NewRun {
                callback_url: Some("https://example.test/cb".into()),
                ..new_run("crm", None, 0)
            },
        );
        let fresh = enqueue(&store, &new_run("crm", None, 1_500));
        claim(&store, "h1", 10);
        store.cancel_run(&doomed, 20).unwrap();
        claim(&store, "h2", 1_500);
        let interrupted = |n: u32| json!({"attempt": n, "interrupted": true});
        assert!(
            store
                .recover_expired_leases(1_010, interrupted)
                .unwrap()
                .is_empty()
        );
        let mut recovered = store.recover_expired_leases(1_011, interrupted).unwrap();
        recovered.sort();
        assert_eq!(recovered, [run.clone(), doomed.clone()]);
        let back = get(&store, &run);
        assert_eq!(
            (back.status.as_str(), back.next_at_ms, back.lease_owner),
            ("queued", 1_011, None)
        );
        assert_eq!(back.attempts, [interrupted(1)]);
        let cancelled = get(&store, &doomed);
        assert_eq!(
            (cancelled.status.as_str(), cancelled.finished_at_ms),
            ("cancelled", Some(1_011))
        );
        assert_eq!(cancelled.attempts, [interrupted(1)]);
        assert_eq!(cancelled.callback.unwrap()["state"], "pending");
        assert_eq!(get(&store, &fresh).lease_owner.as_deref(), Some("h2"));
        assert_eq!(claim(&store, "h3", 1_011), vec![run.clone()]);
        assert_eq!(get(&store, &run).attempt_count, 2);
    }

    /// Releasing a host's leases puts back only its runs.
    #[test]
    fn released_leases_go_back_to_the_queue() {
        let store = Store::open_in_memory().unwrap();
        let mine: Vec<_> = (0..2)
            .map(|i| enqueue(&store, &new_run("crm", None, i)))
            .collect();
        assert_eq!(claim(&store, "h1", 10).len(), 2);
        let theirs = enqueue(&store, &new_run("crm", None, 20));
        claim(&store, "h2", 20);
        assert_eq!(store.release_leases("h1", 30, attempt).unwrap(), 2);
        for id in &mine {
            let run = get(&store, id);
            assert_eq!(
                (run.status.as_str(), run.next_at_ms, run.lease_owner),
                ("queued", 30, None)
            );
            assert_eq!(run.attempts, [attempt(1)]);
        }
        assert_eq!(get(&store, &theirs).status, "running");
        assert_eq!(store.release_leases("h1", 40, attempt).unwrap(), 0);
    }

    /// Cancelling ends a waiting run at once, flags a running one, refuses a final one.
    #[test]
    fn cancelling_depends_on_the_state() {
        let store = Store::open_in_memory().unwrap();
        let running = enqueue(&store, &new_run("crm", None, 0));
        claim(&store, "h1", 1);
        let retrying = enqueue(&store, &new_run("crm", None, 2));
        claim(&store, "h1", 3);
        let retry = |at| AttemptResult::Retry {
            error: json!({"code": "x"}),
            next_at_ms: at,
        };
        store
            .finish_attempt(&retrying, "h1", &attempt(1), &retry(50), 4)
            .unwrap();
        let queued = enqueue(&store, &new_run("crm", None, 5));
        let held = enqueue(
            &store,
            &NewRun {
                status: "on_hold".into(),
                ..new_run("crm", None, 5)
            },
        );
        for id in [&retrying, &queued, &held] {
            let run = store.cancel_run(id, 10).unwrap();
            assert_eq!((run.status.as_str(), run.finished_at_ms), ("cancelled", Some(10)));
            assert_eq!(run, get(&store, id));
        }
        let flagged = store.cancel_run(&running, 10).unwrap();
        assert_eq!(
            (flagged.status.as_str(), flagged.cancel_requested),
            ("running", true)
        );
        assert!(store.cancel_run(&running, 11).unwrap().cancel_requested);
        assert!(
            store
                .finish_attempt(&running, "h1", &attempt(1), &retry(60), 12)
                .unwrap()
        );
        assert_eq!(
            get(&store, &running).status,
            "cancelled",
            "a cancel-requested retry ends"
        );
        let err = store.cancel_run(&queued, 20).unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict(format!("async run `{queued}` is already `cancelled`"))
        );
        assert!(matches!(
            store.cancel_run("ghost", 20),
            Err(StoreError::NotFound(_))
        ));
        assert!(claim(&store, "h1", 1_000).is_empty());
    }

    /// Held runs are not claimed; released, they come back oldest first, `interval_ms` apart.
    #[test]
    fn held_runs_come_back_staggered() {
        let store = Store::open_in_memory().unwrap();
        let retried = enqueue(&store, &new_run("crm", None, 0));
        claim(&store, "h1", 1);
        let retry = AttemptResult::Retry {
            error: json!({"code": "x"}),
            next_at_ms: 5,
        };
        store
            .finish_attempt(&retried, "h1", &attempt(1), &retry, 2)
            .unwrap();
        let queued: Vec<_> = (0..2)
            .map(|i| enqueue(&store, &new_run("crm", None, 10 + i)))
            .collect();
        let other = enqueue(&store, &new_run("erp", None, 10));
        assert_eq!(store.hold_runs("crm", 20).unwrap(), 3);
        assert_eq!(store.queue_counts("crm").unwrap()["on_hold"], 3);
        assert_eq!(claim(&store, "h1", 100), [other]);
        assert_eq!(store.release_runs("crm", 1_000, 500).unwrap(), 3);
        let due: Vec<u64> = [&retried, &queued[0], &queued[1]]
            .iter()
            .map(|id| get(&store, id).next_at_ms)
            .collect();
        assert_eq!(due, [1_000, 1_500, 2_000]);
        assert_eq!(claim(&store, "h1", 1_499), [retried]);
        assert_eq!(claim(&store, "h1", 2_000), queued);
        assert_eq!(store.release_runs("crm", 3_000, 500).unwrap(), 0);
    }

    /// Failed runs are dead letters until resolved or retried; a retry starts the policy afresh.
    #[test]
    fn failed_runs_can_be_retried_or_resolved() {
        let store = Store::open_in_memory().unwrap();
        let ids: Vec<_> = (0..3)
            .map(|i| enqueue(&store, &new_run("crm", None, i)))
            .collect();
        claim(&store, "h1", 10);
        let failed = AttemptResult::Failed {
            error: json!({"code": "x"}),
        };
        let done = AttemptResult::Succeeded { output: "{}".into() };
        store
            .finish_attempt(&ids[0], "h1", &attempt(1), &failed, 20)
            .unwrap();
        store
            .finish_attempt(&ids[1], "h1", &attempt(1), &failed, 20)
            .unwrap();
        store
            .finish_attempt(&ids[2], "h1", &attempt(1), &done, 20)
            .unwrap();
        let dead = |store: &Store| {
            let filter = AsyncRunFilter {
                dead_letters: true,
                ..Default::default()
            };
            super::tests::ids(store.list_async_runs(&filter).unwrap())
        };
        assert_eq!(dead(&store), [ids[1].clone(), ids[0].clone()]);
        assert_eq!(
            store.resolve_failed_runs(&ids, 30).unwrap(),
            [ids[0].clone(), ids[1].clone()]
        );
        assert!(store.resolve_failed_runs(&ids, 31).unwrap().is_empty());
        assert_eq!(get(&store, &ids[0]).resolved_at_ms, Some(30));
        assert!(dead(&store).is_empty());
        let retried = store
            .retry_failed_runs(&[ids[1].clone(), ids[2].clone()], 40)
            .unwrap();
        assert_eq!(retried, [ids[1].clone()]);
        let run = get(&store, &ids[1]);
        assert_eq!(
            (run.status.as_str(), run.next_at_ms, run.attempt_base),
            ("queued", 40, 1)
        );
        assert_eq!((run.resolved_at_ms, run.finished_at_ms), (None, None));
        assert_eq!(run.attempts, [attempt(1), json!({"manual_retry_at_ms": 40})]);
        assert_eq!(get(&store, &ids[2]).status, "succeeded");
        assert_eq!(claim(&store, "h1", 40), [ids[1].clone()]);
        store
            .finish_attempt(&ids[1], "h1", &attempt(2), &failed, 50)
            .unwrap();
        assert_eq!(dead(&store), [ids[1].clone()]);
    }

    /// Counts cover every status, per integration.
    #[test]
    fn queue_counts_cover_every_status() {
        let store = Store::open_in_memory().unwrap();
        let first = enqueue(&store, &new_run("crm", None, 0));
        claim(&store, "h1", 1);
        (0..2).for_each(|i| drop(enqueue(&store, &new_run("crm", None, 2 + i))));
        enqueue(&store, &new_run("erp", None, 2));
        store.cancel_run(&first, 3).unwrap();
        let counts = store.queue_counts("crm").unwrap();
        assert_eq!(
            counts.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            ASYNC_STATUSES.into()
        );
        assert_eq!((counts["queued"], counts["running"], counts["failed"]), (2, 1, 0));
        assert_eq!(store.queue_counts("ghost").unwrap().values().sum::<u64>(), 0);
    }

    /// Pruning deletes old keys (so the key makes a new run) and old final runs, and nothing else.
    #[test]
    fn pruning_deletes_old_keys_and_finished_runs() {
        let store = Store::open_in_memory().unwrap();
        let old = enqueue(&store, &new_run("crm", Some("old"), 100));
        let waiting = enqueue(&store, &new_run("crm", Some("new"), 100));
        claim(&store, "h1", 100);
        let recent = enqueue(&store, &new_run("crm", Some("recent"), 900));
        let done = AttemptResult::Succeeded { output: "{}".into() };
        store.finish_attempt(&old, "h1", &attempt(1), &done, 200).unwrap();
        store.release_leases("h1", 300, attempt).unwrap();
        claim(&store, "h1", 950);
        let late = AttemptResult::Failed {
            error: json!({"code": "x"}),
        };
        store
            .finish_attempt(&recent, "h1", &attempt(1), &late, 1_000)
            .unwrap();
        assert_eq!(store.prune_queue(500, 500).unwrap(), (2, 1));
        assert_eq!(store.get_async_run(&old).unwrap(), None);
        assert!(store.get_async_run(&waiting).unwrap().is_some(), "not final");
        assert!(
            store.get_async_run(&recent).unwrap().is_some(),
            "finished after the cutoff"
        );
        let reused = store
            .enqueue_run(&new_run("crm", Some("new"), 1_100), 10, WINDOW)
            .unwrap();
        assert!(matches!(reused, Enqueued::Created(_)), "{reused:?}");
        assert_eq!(store.prune_queue(500, 500).unwrap(), (0, 0));
    }

    /// Listing is newest first, filters, and pages with `before_id` without gaps or repeats.
    #[test]
    fn listing_filters_and_pages_newest_first() {
        let store = Store::open_in_memory().unwrap();
        let crm: Vec<_> = (0..5)
            .map(|i| enqueue(&store, &new_run("crm", None, i)))
            .collect();
        let erp = enqueue(&store, &new_run("erp", None, 10));
        let list = |filter: AsyncRunFilter| ids(store.list_async_runs(&filter).unwrap());
        assert_eq!(list(AsyncRunFilter::default()).first(), Some(&erp));
        let only_crm = || AsyncRunFilter {
            integration: Some("crm".into()),
            ..Default::default()
        };
        let (mut seen, mut before_id) = (Vec::new(), None);
        loop {
            let page = list(AsyncRunFilter {
                limit: 2,
                before_id,
                ..only_crm()
            });
            assert!(page.len() <= 2);
            let Some(last) = page.last().cloned() else { break };
            seen.extend(page);
            before_id = Some(last);
        }
        assert_eq!(seen, crm.iter().rev().cloned().collect::<Vec<_>>());
        claim(&store, "h1", 2);
        let running = list(AsyncRunFilter {
            status: Some("running".into()),
            ..only_crm()
        });
        assert_eq!(running, [crm[2].clone(), crm[1].clone(), crm[0].clone()]);
    }

    /// A page holds 100 runs by default and never more than the cap.
    #[test]
    fn the_page_size_defaults_and_is_capped() {
        let store = Store::open_in_memory().unwrap();
        (0..MAX_RUN_PAGE as u64 + 5).for_each(|i| drop(enqueue(&store, &new_run("crm", None, i))));
        let page = |limit| {
            let filter = AsyncRunFilter {
                limit,
                ..Default::default()
            };
            store.list_async_runs(&filter).unwrap().len()
        };
        assert_eq!((page(0), page(7), page(100_000)), (DEFAULT_PAGE, 7, MAX_RUN_PAGE));
    }
}
