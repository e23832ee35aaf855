//! Replies to synchronous invocations made with an `Idempotency-Key`.
//!
//! A key belongs to the caller that sent it: one row per integration,
//! caller (token id) and key, so another token sending the same text makes
//! its own claim and never sees this one's reply. The first request with a
//! key claims it (inserted in a transaction, so two concurrent requests
//! cannot both claim it), together with a digest of its input, and stores
//! its reply when done; a repeat within the window with the same input gets
//! that reply instead of a second run, and a repeat with another input is
//! refused. `plugboard serve` deletes replies once their window has passed.

use crate::store::Result;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use super::{Store, db_error, to_db};

/// A stored reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReply {
    /// The run the first request made.
    pub run_id: String,
    /// Its HTTP status and body, once it finished.
    pub reply: Option<(u16, String)>,
}

/// What [`Store::claim_sync_reply`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyClaim {
    /// The key is new (or its window passed): the caller runs the
    /// integration and then calls [`Store::finish_sync_reply`].
    New,
    /// The key was used within the window with the same input.
    Earlier(SyncReply),
    /// The key was used within the window with another input: the first
    /// request's run id.
    OtherInput(String),
}

/// An idempotency key as the store scopes it: the integration, the caller
/// (token id, `""` for callers without a token) and the key text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopedKey<'a> {
    /// Integration name.
    pub integration: &'a str,
    /// The caller's token id, or `""`.
    pub caller: &'a str,
    /// The `Idempotency-Key` text.
    pub key: &'a str,
}

impl<'a> ScopedKey<'a> {
    /// `key` of the caller with `token_id` on `integration`.
    pub fn new(integration: &'a str, token_id: Option<&'a str>, key: &'a str) -> Self {
        ScopedKey {
            integration,
            caller: token_id.unwrap_or(""),
            key,
        }
    }
}

/// SHA-256 of an input document, hex; kept with a key to recognise a reuse
/// with another input.
pub fn input_digest(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

impl Store {
    /// Claims `key` of `caller` for `run_id`, with a digest of `input`.
    pub fn claim_sync_reply(
        &self,
        k: ScopedKey<'_>,
        input: &str,
        run_id: &str,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<ReplyClaim> {
        let ScopedKey {
            integration,
            caller,
            key,
        } = k;
        let doing = format!("cannot record the idempotency key of a `{integration}` invocation");
        let digest = input_digest(input);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| db_error(&doing, e))?;
        type Row = (String, Option<String>, Option<i64>, Option<String>, i64);
        let existing: Option<Row> = tx
            .query_row(
                "SELECT run_id, input_sha256, status, body, created_at_ms FROM sync_replies
                 WHERE integration = ?1 AND caller = ?2 AND key = ?3",
                params![integration, caller, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| db_error(&doing, e))?;
        if let Some((run, first_digest, status, body, created)) = existing
            && (created as u64).saturating_add(window_ms) > now_ms
        {
            if first_digest.is_some_and(|d| d != digest) {
                return Ok(ReplyClaim::OtherInput(run));
            }
            return Ok(ReplyClaim::Earlier(SyncReply {
                run_id: run,
                reply: status.zip(body).map(|(s, b)| (s as u16, b)),
            }));
        }
        tx.execute(
            "INSERT INTO sync_replies (integration, caller, key, input_sha256, run_id, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (integration, caller, key) DO UPDATE SET run_id = excluded.run_id,
                 input_sha256 = excluded.input_sha256, status = NULL, body = NULL,
                 created_at_ms = excluded.created_at_ms",
            params![integration, caller, key, digest, run_id, to_db(now_ms)],
        )
        .map_err(|e| db_error(&doing, e))?;
        tx.commit().map_err(|e| db_error(&doing, e))?;
        Ok(ReplyClaim::New)
    }

    /// Stores the reply of the request that claimed `key` (as `claim`),
    /// with the id of the run it made.
    pub fn finish_sync_reply(
        &self,
        k: ScopedKey<'_>,
        claim: &str,
        run_id: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE sync_replies SET status = ?1, body = ?2, run_id = ?3
             WHERE integration = ?4 AND caller = ?5 AND key = ?6 AND run_id = ?7",
            params![status, body, run_id, k.integration, k.caller, k.key, claim],
        )?;
        Ok(())
    }

    /// Forgets a claim whose run never finished (the request was dropped).
    pub fn drop_sync_reply(&self, k: ScopedKey<'_>, run_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sync_replies
             WHERE integration = ?1 AND caller = ?2 AND key = ?3 AND run_id = ?4 AND status IS NULL",
            params![k.integration, k.caller, k.key, run_id],
        )?;
        Ok(())
    }

    /// The claim of `key` by `caller`, if any.
    pub fn get_sync_reply(&self, k: ScopedKey<'_>) -> Result<Option<SyncReply>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT run_id, status, body FROM sync_replies
                 WHERE integration = ?1 AND caller = ?2 AND key = ?3",
                params![k.integration, k.caller, k.key],
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
    pub fn prune_sync_replies(&self, older_than_ms: u64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM sync_replies WHERE created_at_ms < ?1",
            [to_db(older_than_ms)],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn keys_belong_to_their_caller() {
        let (_d, s) = store();
        let w = 60_000;
        assert_eq!(
            s.claim_sync_reply(ScopedKey::new("i", Some("tok_a"), "k"), "{}", "run1", 1, w)
                .unwrap(),
            ReplyClaim::New
        );
        s.finish_sync_reply(
            ScopedKey::new("i", Some("tok_a"), "k"),
            "run1",
            "run1",
            200,
            "{\"a\":1}",
        )
        .unwrap();
        // Another caller with the same key text makes its own claim.
        assert_eq!(
            s.claim_sync_reply(ScopedKey::new("i", Some("tok_b"), "k"), "{}", "run2", 2, w)
                .unwrap(),
            ReplyClaim::New
        );
        assert_eq!(
            s.claim_sync_reply(ScopedKey::new("i", None, "k"), "{}", "run3", 2, w)
                .unwrap(),
            ReplyClaim::New
        );
        // The owner gets its own reply back.
        let ReplyClaim::Earlier(r) = s
            .claim_sync_reply(ScopedKey::new("i", Some("tok_a"), "k"), "{}", "run4", 3, w)
            .unwrap()
        else {
            panic!("expected the earlier reply")
        };
        assert_eq!(r.reply, Some((200, "{\"a\":1}".into())));
        assert_eq!(
            s.get_sync_reply(ScopedKey::new("i", Some("tok_b"), "k"))
                .unwrap()
                .unwrap()
                .run_id,
            "run2"
        );
    }

    #[test]
    fn a_key_reused_with_another_input_is_refused() {
        let (_d, s) = store();
        let w = 60_000;
        s.claim_sync_reply(ScopedKey::new("i", Some("t"), "k"), "{\"n\":1}", "run1", 1, w)
            .unwrap();
        assert_eq!(
            s.claim_sync_reply(ScopedKey::new("i", Some("t"), "k"), "{\"n\":2}", "run2", 2, w)
                .unwrap(),
            ReplyClaim::OtherInput("run1".into())
        );
        // Once the window has passed, the key is free for any input.
        assert_eq!(
            s.claim_sync_reply(ScopedKey::new("i", Some("t"), "k"), "{\"n\":2}", "run3", 1 + w, w)
                .unwrap(),
            ReplyClaim::New
        );
    }
}
