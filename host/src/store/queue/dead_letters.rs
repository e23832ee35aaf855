//! Dead letters: failed runs not yet resolved, which an admin retries or
//! marks resolved.

use crate::store::Context;
use crate::store::Result;
use rusqlite::{Connection, TransactionBehavior, params};

use super::AsyncRunFilter;
use crate::store::{Store, to_db};

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

impl Store {
    /// Sends `failed` runs back to the queue (due now, `attempt_base` set to
    /// their attempt count so the retry policy starts afresh, `resolved_at_ms`
    /// cleared, a `{"manual_retry_at_ms"}` entry appended to attempts).
    /// Runs that are not `failed` are skipped. Returns the ids re-queued.
    pub fn retry_failed_runs(&self, ids: &[String], now_ms: u64) -> Result<Vec<String>> {
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
    pub fn resolve_failed_runs(&self, ids: &[String], now_ms: u64) -> Result<Vec<String>> {
        let sql = "UPDATE async_runs SET resolved_at_ms = ?2, updated_at_ms = ?2
             WHERE id = ?1 AND status = 'failed' AND resolved_at_ms IS NULL";
        let resolved = update_each(&mut self.conn(), sql, ids, now_ms)
            .context("cannot mark failed async runs resolved")?;
        Ok(resolved)
    }

    /// Ids of an integration's dead letters (failed, not resolved), newest
    /// first, at most 500; only those whose error `code` is `error_code`
    /// when given.
    pub fn dead_letter_ids(&self, integration: &str, error_code: Option<&str>) -> Result<Vec<String>> {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::queue::testing::*;

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
            crate::store::queue::testing::ids(store.list_async_runs(&filter).unwrap())
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
}
