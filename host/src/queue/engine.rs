//! The async-run engine: acknowledges runs once they are stored, executes
//! them in the background under a lease, retries what is retryable on the
//! integration's schedule, and delivers result callbacks.
//!
//! One dispatcher task per host claims due runs from the store (never more
//! than the host's parallelism, never more per integration than its
//! `async.concurrency`), runs each as a task of its own with its lease
//! renewed while it lasts, and records the attempt. A host that dies leaves
//! its leases to expire; any host (the same one restarted) then puts those
//! runs back in the queue with the interrupted attempt recorded. So an
//! acknowledged run always reaches a final status, and the host itself never
//! runs one twice at once; a connector call interrupted by a crash may be
//! repeated, which the attempts list shows and which plugins can make safe
//! with the run id and attempt number they are given.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};

use super::callback::{CallbackSettings, deliver};
use crate::integrations::definition::ExecutionMode;
use crate::integrations::pipeline::{self, PipelineResult, RunContext};
use crate::integrations::{Caller, Definition, IntegrationError, Integrations, Status};
use crate::store::{AsyncRunFilter, AttemptResult, Enqueued, NewRun, QueuedRun, Store, StoreError};

/// A source of "now", replaceable in tests so long schedules need no sleeps.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::time::unix_ms(SystemTime::now())
    }
}

/// A clock that moves only when told: for tests of hour-long schedules.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock at the current system time.
    pub fn new() -> ManualClock {
        ManualClock(AtomicU64::new(SystemClock.now_ms()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How the engine runs.
#[derive(Clone)]
pub struct EngineSettings {
    /// Async runs executing at once on this host, over all integrations.
    pub max_parallel: usize,
    /// Lease length; renewed at a third of it while a run executes.
    pub lease: Duration,
    /// How often the dispatcher looks for due runs when nothing wakes it.
    pub poll: Duration,
    /// How long an idempotency key is remembered.
    pub key_window: Duration,
    /// How long a graceful shutdown waits for running attempts before
    /// putting them back in the queue.
    pub shutdown_grace: Duration,
    /// Result callbacks (signing secret, allowed URLs).
    pub callbacks: CallbackSettings,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_parallel: 16,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            key_window: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(10),
            callbacks: CallbackSettings::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What an invoke of an async integration answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The run id (the first run's, for a repeated idempotency key).
    pub run_id: String,
    /// Whether an earlier request with the same idempotency key made it.
    pub replayed: bool,
}

/// Why an async operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The integration refused it (unknown, not active, degraded...).
    #[error(transparent)]
    Integration(#[from] IntegrationError),
    /// The integration's queue is full; try again after the hint.
    #[error("{message}")]
    Full {
        /// Says which integration and its bound.
        message: String,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The caller already used this idempotency key with another input:
    /// the first run's id.
    #[error(
        "this `Idempotency-Key` was already used with another input (run `{0}`): send a new key for a new request"
    )]
    KeyReused(String),
    /// The callback URL is not allowed or malformed.
    #[error("{0}")]
    BadCallback(String),
    /// No such run.
    #[error("run `{0}` does not exist")]
    NotFound(String),
    /// The run is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

impl From<anyhow::Error> for QueueError {
    fn from(e: anyhow::Error) -> Self {
        QueueError::Store(format!("{e:#}"))
    }
}

impl From<StoreError> for QueueError {
    /// A store failure where the caller has no case of its own for it.
    fn from(e: StoreError) -> Self {
        QueueError::Store(e.to_string())
    }
}

/// The async runs of one host.
pub struct AsyncRuns {
    store: Arc<Store>,
    integrations: Arc<Integrations>,
    settings: EngineSettings,
    owner: String,
    wake: Notify,
    finished: broadcast::Sender<String>,
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
    stopping: AtomicBool,
    dispatcher_done: watch::Sender<bool>,
}

impl AsyncRuns {
    /// An engine over `integrations` (and their store). Call [`AsyncRuns::start`]
    /// to begin executing.
    pub fn new(integrations: Arc<Integrations>, settings: EngineSettings) -> Arc<AsyncRuns> {
        let (finished, _) = broadcast::channel(1024);
        Arc::new(AsyncRuns {
            store: integrations.store().clone(),
            integrations,
            settings,
            owner: format!("host-{}", uuid::Uuid::now_v7()),
            wake: Notify::new(),
            finished,
            running: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            dispatcher_done: watch::channel(false).0,
        })
    }

    /// How it runs.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    fn now(&self) -> u64 {
        self.settings.clock.now_ms()
    }

    /// Wakes the dispatcher (after an enqueue, a release or a clock change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stores a run for `name` and returns once it is durable. An inactive
    /// integration's runs are refused like sync invocations; a repeated
    /// `idempotency_key` returns the first run.
    pub async fn enqueue(
        self: &Arc<Self>,
        name: &str,
        input: String,
        caller: &Caller,
        callback_url: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<Accepted, QueueError> {
        let callback_url = match callback_url {
            Some(u) => Some(
                self.settings
                    .callbacks
                    .check_url(&u)
                    .map_err(QueueError::BadCallback)?,
            ),
            None => None,
        };
        let prepared = self.integrations.prepare(name).await?;
        let this = self.clone();
        let name = name.to_string();
        let caller = caller.clone();
        tokio::task::spawn_blocking(move || {
            let allowed =
                prepared.status == Status::Active || (caller.admin && prepared.status == Status::Draft);
            if !allowed {
                return Err(IntegrationError::NotActive {
                    name: name.clone(),
                    status: prepared.status,
                }
                .into());
            }
            let def = &prepared.definition;
            if def.mode != ExecutionMode::Async {
                return Err(QueueError::Conflict(format!("integration `{name}` is not async")));
            }
            if let Err(reasons) = this.integrations.resolve(def) {
                return Err(IntegrationError::cannot_run(&name, prepared.status, reasons).into());
            }
            let run = NewRun {
                id: crate::store::new_run_id(),
                integration: name.clone(),
                version: prepared.version,
                token_id: caller.token_id.clone(),
                input,
                callback_url: callback_url.map(|u| u.to_string()),
                idempotency_key,
                status: "queued".into(),
                now_ms: this.now(),
            };
            let window = this.settings.key_window.as_millis() as u64;
            match this
                .store
                .enqueue_run(&run, def.async_settings.max_pending, window)
            {
                Ok(Enqueued::Created(id)) => {
                    this.wake();
                    Ok(Accepted {
                        run_id: id,
                        replayed: false,
                    })
                }
                Ok(Enqueued::Existing(id)) => Ok(Accepted {
                    run_id: id,
                    replayed: true,
                }),
                Ok(Enqueued::OtherInput(id)) => Err(QueueError::KeyReused(id)),
                Err(StoreError::QueueFull { .. }) => Err(QueueError::Full {
                    message: format!(
                        "integration `{name}` has {} runs waiting, its `async.max_pending`; try again later",
                        def.async_settings.max_pending
                    ),
                    retry_after: Duration::from_secs(1),
                }),
                Err(e) => Err(QueueError::Store(e.to_string())),
            }
        })
        .await
        .map_err(|e| QueueError::Store(format!("the enqueue task failed: {e}")))?
    }

    /// One async run as stored.
    pub fn store_run(&self, id: &str) -> crate::store::Result<Option<QueuedRun>> {
        self.store.get_async_run(id)
    }

    /// Counts of an integration's async runs by status.
    pub fn counts(&self, integration: &str) -> crate::store::Result<crate::store::QueueCounts> {
        self.store.queue_counts(integration)
    }

    /// One run as the API shows it.
    pub fn get(&self, id: &str) -> Result<Option<Value>, QueueError> {
        Ok(self.store.get_async_run(id)?.map(|r| view(&r)))
    }

    /// Waits until run `id` is final or `wait` has passed; returns it as it is then.
    pub async fn wait(self: &Arc<Self>, id: &str, wait: Duration) -> Result<Option<Value>, QueueError> {
        let mut rx = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let this = self.clone();
            let owned = id.to_string();
            let run = tokio::task::spawn_blocking(move || this.store.get_async_run(&owned))
                .await
                .map_err(|e| QueueError::Store(e.to_string()))??;
            let Some(run) = run else { return Ok(None) };
            if is_final(&run.status) || tokio::time::Instant::now() >= deadline {
                return Ok(Some(view(&run)));
            }
            // Wake on any finished run (or every second, in case the run
            // finished on another host sharing the store).
            let step = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            let _ = tokio::time::timeout_at(step, async {
                loop {
                    match rx.recv().await {
                        Ok(done) if done == id => return,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
            .await;
        }
    }

    /// Cancels a queued, retrying or on-hold run at once, or stops a
    /// running one.
    pub fn cancel(&self, id: &str) -> Result<Value, QueueError> {
        let run = self.store.cancel_run(id, self.now()).map_err(|e| match e {
            StoreError::NotFound(_) => QueueError::NotFound(id.into()),
            StoreError::Conflict(m) => QueueError::Conflict(m),
            other => QueueError::Store(other.to_string()),
        })?;
        if let Some(tx) = self.running.lock().expect("running lock").get(id) {
            let _ = tx.send(true);
        }
        if is_final(&run.status) {
            let _ = self.finished.send(id.to_string());
        }
        Ok(view(&run))
    }

    /// Async runs matching `filter`.
    pub fn list(&self, filter: &AsyncRunFilter) -> Result<Vec<Value>, QueueError> {
        Ok(self.store.list_async_runs(filter)?.iter().map(summary).collect())
    }

    /// Ids of an integration's dead letters, optionally only those with one
    /// error code.
    pub fn dead_letter_ids(
        &self,
        integration: &str,
        error_code: Option<&str>,
    ) -> Result<Vec<String>, QueueError> {
        Ok(self.store.dead_letter_ids(integration, error_code)?)
    }

    /// Sends failed runs back to the queue.
    pub fn retry(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let done = self.store.retry_failed_runs(ids, self.now())?;
        self.wake();
        Ok(done)
    }

    /// Marks failed runs resolved: they leave the dead-letter list.
    pub fn resolve(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        Ok(self.store.resolve_failed_runs(ids, self.now())?)
    }

    /// Starts the dispatcher and the callback deliverer.
    pub fn start(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().dispatch()),
            tokio::spawn(self.clone().deliver_callbacks()),
        ]
    }

    /// Stops claiming, gives running attempts `shutdown_grace` to finish,
    /// then stops the rest and puts them back in the queue.
    pub async fn shutdown(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
        // Once the dispatcher has stopped, no claim is under way: every run
        // this host leased is either running (and in `running`) or will be
        // released below.
        let mut done = self.dispatcher_done.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
        let until = tokio::time::Instant::now() + self.settings.shutdown_grace;
        while tokio::time::Instant::now() < until && !self.running.lock().expect("running lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let this = self.clone();
        let released = tokio::task::spawn_blocking(move || {
            let now = this.now();
            this.store.release_leases(&this.owner, now, |n| {
                interrupted(n, now, "the host shut down during the attempt")
            })
        })
        .await;
        match released {
            Ok(Ok(n)) if n > 0 => tracing::info!(runs = n, "async runs put back in the queue at shutdown"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "cannot release leases at shutdown"),
            Err(e) => tracing::error!(error = %e, "lease release task failed"),
        }
    }

    async fn dispatch(self: Arc<Self>) {
        let mut last_recovery = 0u64;
        while !self.stopping.load(Ordering::SeqCst) {
            let this = self.clone();
            let recover = this.now().saturating_sub(last_recovery) >= 1000;
            let claimed = tokio::task::spawn_blocking(move || this.claim(recover)).await;
            if recover {
                last_recovery = self.now();
            }
            match claimed {
                // Claimed while shutting down: not started; `shutdown`
                // releases their leases.
                Ok(Ok(_)) if self.stopping.load(Ordering::SeqCst) => {}
                Ok(Ok(runs)) => {
                    for run in runs {
                        let (tx, rx) = watch::channel(false);
                        self.running
                            .lock()
                            .expect("running lock")
                            .insert(run.id.clone(), tx);
                        tokio::spawn(self.clone().execute(run, rx));
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "cannot claim async runs"),
                Err(e) => tracing::error!(error = %e, "claim task failed"),
            }
            let _ = tokio::time::timeout(self.settings.poll, self.wake.notified()).await;
        }
        self.dispatcher_done.send_replace(true);
    }

    /// Recovers expired leases (when `recover`) and claims due runs.
    fn claim(&self, recover: bool) -> anyhow::Result<Vec<QueuedRun>> {
        let now = self.now();
        if recover {
            let back = self.store.recover_expired_leases(now, |n| {
                interrupted(n, now, "the host running it stopped (its lease expired)")
            })?;
            if !back.is_empty() {
                tracing::warn!(
                    runs = back.len(),
                    "async runs whose host stopped are queued again"
                );
            }
        }
        let free = self
            .settings
            .max_parallel
            .saturating_sub(self.running.lock().expect("running lock").len());
        if free == 0 || self.stopping.load(Ordering::SeqCst) {
            return Ok(vec![]);
        }
        let mut concurrency = BTreeMap::new();
        for r in self.store.list_integrations()? {
            if let Ok(def) = Definition::from_json(r.definition) {
                // An inactive integration runs nothing until it is activated.
                let n = if r.status == Status::Inactive {
                    0
                } else {
                    def.async_settings.concurrency
                };
                concurrency.insert(r.name, n);
            }
        }
        let lease = self.settings.lease.as_millis() as u64;
        Ok(self
            .store
            .claim_runs(&self.owner, now, lease, &concurrency, 4, free)?)
    }

    /// Executes one attempt of a claimed run and records it.
    async fn execute(self: Arc<Self>, run: QueuedRun, mut cancel: watch::Receiver<bool>) {
        let id = run.id.clone();
        let renew = tokio::spawn(self.clone().renew_lease(id.clone()));
        let started_ms = self.now();
        let clock = std::time::Instant::now();
        let prepared = self.prepare(&run);
        let (result, def) = match prepared {
            Err(e) => (Err(e), None),
            Ok((def, resolved)) => {
                let ctx = RunContext {
                    run_id: run.id.clone(),
                    attempt: run.attempt_count,
                };
                let sandbox = self.integrations.registry().sandbox().clone();
                let work = pipeline::run(&sandbox, &def, &resolved, run.input.clone(), &ctx);
                tokio::select! {
                    r = work => (Ok(r), Some(def)),
                    _ = cancel.wait_for(|c| *c) => (Err(Stop::Cancelled), Some(def)),
                }
            }
        };
        renew.abort();
        let ended_ms = self.now();
        let mut attempt = json!({
            "attempt": run.attempt_count,
            "started_at_ms": started_ms,
            "ended_at_ms": ended_ms,
            "duration_ms": clock.elapsed().as_secs_f64() * 1000.0,
            "host": self.owner,
        });
        let outcome = self.decide(&run, def.as_ref(), result, &mut attempt);
        let this = self.clone();
        let owned = id.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            let now = this.now();
            this.store
                .finish_attempt(&owned, &this.owner, &attempt, &outcome, now)
        })
        .await;
        match recorded {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::warn!(run = %id, "lease lost before the attempt was recorded; another host owns the run")
            }
            Ok(Err(e)) => {
                tracing::error!(run = %id, error = %format!("{e:#}"), "attempt not recorded; the lease will expire and the run be retried")
            }
            Err(e) => tracing::error!(run = %id, error = %e, "attempt record task failed"),
        }
        self.running.lock().expect("running lock").remove(&id);
        let _ = self.finished.send(id);
        self.wake();
    }

    fn prepare(
        &self,
        run: &QueuedRun,
    ) -> Result<(Definition, crate::integrations::validate::Resolved), Stop> {
        let mut def = self
            .integrations
            .definition_at(&run.integration, run.version)
            .map_err(|e| {
                Stop::Failed(
                    json!({"code": "integration_missing", "message": e.to_string(), "retryable": false}),
                )
            })?;
        // Async runs get the integration's long wall-time limit.
        def.limits.timeout_ms = Some(def.async_settings.timeout_ms);
        let resolved = self.integrations.resolve(&def).map_err(|reasons| {
            Stop::Failed(json!({
                "code": "integration_degraded",
                "message": format!("integration `{}` cannot run now: {}", run.integration, reasons.join("; ")),
                "retryable": true,
            }))
        })?;
        Ok((def, resolved))
    }

    /// Turns an attempt's result into the run's next state.
    fn decide(
        &self,
        run: &QueuedRun,
        def: Option<&Definition>,
        result: Result<PipelineResult, Stop>,
        attempt: &mut Value,
    ) -> AttemptResult {
        let (error, retryable, retry_after) = match result {
            Ok(r) => {
                attempt["steps"] = crate::integrations::pipeline::steps_value(&r.steps);
                match r.output {
                    Ok(output) => {
                        attempt["outcome"] = json!("succeeded");
                        return AttemptResult::Succeeded { output };
                    }
                    Err(f) => {
                        let (retryable, retry_after) = classify(&f, &r.steps);
                        let mut e = f.error.to_json();
                        e["step"] = json!(f.step.as_str());
                        e["retryable"] = json!(retryable);
                        (e, retryable, retry_after)
                    }
                }
            }
            Err(Stop::Cancelled) => {
                attempt["outcome"] = json!("cancelled");
                return AttemptResult::Cancelled;
            }
            Err(Stop::Failed(e)) => {
                let retryable = e["retryable"] == json!(true);
                (e, retryable, None)
            }
        };
        attempt["error"] = error.clone();
        let policy = def.map(|d| d.async_settings.retry.clone()).unwrap_or_default();
        let counted = run.attempt_count.saturating_sub(run.attempt_base);
        let delay = retryable
            .then(|| policy.delay_before(counted + 1, retry_after, rand_unit()))
            .flatten();
        match delay {
            Some(d) => {
                let next_at_ms = self.now() + d.as_millis() as u64;
                attempt["outcome"] = json!("retrying");
                attempt["next_attempt_at_ms"] = json!(next_at_ms);
                AttemptResult::Retry { error, next_at_ms }
            }
            None => {
                attempt["outcome"] = json!("failed");
                if retryable {
                    attempt["gave_up"] = json!(format!(
                        "the retry policy allows {} attempts",
                        policy.max_attempts()
                    ));
                }
                AttemptResult::Failed { error }
            }
        }
    }

    async fn renew_lease(self: Arc<Self>, id: String) {
        let every = self.settings.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let this = self.clone();
            let ids = vec![id.clone()];
            let until = self.now() + self.settings.lease.as_millis() as u64;
            let checked = tokio::task::spawn_blocking(move || {
                let lost = this.store.renew_leases(&this.owner, &ids, until)?;
                // A cancel made elsewhere (the CLI, another host's API).
                let cancelled = this
                    .store
                    .get_async_run(&ids[0])?
                    .is_some_and(|r| r.cancel_requested);
                anyhow::Ok((lost, cancelled))
            })
            .await;
            if let Ok(Ok((lost, cancelled))) = checked
                && (!lost.is_empty() || cancelled)
            {
                if lost.is_empty() {
                    tracing::info!(run = %id, "cancel requested: stopping the attempt");
                } else {
                    tracing::warn!(run = %id, "lease lost: stopping the attempt");
                }
                if let Some(tx) = self.running.lock().expect("running lock").get(&id) {
                    let _ = tx.send(true);
                }
                return;
            }
        }
    }

    async fn deliver_callbacks(self: Arc<Self>) {
        let client = self.settings.callbacks.client();
        while !self.stopping.load(Ordering::SeqCst) {
            let this = self.clone();
            let due = tokio::task::spawn_blocking(move || this.store.due_callbacks(this.now(), 32)).await;
            if let Ok(Ok(due)) = due {
                for run in due {
                    let body = serde_json::to_vec(&callback_body(&run)).unwrap_or_default();
                    let state = deliver(&self.settings.callbacks, &client, &run, body, self.now()).await;
                    let this = self.clone();
                    let id = run.id.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || this.store.set_callback_state(&id, &state)).await;
                }
            }
            tokio::time::sleep(self.settings.poll.max(Duration::from_millis(100))).await;
        }
    }
}

/// Why an attempt did not produce a pipeline result.
enum Stop {
    Cancelled,
    Failed(Value),
}

/// Whether a failed attempt is worth retrying, and the upstream's
/// `Retry-After`: a plugin error marked retryable, a timeout, or a connector
/// whose last callout got 429/5xx or no answer. Processor failures (the
/// input is wrong) never are.
fn classify(
    f: &crate::integrations::StepFailure,
    steps: &[crate::integrations::pipeline::StepRecord],
) -> (bool, Option<Duration>) {
    use crate::integrations::Step;
    if f.step != Step::Connector {
        return (f.error.retryable(), None);
    }
    let last = steps
        .iter()
        .rev()
        .find(|s| s.step == Step::Connector)
        .and_then(|s| s.callouts.last());
    let retry_after = last.and_then(|c| c.retry_after_ms).map(Duration::from_millis);
    let upstream_transient = last.is_some_and(|c| {
        matches!(c.status, Some(429) | Some(500..=599)) || (c.status.is_none() && c.error.is_some())
    });
    (f.error.retryable() || upstream_transient, retry_after)
}

fn rand_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn interrupted(attempt: u32, now: u64, why: &str) -> Value {
    json!({"attempt": attempt, "ended_at_ms": now, "outcome": "interrupted", "error": {"code": "interrupted", "message": why, "retryable": true}})
}

/// Whether a status is final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

fn parse_doc(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A run as `GET /v1/runs/{id}` shows it.
pub fn view(r: &QueuedRun) -> Value {
    let mut v = summary(r);
    v["attempts"] = json!(r.attempts);
    v["output"] = r.output.as_deref().map_or(Value::Null, parse_doc);
    v["error"] = r.error.clone().unwrap_or(Value::Null);
    v["callback"] = r.callback.clone().unwrap_or(Value::Null);
    v
}

/// A run in listings.
pub fn summary(r: &QueuedRun) -> Value {
    json!({
        "id": r.id,
        "mode": "async",
        "integration": r.integration,
        "version": r.version,
        "status": r.status.replace('_', "-"),
        "attempt_count": r.attempt_count,
        "next_attempt_at_ms": (matches!(r.status.as_str(), "queued" | "retrying")).then_some(r.next_at_ms),
        "error_code": r.error.as_ref().and_then(|e| e.get("code").cloned()),
        "cancel_requested": r.cancel_requested,
        "resolved_at_ms": r.resolved_at_ms,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
        "finished_at_ms": r.finished_at_ms,
    })
}

/// What a result callback carries.
pub fn callback_body(r: &QueuedRun) -> Value {
    json!({
        "run_id": r.id,
        "integration": r.integration,
        "status": r.status,
        "output": r.output.as_deref().map_or(Value::Null, parse_doc),
        "error": r.error.clone().unwrap_or(Value::Null),
        "attempts": r.attempt_count,
        "finished_at_ms": r.finished_at_ms,
    })
}
