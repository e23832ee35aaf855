//! Integrations: definitions, their lifecycle and running them.
//!
//! An integration binds a connector operation (between optional input and
//! output processors) to named credentials. This module owns the lifecycle
//! (`draft` -> `active` <-> `inactive`, versions on every edit), activation's
//! checks, the degraded state, and running the pipeline with its run record.
//! Storage is [`crate::store`]'s; HTTP is [`crate::api`]'s.

pub mod definition;
pub mod pipeline;
pub mod validate;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

pub use definition::{Definition, Status};
pub use pipeline::{PipelineResult, Step, StepFailure};

use crate::plugins::Registry;
use crate::store::{IntegrationRecord, IntegrationVersion, RunRecord, RunWriter, Store, StoreError};

/// Why an integration operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// No integration of that name.
    #[error("integration `{0}` does not exist")]
    NotFound(String),
    /// The name is taken.
    #[error("integration `{0}` already exists")]
    Conflict(String),
    /// The definition is invalid, or activation found problems.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// Invocation of an integration that is not active.
    #[error("integration `{name}` is {status}, not active")]
    NotActive {
        /// Integration name.
        name: String,
        /// Its status.
        status: Status,
    },
    /// Activation (or an edit of an active integration) found problems
    /// with the loaded plugins, the bindings or the steps' configurations:
    /// the request is well formed, the integration's state refuses it.
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
    /// A draft that cannot run as defined was test-invoked.
    #[error("integration `{name}` cannot run as defined: {}", reasons.join("; "))]
    NotRunnable {
        /// Integration name.
        name: String,
        /// What is wrong.
        reasons: Vec<String>,
    },
    /// The integration is active but cannot run as defined.
    #[error("integration `{name}` is degraded: {}", reasons.join("; "))]
    Degraded {
        /// Integration name.
        name: String,
        /// What is wrong now.
        reasons: Vec<String>,
    },
    /// The integration already runs as many synchronous invocations as
    /// its `sync.concurrency` allows.
    #[error(
        "integration `{name}` is already running {limit} synchronous invocations, its `sync.concurrency`; try again shortly"
    )]
    AtConcurrency {
        /// Integration name.
        name: String,
        /// Its bound.
        limit: u32,
    },
    /// The store failed.
    #[error("store error: {0}")]
    Store(String),
}

impl From<StoreError> for IntegrationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(n) => IntegrationError::NotFound(n),
            StoreError::Conflict(n) => IntegrationError::Conflict(n),
            other => IntegrationError::Store(other.to_string()),
        }
    }
}

impl IntegrationError {
    /// Why `name` cannot run: a draft that does not resolve is the
    /// author's to fix ([`IntegrationError::NotRunnable`]); an active
    /// integration that stopped resolving is degraded.
    pub fn cannot_run(name: &str, status: Status, reasons: Vec<String>) -> IntegrationError {
        let name = name.to_string();
        if status == Status::Draft {
            IntegrationError::NotRunnable { name, reasons }
        } else {
            IntegrationError::Degraded { name, reasons }
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> IntegrationError {
    IntegrationError::Store(format!("{e:#}"))
}

/// An integration as the API shows it: the stored record plus whether it can
/// run now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    /// Name.
    pub name: String,
    /// `draft`, `active` or `inactive`.
    pub status: Status,
    /// Current version.
    pub version: u32,
    /// Current definition.
    #[schema(value_type = Definition)]
    pub definition: Value,
    /// Active but unable to run as defined.
    pub degraded: bool,
    /// Why, when degraded (or, for drafts, what activation would refuse).
    pub problems: Vec<String>,
    /// Created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// Who is invoking.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id, recorded with the run.
    pub token_id: Option<String>,
    /// Admins may test-invoke drafts.
    pub admin: bool,
}

/// The result of an invocation: the run id and the pipeline's outcome.
pub struct InvokeOutcome {
    /// The run's id.
    pub run_id: String,
    /// Output or failing step.
    pub output: Result<String, StepFailure>,
}

/// The integrations of one host.
pub struct Integrations {
    store: Arc<Store>,
    registry: Arc<Registry>,
    runs: RunWriter,
    gates: SyncGates,
    prepared: PreparedCache,
}

/// An integration ready to be admitted: the status and version it had when
/// read, and its parsed definition. Served from memory by
/// [`Integrations::prepare`].
#[derive(Debug)]
pub struct Prepared {
    /// `draft`, `active` or `inactive`.
    pub status: Status,
    /// The current version.
    pub version: u32,
    /// The parsed current definition.
    pub definition: Definition,
}

/// How long a prepared integration is served from memory before the store
/// is read again: the bound on how late this host sees an edit made by
/// another process on the same store (edits through this host are seen at
/// once).
pub const PREPARED_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// Prepared integrations by name. Each edit through this host forgets its
/// entry and moves the generation on, so a read that started before the
/// edit cannot put its stale result back.
#[derive(Default)]
struct PreparedCache {
    inner: std::sync::Mutex<PreparedInner>,
}

#[derive(Default)]
struct PreparedInner {
    generation: u64,
    entries: std::collections::HashMap<String, (Instant, Arc<Prepared>)>,
}

impl PreparedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, PreparedInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fresh entry of `name`, or the generation a read should carry.
    fn get(&self, name: &str) -> Result<Arc<Prepared>, u64> {
        let inner = self.lock();
        match inner.entries.get(name) {
            Some((at, p)) if at.elapsed() < PREPARED_FOR => Ok(p.clone()),
            _ => Err(inner.generation),
        }
    }

    fn put(&self, name: &str, generation: u64, prepared: Arc<Prepared>) {
        let mut inner = self.lock();
        if inner.generation == generation {
            // Bounded by the number of integrations, which the store holds.
            inner.entries.insert(name.to_string(), (Instant::now(), prepared));
        }
    }

    fn forget(&self, name: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.remove(name);
    }
}

/// The bound on each integration's synchronous invocations running at once
/// (`sync.concurrency`): a semaphore per integration, replaced when its
/// bound changes (permits of the old one drain as its invocations end).
#[derive(Default)]
struct SyncGates {
    gates: std::sync::Mutex<std::collections::HashMap<String, (u32, Arc<tokio::sync::Semaphore>)>>,
}

impl SyncGates {
    /// A place for one invocation of `name`, if fewer than `limit` run.
    fn enter(&self, name: &str, limit: u32) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            match gates.get(name) {
                // The common case: no allocation on the invoke path.
                Some((bound, gate)) if *bound == limit => gate.clone(),
                _ => {
                    let gate = Arc::new(tokio::sync::Semaphore::new(limit as usize));
                    gates.insert(name.to_string(), (limit, gate.clone()));
                    gate
                }
            }
        };
        gate.try_acquire_owned().ok()
    }
}

impl Integrations {
    /// Integrations kept in `store`, running plugins from `registry`.
    pub fn new(store: Arc<Store>, registry: Arc<Registry>, runs: RunWriter) -> Integrations {
        Integrations {
            store,
            registry,
            runs,
            gates: SyncGates::default(),
            prepared: PreparedCache::default(),
        }
    }

    /// The store behind them.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Every integration, by name.
    pub fn list(&self) -> Result<Vec<IntegrationView>, IntegrationError> {
        let records = self.store.list_integrations().map_err(store_err)?;
        Ok(records.into_iter().map(|r| self.view(r)).collect())
    }

    /// One integration.
    pub fn get(&self, name: &str) -> Result<IntegrationView, IntegrationError> {
        Ok(self.view(self.record(name)?))
    }

    /// Its versions, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<IntegrationVersion>, IntegrationError> {
        self.record(name)?;
        self.store.integration_versions(name).map_err(store_err)
    }

    fn record(&self, name: &str) -> Result<IntegrationRecord, IntegrationError> {
        self.store
            .get_integration(name)
            .map_err(store_err)?
            .ok_or_else(|| IntegrationError::NotFound(name.to_string()))
    }

    /// Creates a draft from a parsed definition, once its own checks pass
    /// ([`Definition::check_shape`]).
    pub fn create(&self, def: Definition) -> Result<IntegrationView, IntegrationError> {
        def.check_shape().map_err(IntegrationError::Invalid)?;
        let record = self
            .store
            .create_integration(&def.name, &def.to_json(), Status::Draft)?;
        self.prepared.forget(&def.name);
        Ok(self.view(record))
    }

    /// Replaces the definition. A change makes a new version; an active
    /// integration must still pass activation's checks with the new one.
    /// Returns the view and whether anything changed.
    pub async fn update(
        &self,
        name: &str,
        def: Definition,
    ) -> Result<(IntegrationView, bool), IntegrationError> {
        let current = self.record(name)?;
        def.check_shape().map_err(IntegrationError::Invalid)?;
        if def.name != name {
            return Err(IntegrationError::Invalid(vec![format!(
                "the definition is named `{}` but was sent for `{name}`; renaming is not supported",
                def.name
            )]));
        }
        if current.status == Status::Active {
            self.check_all(&def).await?;
        }
        let (record, changed) = self.store.update_integration(name, &def.to_json())?;
        self.prepared.forget(name);
        Ok((self.view(record), changed))
    }

    /// Validates everything and activates, or refuses listing every problem.
    pub async fn activate(&self, name: &str) -> Result<IntegrationView, IntegrationError> {
        let def = self.definition(&self.record(name)?)?;
        self.check_all(&def).await?;
        let record = self.store.set_integration_status(name, Status::Active)?;
        self.prepared.forget(name);
        if def.mode == definition::ExecutionMode::Async {
            // Runs put on hold by a deactivation go back to the queue, spaced
            // out at the integration's release rate.
            let interval = (1000.0 / def.async_settings.release_per_second).ceil() as u64;
            let now = crate::time::unix_ms(SystemTime::now());
            let released = self.store.release_runs(name, now, interval).map_err(store_err)?;
            if released > 0 {
                tracing::info!(integration = name, runs = released, "on-hold runs released");
            }
        }
        Ok(self.view(record))
    }

    /// Activation's checks: plugins, operation, slots and credentials, then
    /// each step's configuration, by the plugins that can check theirs.
    async fn check_all(&self, def: &Definition) -> Result<(), IntegrationError> {
        let resolved = self.check(def).map_err(IntegrationError::Refused)?;
        let steps = [
            (
                "input processor",
                resolved.input.as_ref(),
                def.input_processor.as_ref().map(|p| &p.config),
            ),
            (
                "connector",
                Some(&resolved.connector),
                Some(&def.connector.config),
            ),
            (
                "output processor",
                resolved.output.as_ref(),
                def.output_processor.as_ref().map(|p| &p.config),
            ),
        ];
        let mut problems = Vec::new();
        for (role, plugin, config) in steps {
            let (Some(plugin), Some(config)) = (plugin, config) else {
                continue;
            };
            let inv = self.registry.sandbox().check_config(plugin, config.clone()).await;
            if let Err(e) = inv.output {
                problems.push(format!("{role} `{}` refuses its config: {e}", plugin.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(IntegrationError::Refused(problems))
        }
    }

    /// Switches an integration off.
    pub fn deactivate(&self, name: &str) -> Result<IntegrationView, IntegrationError> {
        let record = self.store.set_integration_status(name, Status::Inactive)?;
        self.prepared.forget(name);
        if record.definition["mode"] == "async" {
            // Queued runs wait on hold rather than fail; activation releases them.
            let now = crate::time::unix_ms(SystemTime::now());
            let held = self.store.hold_runs(name, now).map_err(store_err)?;
            if held > 0 {
                tracing::info!(integration = name, runs = held, "queued runs put on hold");
            }
        }
        Ok(self.view(record))
    }

    /// Deletes an integration and its versions; its runs stay.
    pub fn delete(&self, name: &str) -> Result<(), IntegrationError> {
        let deleted = self.store.delete_integration(name).map_err(store_err)?;
        self.prepared.forget(name);
        match deleted {
            true => Ok(()),
            false => Err(IntegrationError::NotFound(name.to_string())),
        }
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The integration as the invoke paths admit it: from memory when read
    /// less than [`PREPARED_FOR`] ago, else read and parsed once on a
    /// blocking thread (never on an async worker).
    pub async fn prepare(&self, name: &str) -> Result<Arc<Prepared>, IntegrationError> {
        let generation = match self.prepared.get(name) {
            Ok(p) => return Ok(p),
            Err(generation) => generation,
        };
        let (store, owned) = (self.store.clone(), name.to_string());
        let record = tokio::task::spawn_blocking(move || store.get_integration(&owned))
            .await
            .map_err(|e| IntegrationError::Store(format!("the integration read was interrupted: {e}")))?
            .map_err(store_err)?
            .ok_or_else(|| IntegrationError::NotFound(name.to_string()))?;
        let prepared = Arc::new(Prepared {
            definition: self.definition(&record)?,
            status: record.status,
            version: record.version,
        });
        self.prepared.put(name, generation, prepared.clone());
        Ok(prepared)
    }

    /// The integration's record (status, current version and definition).
    pub fn get_record(&self, name: &str) -> Result<IntegrationRecord, IntegrationError> {
        self.record(name)
    }

    /// The definition of `name` as of `version`.
    pub fn definition_at(&self, name: &str, version: u32) -> Result<Definition, IntegrationError> {
        let versions = self.store.integration_versions(name).map_err(store_err)?;
        let v = versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| IntegrationError::NotFound(format!("{name} (version {version})")))?;
        Definition::from_json(v.definition).map_err(IntegrationError::Invalid)
    }

    /// Resolves a definition's plugins and bindings against what is loaded.
    pub fn resolve(&self, def: &Definition) -> Result<validate::Resolved, Vec<String>> {
        self.check(def)
    }

    fn definition(&self, record: &IntegrationRecord) -> Result<Definition, IntegrationError> {
        Definition::from_json(record.definition.clone()).map_err(IntegrationError::Invalid)
    }

    fn check(&self, def: &Definition) -> Result<validate::Resolved, Vec<String>> {
        validate::resolve(def, &self.registry, self.registry.sandbox().policy())
    }

    fn view(&self, r: IntegrationRecord) -> IntegrationView {
        let problems = match Definition::from_json(r.definition.clone()) {
            Ok(def) => self.check(&def).err().unwrap_or_default(),
            Err(p) => p,
        };
        IntegrationView {
            degraded: r.status == Status::Active && !problems.is_empty(),
            problems,
            name: r.name,
            status: r.status,
            version: r.version,
            definition: r.definition,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
        }
    }

    /// Runs the sync integration `name`, as [`Integrations::prepare`] gave
    /// it, on `input` and records the run (off the request path). Refusals
    /// before the pipeline starts record no run. Async integrations go
    /// through the queue instead ([`crate::queue::engine::AsyncRuns::enqueue`]).
    pub async fn invoke(
        &self,
        name: &str,
        prepared: &Prepared,
        input: String,
        caller: &Caller,
    ) -> Result<InvokeOutcome, IntegrationError> {
        let allowed = prepared.status == Status::Active || (caller.admin && prepared.status == Status::Draft);
        if !allowed {
            return Err(IntegrationError::NotActive {
                name: name.into(),
                status: prepared.status,
            });
        }
        let def = &prepared.definition;
        if def.mode == definition::ExecutionMode::Async {
            return Err(IntegrationError::Conflict(format!(
                "integration `{name}` is async: its runs go through the queue"
            )));
        }
        let plugins = self
            .check(def)
            .map_err(|reasons| IntegrationError::cannot_run(name, prepared.status, reasons))?;
        let limit = self.sync_concurrency(def);
        let Some(_place) = self.gates.enter(name, limit) else {
            return Err(IntegrationError::AtConcurrency {
                name: name.into(),
                limit,
            });
        };
        let run_id = crate::store::new_run_id();
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let ctx = pipeline::RunContext {
            run_id: run_id.clone(),
            attempt: 1,
        };
        let request = def.save_payloads.then(|| input.clone());
        let result = pipeline::run(self.registry.sandbox(), def, &plugins, input, &ctx).await;
        let run = run_record(
            def,
            prepared.version,
            caller,
            &run_id,
            started_at,
            clock,
            request,
            &result,
        );
        if let Err(e) = self.runs.record(run) {
            tracing::error!(run = %run_id, error = %e, "run not recorded");
        }
        Ok(InvokeOutcome {
            run_id,
            output: result.output,
        })
    }

    /// How many sync invocations of `def` may run at once: its
    /// `sync.concurrency`, else a quarter of the instance pool.
    pub fn sync_concurrency(&self, def: &Definition) -> u32 {
        def.sync
            .concurrency
            .unwrap_or_else(|| (self.registry.sandbox().max_instances() / 4).max(1))
    }

    /// Which integrations bind each credential: credential name -> list of
    /// `{"integration", "status", "slot"}`.
    pub fn credential_users(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<Value>>, IntegrationError> {
        let mut out: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
        for r in self.store.list_integrations().map_err(store_err)? {
            let Ok(def) = Definition::from_json(r.definition.clone()) else {
                continue;
            };
            for (slot, cred) in &def.bindings {
                out.entry(cred.clone()).or_default().push(json!({
                    "integration": r.name,
                    "status": r.status,
                    "slot": slot,
                }));
            }
        }
        Ok(out)
    }

    /// Runs the connector's `test-connection` of every integration that
    /// binds credential `name`, each with that integration's bindings and
    /// connector configuration.
    pub async fn test_connections(&self, name: &str) -> Result<Vec<Value>, IntegrationError> {
        let mut results = Vec::new();
        for r in self.store.list_integrations().map_err(store_err)? {
            let Ok(def) = Definition::from_json(r.definition.clone()) else {
                continue;
            };
            if !def.bindings.values().any(|c| c == name) {
                continue;
            }
            let started = Instant::now();
            let outcome = match self.registry.get(&def.connector.plugin) {
                None => Err(format!(
                    "connector plugin `{}` is not loaded",
                    def.connector.plugin
                )),
                Some(plugin) => {
                    let config = def.connector.config.clone();
                    let inv = self
                        .registry
                        .sandbox()
                        .test_connection(&plugin, &def.bindings, config)
                        .await;
                    inv.output.map_err(|e| e.to_string())
                }
            };
            let mut result = json!({
                "integration": r.name,
                "connector": def.connector.plugin,
                "ok": outcome.is_ok(),
                "duration_ms": started.elapsed().as_millis() as u64,
            });
            match outcome {
                Ok(output) => {
                    result["output"] = serde_json::from_str(&output).unwrap_or(Value::String(output))
                }
                Err(e) => result["error"] = json!(e),
            }
            results.push(result);
        }
        Ok(results)
    }

    /// Waits until every run recorded so far is stored.
    pub fn flush_runs(&self) -> crate::store::Result<()> {
        self.runs.flush()
    }
}

#[allow(clippy::too_many_arguments)]
fn run_record(
    def: &Definition,
    version: u32,
    caller: &Caller,
    run_id: &str,
    started_at: SystemTime,
    clock: Instant,
    request: Option<String>,
    result: &PipelineResult,
) -> RunRecord {
    let started_at_ms = crate::time::unix_ms(started_at);
    let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
    let error = result.output.as_ref().err().map(|f| {
        let mut e = f.error.to_json();
        e["step"] = json!(f.step.as_str());
        e
    });
    RunRecord {
        id: run_id.to_string(),
        integration: def.name.clone(),
        version,
        token_id: caller.token_id.clone(),
        status: if result.output.is_ok() {
            "succeeded"
        } else {
            "failed"
        }
        .to_string(),
        started_at_ms,
        ended_at_ms: started_at_ms + duration_ms as u64,
        duration_ms,
        error,
        steps: pipeline::steps_json(&result.steps),
        request,
        response: if def.save_payloads {
            result.output.as_ref().ok().cloned()
        } else {
            None
        },
    }
}
