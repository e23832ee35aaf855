//! Replies to synchronous invocations made with an `Idempotency-Key`.
//!
//! The first request with a key claims it (one row per integration and key,
//! inserted in a transaction, so two concurrent requests cannot both claim
//! it) and stores its reply when done; a repeat within the window gets that
//! reply instead of a second run. Replies hold the output the caller was
//! sent; `plugboard serve` deletes them once their window has passed.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Store, db_error, to_db};

/// A stored reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReply {
    /// The run the first request made.
    pub run_id: String,
    /// Its HTTP status and body, once it finished.
    pub reply: Option<(u16, String)>,
}

impl Store {
    /// Claims `key` for `run_id`. Returns `None` when the claim is new (the
    /// caller runs the integration and then calls
    /// [`Store::finish_sync_reply`]), or the earlier claim when the key was
    /// used within `window_ms`.
    pub fn claim_sync_reply(
        &self,
        integration: &str,
        key: &str,
        run_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> anyhow::Result<Option<SyncReply>> {
        let doing = format!("cannot record the idempotency key of a `{integration}` invocation");
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        let existing: Option<(String, Option<i64>, Option<String>, i64)> = tx
            .query_row(
                "SELECT run_id, status, body, created_at_ms FROM sync_replies WHERE integration = ?1 AND key = ?2",
                params![integration, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| db_error(&doing, e))?;
        if let Some((run, status, body, created)) = existing
            && (created as u64).saturating_add(window_ms) > now_ms
        {
            return Ok(Some(SyncReply {
                run_id: run,
                reply: status.zip(body).map(|(s, b)| (s as u16, b)),
            }));
        }
        tx.execute(
            "INSERT INTO sync_replies (integration, key, run_id, created_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration, key) DO UPDATE SET run_id = excluded.run_id,
                 status = NULL, body = NULL, created_at_ms = excluded.created_at_ms",
            params![integration, key, run_id, to_db(now_ms)],
        )
        .map_err(|e| db_error(&doing, e))?;
        tx.commit().map_err(|e| db_error(&doing, e))?;
        Ok(None)
    }

    /// Stores the reply of the request that claimed `key` (as `claim`),
    /// with the id of the run it made.
    pub fn finish_sync_reply(
        &self,
        integration: &str,
        key: &str,
        claim: &str,
        run_id: &str,
        status: u16,
        body: &str,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE sync_replies SET status = ?1, body = ?2, run_id = ?3
             WHERE integration = ?4 AND key = ?5 AND run_id = ?6",
            params![status, body, run_id, integration, key, claim],
        )?;
        Ok(())
    }

    /// Forgets a claim whose run never finished (the request was dropped).
    pub fn drop_sync_reply(&self, integration: &str, key: &str, run_id: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "DELETE FROM sync_replies WHERE integration = ?1 AND key = ?2 AND run_id = ?3 AND status IS NULL",
            params![integration, key, run_id],
        )?;
        Ok(())
    }

    /// The claim of `key`, if any.
    pub fn get_sync_reply(&self, integration: &str, key: &str) -> anyhow::Result<Option<SyncReply>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT run_id, status, body FROM sync_replies WHERE integration = ?1 AND key = ?2",
                params![integration, key],
                |r| {
                    let status: Option<i64> = r.get(1)?;
                    let body: Option<String> = r.get(2)?;
                    Ok(SyncReply {
                        run_id: r.get(0)?,
                        reply: status.zip(body).map(|(s, b)| (s as u16, b)),
                    })
                },
            )
            .optional()?)
    }

    /// Deletes replies older than `older_than_ms`; returns how many.
    pub fn prune_sync_replies(&self, older_than_ms: u64) -> anyhow::Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM sync_replies WHERE created_at_ms < ?1",
            [to_db(older_than_ms)],
        )?)
    }
}
