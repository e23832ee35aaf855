//! The callback delivery state of final runs, and the poll for those due.

use crate::store::Context;
use crate::store::Result;
use rusqlite::params;
use serde_json::Value;

use super::{COLUMNS, FINAL, QueuedRun, read_run};
use crate::store::{Store, to_db};

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

impl Store {
    /// Records the callback delivery state of a run.
    pub fn set_callback_state(&self, id: &str, state: &Value) -> Result<()> {
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
    pub fn due_callbacks(&self, now_ms: u64, max: usize) -> Result<Vec<QueuedRun>> {
        let sql = due_callbacks_sql();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let conn = self.conn();
        let runs = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_map(params![to_db(now_ms), max], read_run)?.collect())
            .context("cannot read the async runs whose callback is due")?;
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::queue::testing::*;

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
}
