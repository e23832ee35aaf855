//! Retention: old idempotency keys and long-finished runs are deleted in
//! chunks.

use crate::store::Context;
use crate::store::Result;
use rusqlite::params;

use super::FINAL;
use crate::store::{Store, to_db};

/// Rows deleted per statement by [`Store::prune_queue`], so a claim never
/// waits long behind retention for the write lock.
const PRUNE_CHUNK: i64 = 5_000;

impl Store {
    /// Deletes idempotency keys older than `older_than_ms`, and final async
    /// runs finished before `runs_older_than_ms`; returns (keys, runs).
    pub fn prune_queue(&self, older_than_ms: u64, runs_older_than_ms: u64) -> Result<(usize, usize)> {
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
    use serde_json::json;

    use super::*;
    use crate::store::queue::testing::*;

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
}
