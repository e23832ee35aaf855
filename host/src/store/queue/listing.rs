//! Reading async runs: one by id, pages by filter, counts by status.

use crate::store::Context;
use crate::store::Result;
use rusqlite::params_from_iter;
use rusqlite::types::Value as SqlValue;

use super::{ASYNC_STATUSES, AsyncRunFilter, COLUMNS, QueueCounts, QueuedRun, find, read_run};
use crate::store::{MAX_RUN_PAGE, Store, from_db};

/// Runs listed when a filter asks for none.
const DEFAULT_PAGE: usize = 100;

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
    /// One async run.
    pub fn get_async_run(&self, id: &str) -> Result<Option<QueuedRun>> {
        let run = find(&self.conn(), id).with_context(|| format!("cannot read async run `{id}`"))?;
        Ok(run)
    }

    /// Async runs matching `filter`, newest first.
    pub fn list_async_runs(&self, filter: &AsyncRunFilter) -> Result<Vec<QueuedRun>> {
        let (sql, args) = list_sql(filter);
        let conn = self.conn();
        let runs = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_map(params_from_iter(args), read_run)?.collect())
            .context("cannot list async runs")?;
        Ok(runs)
    }

    /// Counts of an integration's runs by status.
    pub fn queue_counts(&self, integration: &str) -> Result<QueueCounts> {
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::queue::testing::*;

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
