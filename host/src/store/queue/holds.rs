//! Cancelling a run, and holding an inactive integration's runs and
//! releasing them, staggered, when it is active again.

use crate::store::Context;
use crate::store::Result;
use rusqlite::{Transaction, TransactionBehavior, params};

use super::{CALLBACK_ON_END, QueuedRun, find, not_found, pending_callback};
use crate::store::{Store, StoreError, db_error, to_db};

/// Ends the run `?1` as `cancelled` at `?2`.
fn cancel_sql() -> String {
    format!(
        "UPDATE async_runs SET status = 'cancelled', finished_at_ms = ?2, updated_at_ms = ?2,
            lease_owner = NULL, lease_until_ms = NULL, {CALLBACK_ON_END}
         WHERE id = ?1"
    )
}

impl Store {
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
    pub fn hold_runs(&self, integration: &str, now_ms: u64) -> Result<usize> {
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
    pub fn release_runs(&self, integration: &str, now_ms: u64, interval_ms: u64) -> Result<usize> {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::queue::testing::*;

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
}
