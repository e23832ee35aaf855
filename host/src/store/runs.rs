//! Runs: one record per invocation of an integration, read newest first,
//! pruned by age.
//!
//! Runs are written through [`super::RunWriter`], never on the caller's
//! thread. Their ids are UUID v7 ([`new_run_id`]): the text form sorts by
//! creation time, so "newest first" is a walk of the id index backwards and
//! paging is `id < before_id`. Runs name their integration as text and
//! outlive it.

use crate::store::Result;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonText, Store, from_db, json_text_column, opt_json_column, to_db};

/// The most runs one [`Store::list_runs`] call returns.
pub const MAX_RUN_PAGE: usize = 500;

/// Rows deleted or cleared per transaction by the retention methods, so
/// the run writer never waits long for the write lock.
const RETENTION_CHUNK: i64 = 5_000;

/// A new run id: a UUID v7, ordered by creation time (and, within one
/// millisecond of one process, by creation order).
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// One invocation of an integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    /// Time-ordered id, from [`new_run_id`] when the run started.
    pub id: String,
    /// The integration's name.
    pub integration: String,
    /// The integration version that ran.
    pub version: u32,
    /// The token that invoked it, if any.
    pub token_id: Option<String>,
    /// `succeeded` or `failed`.
    pub status: String,
    /// When the run started.
    pub started_at_ms: u64,
    /// When the run ended.
    pub ended_at_ms: u64,
    /// Wall time of the run.
    pub duration_ms: f64,
    /// Why it failed; its string member `code`, if any, is the summary's `error_code`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// What each step did (a JSON array of free-form objects; their shape
    /// belongs to the runner).
    #[schema(value_type = Vec<Object>)]
    pub steps: JsonText,
    /// The request payload, until payload retention clears it.
    pub request: Option<String>,
    /// The response payload, until payload retention clears it.
    pub response: Option<String>,
}

impl RunRecord {
    /// The `code` member of the error, when it is a string.
    pub fn error_code(&self) -> Option<String> {
        let code = self.error.as_ref()?.get("code")?.as_str()?;
        Some(code.to_string())
    }
}

/// Which runs [`Store::list_runs`] returns. The default is the newest
/// [`MAX_RUN_PAGE`] runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only runs of this integration.
    pub integration: Option<String>,
    /// Only runs with this status.
    pub status: Option<String>,
    /// Only runs started at or after this time.
    pub since_ms: Option<u64>,
    /// Only runs started before this time.
    pub until_ms: Option<u64>,
    /// At most this many runs, capped at [`MAX_RUN_PAGE`]; 0 means the cap.
    pub limit: usize,
    /// Only runs older than this one: the last id of the previous page.
    pub before_id: Option<String>,
}

/// A run without its payloads, steps and error detail, for listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// The integration's name.
    pub integration: String,
    /// The integration version that ran.
    pub version: u32,
    /// `succeeded` or `failed`.
    pub status: String,
    /// When the run started.
    pub started_at_ms: u64,
    /// Wall time of the run.
    pub duration_ms: f64,
    /// The error's `code`, for a failed run.
    pub error_code: Option<String>,
}

/// Writes one run on `conn` (the run writer's, inside its batch transaction).
pub(super) fn insert_run(conn: &Connection, run: &RunRecord) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO runs (id, integration, version, token_id, status, started_at_ms, ended_at_ms,
             duration_ms, error_code, error, steps, request, response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    stmt.execute(params![
        run.id,
        run.integration,
        run.version,
        run.token_id,
        run.status,
        to_db(run.started_at_ms),
        to_db(run.ended_at_ms),
        run.duration_ms,
        run.error_code(),
        run.error.as_ref().map(Value::to_string),
        run.steps.get(),
        run.request,
        run.response,
    ])?;
    Ok(())
}

/// Reads a full run from `SELECT *`-ordered columns.
fn read_run(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        integration: row.get(1)?,
        version: row.get(2)?,
        token_id: row.get(3)?,
        status: row.get(4)?,
        started_at_ms: from_db(row.get(5)?),
        ended_at_ms: from_db(row.get(6)?),
        duration_ms: row.get(7)?,
        error: opt_json_column(row, 8)?,
        steps: json_text_column(row, 9)?,
        request: row.get(10)?,
        response: row.get(11)?,
    })
}

/// Reads a summary from [`list_sql`]'s columns.
fn read_summary(row: &Row<'_>) -> rusqlite::Result<RunSummary> {
    Ok(RunSummary {
        id: row.get(0)?,
        integration: row.get(1)?,
        version: row.get(2)?,
        status: row.get(3)?,
        started_at_ms: from_db(row.get(4)?),
        duration_ms: row.get(5)?,
        error_code: row.get(6)?,
    })
}

/// The listing query for `filter` and its arguments.
fn list_sql(filter: &RunFilter) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(
        "SELECT id, integration, version, status, started_at_ms, duration_ms, error_code FROM runs WHERE 1 = 1",
    );
    let mut args = Vec::new();
    let mut add = |clause: &str, value: SqlValue| {
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(integration) = &filter.integration {
        add(" AND integration = ?", SqlValue::Text(integration.clone()));
    }
    if let Some(status) = &filter.status {
        add(" AND status = ?", SqlValue::Text(status.clone()));
    }
    if let Some(since) = filter.since_ms {
        add(" AND started_at_ms >= ?", SqlValue::Integer(to_db(since)));
    }
    if let Some(until) = filter.until_ms {
        add(" AND started_at_ms < ?", SqlValue::Integer(to_db(until)));
    }
    if let Some(before) = &filter.before_id {
        add(" AND id < ?", SqlValue::Text(before.clone()));
    }
    let limit = if filter.limit == 0 {
        MAX_RUN_PAGE
    } else {
        filter.limit.min(MAX_RUN_PAGE)
    };
    add(" ORDER BY id DESC LIMIT ?", SqlValue::Integer(limit as i64));
    (sql, args)
}

impl Store {
    /// Runs matching `filter`, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let (sql, args) = list_sql(filter);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), read_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The run `id`, whole.
    pub fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = "SELECT id, integration, version, token_id, status, started_at_ms, ended_at_ms,
                duration_ms, error, steps, request, response FROM runs WHERE id = ?1";
        Ok(self.conn().query_row(sql, [id], read_run).optional()?)
    }

    /// Deletes the runs started before `older_than_ms`; returns how many.
    pub fn prune_runs(&self, older_than_ms: u64) -> Result<usize> {
        self.in_chunks(
            "DELETE FROM runs WHERE rowid IN
                (SELECT rowid FROM runs WHERE started_at_ms < ?1 LIMIT ?2)",
            older_than_ms,
        )
    }

    /// Clears the request and response of runs started before
    /// `older_than_ms`, keeping the runs; returns how many were cleared.
    pub fn drop_payloads(&self, older_than_ms: u64) -> Result<usize> {
        self.in_chunks(
            "UPDATE runs SET request = NULL, response = NULL WHERE rowid IN
                (SELECT rowid FROM runs WHERE started_at_ms < ?1
                    AND (request IS NOT NULL OR response IS NOT NULL) LIMIT ?2)",
            older_than_ms,
        )
    }

    /// Runs `sql` (taking the cutoff and a chunk size) until it touches
    /// fewer rows than a chunk, one transaction per chunk, releasing the
    /// connection in between so readers and the run writer get their turn.
    fn in_chunks(&self, sql: &str, cutoff: u64) -> Result<usize> {
        let mut total = 0;
        loop {
            let done = self
                .conn()
                .execute(sql, params![to_db(cutoff), RETENTION_CHUNK])?;
            total += done;
            if (done as i64) < RETENTION_CHUNK {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A run of `integration` with payloads; failed runs carry an error code.
    pub(crate) fn sample_run(integration: &str, status: &str, started_at_ms: u64) -> RunRecord {
        let error = (status == "failed").then(|| json!({"code": "upstream", "message": "502"}));
        RunRecord {
            id: new_run_id(),
            integration: integration.to_string(),
            version: 1,
            token_id: Some("tok_0123456789abcdef".to_string()),
            status: status.to_string(),
            started_at_ms,
            ended_at_ms: started_at_ms + 12,
            duration_ms: 12.5,
            error,
            steps: JsonText::of(&json!([{"step": "fetch", "ms": 10}])).unwrap(),
            request: Some(r#"{"id":42}"#.to_string()),
            response: Some(r#"{"ok":true}"#.to_string()),
        }
    }

    /// A store holding `runs`, committed.
    fn store_with(runs: &[RunRecord]) -> Store {
        let store = Store::open_in_memory().unwrap();
        let writer = store.run_writer();
        runs.iter().for_each(|run| writer.record(run.clone()).unwrap());
        writer.flush().unwrap();
        store
    }

    /// Ids of a listing.
    fn ids(summaries: Vec<RunSummary>) -> Vec<String> {
        summaries.into_iter().map(|s| s.id).collect()
    }

    /// Run ids sort in creation order.
    #[test]
    fn run_ids_sort_in_creation_order() {
        let made: Vec<String> = (0..1000).map(|_| new_run_id()).collect();
        let mut sorted = made.clone();
        sorted.sort();
        assert_eq!(made, sorted);
    }

    /// A run reads back whole, and a missing one reads as nothing.
    #[test]
    fn a_run_reads_back_whole() {
        let run = sample_run("crm", "failed", 1_000);
        let store = store_with(std::slice::from_ref(&run));
        assert_eq!(store.get_run(&run.id).unwrap(), Some(run.clone()));
        assert_eq!(store.get_run("nope").unwrap(), None);
        let summary = &store.list_runs(&RunFilter::default()).unwrap()[0];
        assert_eq!(summary.error_code.as_deref(), Some("upstream"));
        assert_eq!((summary.duration_ms, summary.version), (12.5, 1));
    }

    /// Listing is newest first and filters by integration, status and start time.
    #[test]
    fn runs_filter_by_integration_status_and_time() {
        let runs: Vec<_> = [
            ("crm", "succeeded"),
            ("erp", "failed"),
            ("crm", "failed"),
            ("crm", "succeeded"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (name, status))| sample_run(name, status, 1_000 * (i as u64 + 1)))
        .collect();
        let store = store_with(&runs);
        let list = |filter: RunFilter| ids(store.list_runs(&filter).unwrap());
        let id = |i: usize| runs[i].id.clone();
        assert_eq!(list(RunFilter::default()), [id(3), id(2), id(1), id(0)]);
        let crm = Some("crm".to_string());
        assert_eq!(
            list(RunFilter {
                integration: crm.clone(),
                ..Default::default()
            }),
            [id(3), id(2), id(0)]
        );
        let failed = Some("failed".to_string());
        assert_eq!(
            list(RunFilter {
                status: failed.clone(),
                ..Default::default()
            }),
            [id(2), id(1)]
        );
        let both = RunFilter {
            integration: crm,
            status: failed,
            ..Default::default()
        };
        assert_eq!(list(both), [id(2)]);
        let window = RunFilter {
            since_ms: Some(2_000),
            until_ms: Some(4_000),
            ..Default::default()
        };
        assert_eq!(list(window), [id(2), id(1)]);
    }

    /// Paging with `before_id` walks every run newest first, without gaps or repeats.
    #[test]
    fn paging_with_before_id_walks_every_run_once() {
        let runs: Vec<_> = (0..25).map(|i| sample_run("crm", "succeeded", i)).collect();
        let store = store_with(&runs);
        let (mut seen, mut before_id) = (Vec::new(), None);
        loop {
            let page = ids(store
                .list_runs(&RunFilter {
                    limit: 10,
                    before_id,
                    ..Default::default()
                })
                .unwrap());
            assert!(page.len() <= 10);
            let Some(last) = page.last().cloned() else { break };
            seen.extend(page);
            before_id = Some(last);
        }
        let expected: Vec<_> = runs.iter().rev().map(|r| r.id.clone()).collect();
        assert_eq!(seen, expected);
    }

    /// A page never holds more than the cap, whatever the limit asked.
    #[test]
    fn the_page_size_is_capped() {
        let runs: Vec<_> = (0..MAX_RUN_PAGE as u64 + 20)
            .map(|i| sample_run("crm", "failed", i))
            .collect();
        let store = store_with(&runs);
        let page = |limit| {
            store
                .list_runs(&RunFilter {
                    limit,
                    ..Default::default()
                })
                .unwrap()
                .len()
        };
        assert_eq!((page(5), page(0), page(100_000)), (5, MAX_RUN_PAGE, MAX_RUN_PAGE));
    }

    /// Pruning deletes exactly the runs started before the cutoff.
    #[test]
    fn prune_deletes_only_runs_started_before_the_cutoff() {
        let runs: Vec<_> = (0..12_000).map(|i| sample_run("crm", "succeeded", i)).collect();
        let store = store_with(&runs);
        assert_eq!(store.prune_runs(11_000).unwrap(), 11_000);
        assert_eq!(store.prune_runs(11_000).unwrap(), 0);
        assert!(store.get_run(&runs[10_999].id).unwrap().is_none());
        assert!(store.get_run(&runs[11_000].id).unwrap().is_some());
        let rest = store
            .list_runs(&RunFilter {
                limit: 0,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(rest.len(), 500);
    }

    /// Dropping payloads clears request and response of older runs and keeps the runs.
    #[test]
    fn drop_payloads_clears_only_older_payloads() {
        let runs: Vec<_> = (0..10).map(|i| sample_run("crm", "succeeded", i * 100)).collect();
        let store = store_with(&runs);
        assert_eq!(store.drop_payloads(500).unwrap(), 5);
        assert_eq!(store.drop_payloads(500).unwrap(), 0);
        let old = store.get_run(&runs[4].id).unwrap().unwrap();
        assert_eq!((old.request, old.response), (None, None));
        assert_eq!(old.steps, runs[4].steps);
        assert_eq!(store.get_run(&runs[5].id).unwrap(), Some(runs[5].clone()));
        assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 10);
    }
}
