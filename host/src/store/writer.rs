//! The run writer: runs are committed by a background thread, in batches,
//! so recording a run never waits for the disk or for the store's mutex.
//!
//! [`RunWriter::record`] puts the run on a bounded queue
//! ([`QUEUE_CAPACITY`] runs). The thread, with its own connection, takes
//! whatever is queued, waiting at most [`MAX_BATCH_WAIT`] after the first
//! run for up to [`MAX_BATCH_ROWS`], and commits the batch in one
//! transaction. When the queue is full, `record` blocks until there is room:
//! backpressure slows the invoke path down rather than losing runs.
//!
//! Handles are clones of one writer. [`RunWriter::flush`] returns once
//! everything recorded before it is committed; [`RunWriter::shutdown`] also
//! refuses later runs. Dropping the last handle (the store keeps one) commits
//! what is queued and joins the thread, so a clean shutdown loses no run.

use crate::store::{Result, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::Context;
use rusqlite::{Connection, TransactionBehavior};

use super::lock;
use super::runs::{RunRecord, insert_run};

/// Runs queued before [`RunWriter::record`] blocks.
const QUEUE_CAPACITY: usize = 10_000;

/// The most runs committed in one transaction.
const MAX_BATCH_ROWS: usize = 500;

/// How long the thread waits for more runs after the first of a batch.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(20);

/// How long the thread sleeps between looks at the queue while a batch fills.
const BATCH_TICK: Duration = Duration::from_millis(4);

/// What the thread reports to a flush: `Err` describes runs lost since the last report.
type Report = Result<(), String>;

/// What handles send to the thread.
enum Message {
    /// A run to commit.
    Run(Box<RunRecord>),
    /// Commit everything before this, then report.
    Flush(SyncSender<Report>),
}

/// A handle on the store's run writer. Clones share one thread and queue.
#[derive(Clone)]
pub struct RunWriter {
    inner: Arc<Inner>,
}

/// What the handles share; dropping it stops the thread after a last commit.
struct Inner {
    tx: Option<SyncSender<Message>>,
    closed: AtomicBool,
    thread: Option<JoinHandle<()>>,
}

impl RunWriter {
    /// Starts the thread, which commits on `conn`.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> Result<RunWriter> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let worker = Worker {
            conn,
            lost: 0,
            last_error: None,
        };
        let thread = std::thread::Builder::new()
            .name("plugboard-run-writer".into())
            .spawn(move || worker.run(rx))
            .context("cannot start the run writer thread")?;
        let inner = Inner {
            tx: Some(tx),
            closed: AtomicBool::new(false),
            thread: Some(thread),
        };
        Ok(RunWriter {
            inner: Arc::new(inner),
        })
    }

    /// Queues `run` for the next batch. Returns at once unless the queue is
    /// full, in which case it blocks until there is room (backpressure,
    /// never a dropped run). Fails only after [`RunWriter::shutdown`].
    pub fn record(&self, run: RunRecord) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Database(format!(
                "the run writer has shut down; run `{}` was not recorded",
                run.id
            )));
        }
        // The queue outlives every handle; only a panicked thread closes it early.
        self.sender().send(Message::Run(Box::new(run))).map_err(|_| {
            StoreError::Database("the run writer thread has stopped; a run was not recorded".into())
        })
    }

    /// Waits until every run recorded before this call is committed. Fails
    /// when runs could not be written since the last flush, saying how many.
    pub fn flush(&self) -> Result<()> {
        let (ack, report) = mpsc::sync_channel(1);
        self.sender()
            .send(Message::Flush(ack))
            .map_err(|_| StoreError::Database("the run writer has stopped".into()))?;
        let report = report
            .recv()
            .map_err(|_| StoreError::Database("the run writer stopped during a flush".into()))?;
        report.map_err(StoreError::Database)
    }

    /// Refuses runs from now on and commits everything already recorded.
    /// The thread ends when the last handle is dropped, committing any run
    /// that raced with this call. Calling it again only flushes.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.flush()
    }

    /// The queue's sending side (present until the last handle drops).
    fn sender(&self) -> &SyncSender<Message> {
        self.inner
            .tx
            .as_ref()
            .expect("the sender lives as long as a handle")
    }
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let closed = self.inner.closed.load(Ordering::Relaxed);
        f.debug_struct("RunWriter")
            .field("closed", &closed)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    /// Closes the queue; the thread commits what is left, then this joins it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the run writer thread panicked; queued runs may be lost");
        }
    }
}

/// The thread's state.
struct Worker {
    conn: Arc<Mutex<Connection>>,
    lost: usize,
    last_error: Option<String>,
}

impl Worker {
    /// Commits batches until every handle is gone and the queue is empty.
    fn run(mut self, rx: Receiver<Message>) {
        while let Ok(first) = rx.recv() {
            let (batch, ack) = collect(first, &rx);
            self.commit(&batch);
            if let Some(ack) = ack {
                // The flusher may have given up waiting; nothing to do then.
                let _ = ack.send(self.report());
            }
        }
    }

    /// Commits `batch` in one transaction. A run the database refuses is
    /// logged and skipped; a failed commit loses the batch, logged.
    fn commit(&mut self, batch: &[RunRecord]) {
        if batch.is_empty() {
            return;
        }
        let mut refused = Vec::new();
        let result = write_batch(&mut lock(&self.conn), batch, &mut refused);
        if let Err(e) = result {
            tracing::error!(runs = batch.len(), error = %e, "cannot commit runs; they are lost");
            self.lose(batch.len(), format!("batch of {} runs: {e}", batch.len()));
            return;
        }
        for (run, e) in refused {
            tracing::error!(run = %run.id, integration = %run.integration, error = %e, "cannot record run");
            self.lose(1, format!("run `{}`: {e}", run.id));
        }
    }

    /// Counts runs that could not be written.
    fn lose(&mut self, runs: usize, error: String) {
        self.lost += runs;
        self.last_error = Some(error);
    }

    /// The report for a flush, starting the count over.
    fn report(&mut self) -> Report {
        match std::mem::take(&mut self.lost) {
            0 => Ok(()),
            lost => Err(format!(
                "{lost} runs could not be recorded; last error: {}",
                self.last_error.take().unwrap_or_default()
            )),
        }
    }
}

/// Writes `batch` in one transaction on `conn`, collecting the runs the
/// database refuses (a duplicate id) in `refused` rather than failing the rest.
fn write_batch<'a>(
    conn: &mut Connection,
    batch: &'a [RunRecord],
    refused: &mut Vec<(&'a RunRecord, rusqlite::Error)>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for run in batch {
        if let Err(e) = insert_run(&tx, run) {
            refused.push((run, e));
        }
    }
    tx.commit()
}

/// A batch starting with `first`: runs until [`MAX_BATCH_ROWS`],
/// [`MAX_BATCH_WAIT`], a closed queue, or a flush (returned to acknowledge
/// after the commit).
///
/// The thread drains what is queued and then sleeps for [`BATCH_TICK`]
/// rather than waiting on the queue: a thread parked on the queue is woken
/// by every `record` (a futex wake and a context switch per run, 4-12% of
/// the server's CPU under load), a sleeping one by its timer only. A flush
/// waits at most one tick longer.
fn collect(first: Message, rx: &Receiver<Message>) -> (Vec<RunRecord>, Option<SyncSender<Report>>) {
    let deadline = Instant::now() + MAX_BATCH_WAIT;
    let mut batch = Vec::new();
    let mut next = Some(first);
    loop {
        while let Some(message) = next {
            match message {
                Message::Run(run) => batch.push(*run),
                Message::Flush(ack) => return (batch, Some(ack)),
            }
            if batch.len() >= MAX_BATCH_ROWS {
                return (batch, None);
            }
            next = match rx.try_recv() {
                Ok(message) => Some(message),
                Err(TryRecvError::Empty) => None,
                // Every handle is gone: commit what there is.
                Err(TryRecvError::Disconnected) => return (batch, None),
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (batch, None);
        }
        std::thread::sleep(left.min(BATCH_TICK));
        next = rx.try_recv().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::tests::sample_run;
    use crate::store::{RunFilter, Store};

    /// How many runs the store holds.
    fn count(store: &Store) -> i64 {
        store
            .conn()
            .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
            .unwrap()
    }

    /// 1000 runs recorded from 4 threads are all readable once flushed.
    #[test]
    fn runs_from_four_threads_are_all_readable_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ids: Vec<String> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let writer = store.run_writer();
                    scope.spawn(move || {
                        let runs: Vec<_> = (0..250)
                            .map(|i| sample_run(&format!("i{t}"), "succeeded", i))
                            .collect();
                        let ids: Vec<_> = runs.iter().map(|r| r.id.clone()).collect();
                        runs.into_iter().for_each(|run| writer.record(run).unwrap());
                        ids
                    })
                })
                .collect();
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        store.run_writer().flush().unwrap();
        assert_eq!(count(&store), 1000);
        assert!(ids.iter().all(|id| store.get_run(id).unwrap().is_some()));
        let filter = RunFilter {
            integration: Some("i2".into()),
            ..Default::default()
        };
        assert_eq!(store.list_runs(&filter).unwrap().len(), 250);
    }

    /// Runs recorded just before shutdown are all on disk when the file is reopened.
    #[test]
    fn shutdown_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = {
            let store = Store::open(dir.path()).unwrap();
            let writer = store.run_writer();
            let runs: Vec<_> = (0..3_000).map(|i| sample_run("crm", "succeeded", i)).collect();
            let ids = runs.iter().map(|r| r.id.clone()).collect();
            runs.into_iter().for_each(|run| writer.record(run).unwrap());
            writer.shutdown().unwrap();
            let err = writer.record(sample_run("crm", "failed", 9)).unwrap_err();
            assert!(err.to_string().contains("has shut down"), "{err}");
            ids
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(count(&store), 3_000);
        assert!(ids.iter().all(|id| store.get_run(id).unwrap().is_some()));
    }

    /// Dropping the store without flushing still commits every queued run.
    #[test]
    fn dropping_the_last_handle_commits_queued_runs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let writer = store.run_writer();
            (0..700).for_each(|i| writer.record(sample_run("crm", "succeeded", i)).unwrap());
        }
        assert_eq!(count(&Store::open(dir.path()).unwrap()), 700);
    }

    /// A run the database refuses is reported by the next flush and spares the rest of its batch.
    #[test]
    fn a_refused_run_is_reported_and_spares_its_batch() {
        let store = Store::open_in_memory().unwrap();
        let writer = store.run_writer();
        let first = sample_run("crm", "succeeded", 1);
        writer.record(first.clone()).unwrap();
        writer.record(first.clone()).unwrap();
        writer.record(sample_run("crm", "succeeded", 2)).unwrap();
        let err = writer.flush().unwrap_err().to_string();
        assert!(err.starts_with("1 runs could not be recorded"), "{err}");
        assert!(err.contains(&format!("`{}`", first.id)), "{err}");
        assert_eq!(count(&store), 2);
        writer.flush().unwrap();
    }

    /// Commits `total` runs with `payload_bytes`-long request and response
    /// from 4 threads; returns the seconds until recording returned and until committed.
    fn measure(total: usize, payload_bytes: usize) -> (f64, f64) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let payload = "x".repeat(payload_bytes);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (writer, payload) = (store.run_writer(), payload.clone());
                scope.spawn(move || {
                    for i in 0..total / 4 {
                        let mut run = sample_run(&format!("i{t}"), "succeeded", i as u64);
                        (run.request, run.response) = (Some(payload.clone()), Some(payload.clone()));
                        writer.record(run).unwrap();
                    }
                });
            }
        });
        let queued = started.elapsed().as_secs_f64();
        store.run_writer().flush().unwrap();
        let committed = started.elapsed().as_secs_f64();
        assert_eq!(count(&store), total as i64);
        (queued, committed)
    }

    /// Prints how many runs per second the writer commits (`--ignored --nocapture` to see it).
    #[test]
    #[ignore]
    fn writer_throughput() {
        let total = 100_000;
        for payload_bytes in [16, 1024, 8192] {
            let (queued, committed) = measure(total, payload_bytes);
            println!(
                "run writer: {total} runs, 2 x {payload_bytes} B payloads, 4 threads: {:.0} runs/s \
                 committed ({committed:.2} s; recording returned after {queued:.2} s)",
                total as f64 / committed
            );
        }
    }
}
