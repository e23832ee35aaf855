//! Claiming due runs under each integration's concurrency bound, and the
//! leases that follow: renewed while a run lasts, recovered when they expire
//! (their host died), released on shutdown.

use crate::store::Result;
use std::collections::{BTreeMap, BTreeSet};

use crate::store::Context;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Params, Transaction, TransactionBehavior, params, params_from_iter};
use serde_json::Value;

use super::{COLUMNS, QueuedRun, pending_callback, read_run};
use crate::store::{Store, to_db};

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

impl Store {
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
    ) -> Result<Vec<QueuedRun>> {
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
    pub fn renew_leases(&self, owner: &str, ids: &[String], until_ms: u64) -> Result<Vec<String>> {
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

    /// Puts back every `running` run whose lease ended before `now_ms` (its
    /// host stopped): status `queued`, due now, with `interrupted` (an
    /// attempt entry the caller builds, given the attempt number) appended.
    /// Returns their ids.
    pub fn recover_expired_leases(
        &self,
        now_ms: u64,
        interrupted: impl Fn(u32) -> Value,
    ) -> Result<Vec<String>> {
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
    ) -> Result<usize> {
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
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use serde_json::json;

    use super::*;
    use crate::store::queue::testing::*;

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
}
