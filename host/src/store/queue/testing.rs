//! What the queue's tests share: runs to enqueue, and short forms of the
//! calls most tests make.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

pub(super) use super::{AsyncRunFilter, AttemptResult, Enqueued, NewRun, QueuedRun};
use crate::store::{Store, new_run_id};

/// A window long enough that no key expires in a test.
pub(super) const WINDOW: u64 = 60_000;

/// A run of `integration` enqueued at `now_ms`, with an idempotency key.
pub(super) fn new_run(integration: &str, key: Option<&str>, now_ms: u64) -> NewRun {
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
pub(super) fn enqueue(store: &Store, run: &NewRun) -> String {
    match store.enqueue_run(run, 1_000, WINDOW).unwrap() {
        Enqueued::Created(id) => id,
        other => panic!("expected a new run, got {other:?}"),
    }
}

/// Claims every due run for `owner` at `now_ms` with a 1 s lease and no concurrency bound.
pub(super) fn claim(store: &Store, owner: &str, now_ms: u64) -> Vec<String> {
    let runs = store
        .claim_runs(owner, now_ms, 1_000, &BTreeMap::new(), 100, 100)
        .unwrap();
    runs.into_iter().map(|r| r.id).collect()
}

/// The run `id`, which must exist.
pub(super) fn get(store: &Store, id: &str) -> QueuedRun {
    store.get_async_run(id).unwrap().unwrap()
}

/// An attempt entry.
pub(super) fn attempt(n: u32) -> Value {
    json!({"attempt": n})
}

/// Ids of a listing.
pub(super) fn ids(runs: Vec<QueuedRun>) -> Vec<String> {
    runs.into_iter().map(|r| r.id).collect()
}

/// A file-backed store and `n` more stores on the same file (each its own connection).
pub(super) fn file_stores(n: usize) -> (tempfile::TempDir, Vec<Arc<Store>>) {
    let dir = tempfile::tempdir().unwrap();
    let stores = (0..n)
        .map(|_| Arc::new(Store::open(dir.path()).unwrap()))
        .collect();
    (dir, stores)
}
