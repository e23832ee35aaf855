//! Enqueueing a run, with its idempotency key and the integration's bound
//! on runs not yet final, in one transaction.

use crate::store::Result;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Enqueued, NewRun};
use crate::store::{Store, StoreError, db_error, from_db, is_unique_violation, to_db};

/// The statuses that count against an integration's `max_pending`.
const NOT_FINAL: &str = "('queued', 'running', 'retrying', 'on_hold')";

/// An earlier run that used `run`'s idempotency key (the same caller's)
/// less than `window_ms` ago, and whether its input was the same.
fn live_key(conn: &Connection, run: &NewRun, window_ms: u64) -> rusqlite::Result<Option<Enqueued>> {
    let Some(key) = &run.idempotency_key else {
        return Ok(None);
    };
    let scoped = crate::store::ScopedKey::new(&run.integration, run.token_id.as_deref(), key);
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
        Some(d) if d != crate::store::input_digest(&run.input) => Enqueued::OtherInput(id),
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
        let scoped = crate::store::ScopedKey::new(&run.integration, run.token_id.as_deref(), key);
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
                crate::store::input_digest(&run.input),
                run.id,
                now
            ],
        )?;
    }
    Ok(())
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
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::store::new_run_id;
    use crate::store::queue::testing::*;

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
}
