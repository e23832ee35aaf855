//! Recording how an attempt ended: its entry in the attempts list and the
//! status it leads to, by the lease holder only.

use crate::store::Context;
use crate::store::Result;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use super::{AttemptResult, CALLBACK_ON_END, pending_callback};
use crate::store::{Store, to_db};

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

impl Store {
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
    ) -> Result<bool> {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::queue::testing::*;

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
}
