//! Running one call into a plugin: a fresh store and instance, the limits,
//! and turning whatever happened into an [`Invocation`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::types;
use super::error::InvocationError;
use super::state::{Bindings, HostState, LogLine, PluginConfig, empty_config};
use super::{DESCRIBE_TIMEOUT, PluginKind, PluginPre, Runnable, Sandbox};
use crate::budget::HostBudget;
use crate::callout::{CalloutRecord, Grant, PluginIdentity};
use crate::limits::{LimitOverrides, Limits};

/// A request to run one connector operation.
#[derive(Debug, Clone, Default)]
pub struct ConnectorCall {
    /// Operation name from the manifest.
    pub operation: String,
    /// Input JSON document.
    pub input: String,
    /// Slot to credential name.
    pub bindings: Bindings,
    /// Configuration for this use of the plugin.
    pub config: PluginConfig,
    /// Run id passed to the plugin.
    pub run_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Integration name, when there is one.
    pub integration: Option<String>,
    /// Limits that override the plugin's for this call (an integration's).
    pub limits: LimitOverrides,
}

/// What one invocation produced: its output or error, and everything it left
/// behind for the run record.
#[derive(Debug)]
pub struct Invocation {
    /// The output JSON document, or why there is none.
    pub output: Result<String, InvocationError>,
    /// Log lines and printed lines.
    pub logs: Vec<LogLine>,
    /// Outbound requests, in order.
    pub callouts: Vec<CalloutRecord>,
    /// Callouts made but not recorded: refusals after the callout budget was
    /// spent, and any once the host memory budget was.
    pub callouts_dropped: usize,
    /// Wall time of the whole invocation.
    pub duration: Duration,
    /// Largest linear memory the instance had.
    pub peak_memory_bytes: usize,
    /// Most host memory the invocation held at once (logs, records, buffered
    /// bodies), within its `host_memory_bytes` limit.
    pub peak_host_memory_bytes: usize,
}

enum Call<'a> {
    Describe,
    Invoke {
        context: types::InvokeContext,
        operation: &'a str,
        input: &'a str,
    },
    TestConnection,
    CheckConfig,
    Process {
        input: &'a str,
    },
}

enum Answer {
    Manifest(types::Manifest),
    Output(Result<String, types::PluginError>),
    Tested(Result<(), types::PluginError>),
}

/// One invocation's inputs, resolved.
struct Job<'a> {
    plugin: &'a str,
    pre: &'a PluginPre,
    limits: Limits,
    config: PluginConfig,
    grant: Option<Arc<Grant>>,
    budget: Arc<HostBudget>,
    call: Call<'a>,
}

impl Sandbox {
    /// Calls `describe` on a freshly linked component (at load time), under
    /// the plugin's own limits (the file name says which plugin it is), with
    /// a shorter timeout.
    pub async fn describe(
        &self,
        file: &str,
        pre: &PluginPre,
        limits: &Limits,
    ) -> Result<types::Manifest, InvocationError> {
        let limits = Limits {
            timeout: DESCRIBE_TIMEOUT.min(limits.timeout),
            ..*limits
        };
        let job = Job {
            plugin: file,
            pre,
            limits,
            config: empty_config(),
            grant: None,
            budget: HostBudget::new(limits.host_memory_bytes as usize),
            call: Call::Describe,
        };
        let (answer, _) = self.execute(job).await;
        match answer? {
            Answer::Manifest(m) => Ok(m),
            _ => unreachable!("describe answers with a manifest"),
        }
    }

    /// Runs one connector operation.
    pub async fn invoke(&self, plugin: &dyn Runnable, call: ConnectorCall) -> Invocation {
        let started = Instant::now();
        let limits = plugin.limits().with(&call.limits);
        let deadline = started + limits.timeout;
        let budget = HostBudget::new(limits.host_memory_bytes as usize);
        let checked = self.check_connector_call(plugin, &call, &limits, deadline, &budget);
        let grant = match checked {
            Ok(g) => g,
            Err(e) => return Invocation::failed(e, started),
        };
        let context = types::InvokeContext {
            run_id: call.run_id.clone(),
            attempt: call.attempt,
            integration: call.integration.clone(),
            deadline_ms: crate::time::unix_ms(SystemTime::now() + limits.timeout),
        };
        let job = Job {
            plugin: plugin.name(),
            pre: plugin.pre(),
            limits,
            config: call.config.clone(),
            grant: Some(grant.clone()),
            budget,
            call: Call::Invoke {
                context,
                operation: &call.operation,
                input: &call.input,
            },
        };
        self.finish(job, started, Some(grant)).await
    }

    /// Runs a processor on `input`.
    pub async fn process(&self, plugin: &dyn Runnable, input: &str, config: PluginConfig) -> Invocation {
        self.process_with(plugin, input, config, &LimitOverrides::default())
            .await
    }

    /// Runs a processor on `input` with limits overriding the plugin's.
    pub async fn process_with(
        &self,
        plugin: &dyn Runnable,
        input: &str,
        config: PluginConfig,
        overrides: &LimitOverrides,
    ) -> Invocation {
        let started = Instant::now();
        let limits = plugin.limits().with(overrides);
        if let Err(e) = check_kind(plugin, PluginKind::Processor).and_then(|_| check_input(input, &limits)) {
            return Invocation::failed(e, started);
        }
        let job = Job {
            plugin: plugin.name(),
            pre: plugin.pre(),
            limits,
            config,
            grant: None,
            budget: HostBudget::new(limits.host_memory_bytes as usize),
            call: Call::Process { input },
        };
        self.finish(job, started, None).await
    }

    /// Runs the plugin's `config-check` on `config`; the output is
    /// `{"ok": true}` when the plugin accepts it. Plugins that do not export
    /// `config-check` accept any configuration.
    pub async fn check_config(&self, plugin: &dyn Runnable, config: PluginConfig) -> Invocation {
        let started = Instant::now();
        if !plugin.checks_config() {
            return Invocation::without_running(Ok(r#"{"ok":true}"#.into()), started);
        }
        let job = Job {
            plugin: plugin.name(),
            pre: plugin.pre(),
            limits: *plugin.limits(),
            config,
            grant: None,
            budget: HostBudget::new(plugin.limits().host_memory_bytes as usize),
            call: Call::CheckConfig,
        };
        self.finish(job, started, None).await
    }

    /// Runs a connector's `test-connection` with the given bindings. The
    /// output is `{"ok": true}` on success.
    pub async fn test_connection(
        &self,
        plugin: &dyn Runnable,
        bindings: &Bindings,
        config: PluginConfig,
    ) -> Invocation {
        let started = Instant::now();
        let deadline = started + plugin.limits().timeout;
        let budget = HostBudget::new(plugin.limits().host_memory_bytes as usize);
        let grant = check_kind(plugin, PluginKind::Connector).and_then(|_| {
            self.policy
                .grant(
                    identity(plugin),
                    bindings,
                    plugin.limits(),
                    deadline,
                    budget.clone(),
                )
                .map_err(InvocationError::Binding)
        });
        let grant = match grant {
            Ok(g) => g,
            Err(e) => return Invocation::failed(e, started),
        };
        let job = Job {
            plugin: plugin.name(),
            pre: plugin.pre(),
            limits: *plugin.limits(),
            config,
            grant: Some(grant.clone()),
            budget,
            call: Call::TestConnection,
        };
        self.finish(job, started, Some(grant)).await
    }

    fn check_connector_call(
        &self,
        plugin: &dyn Runnable,
        call: &ConnectorCall,
        limits: &Limits,
        deadline: Instant,
        budget: &Arc<HostBudget>,
    ) -> Result<Arc<Grant>, InvocationError> {
        check_kind(plugin, PluginKind::Connector)?;
        if !plugin.has_operation(&call.operation) {
            return Err(InvocationError::UnknownOperation {
                plugin: plugin.name().to_string(),
                operation: call.operation.clone(),
                available: plugin.operation_names().join(", "),
            });
        }
        check_input(&call.input, limits)?;
        let unbound: Vec<String> = (plugin.required_slots().into_iter())
            .filter(|s| !call.bindings.contains_key(*s))
            .map(|s| format!("`{s}`"))
            .collect();
        if !unbound.is_empty() {
            return Err(InvocationError::Binding(format!(
                "connector `{}` needs its credential slot {} bound to a named credential",
                plugin.name(),
                unbound.join(", ")
            )));
        }
        self.policy
            .grant(identity(plugin), &call.bindings, limits, deadline, budget.clone())
            .map_err(InvocationError::Binding)
    }

    async fn finish(&self, job: Job<'_>, started: Instant, grant: Option<Arc<Grant>>) -> Invocation {
        let plugin = job.plugin.to_string();
        let limit = job.limits.max_output_bytes;
        let (answer, mut state) = self.execute(job).await;
        let output = answer.and_then(|a| output_of(&plugin, a, limit));
        let (callouts, callouts_dropped) = grant.map(|g| g.records()).unwrap_or_default();
        Invocation {
            output,
            logs: state.take_logs(),
            callouts,
            callouts_dropped,
            duration: started.elapsed(),
            peak_memory_bytes: state.limiter.peak,
            peak_host_memory_bytes: state.budget.peak(),
        }
    }

    /// Instantiates and calls, under every limit. Returns the state too, for
    /// its logs and memory figures, whatever happened.
    async fn execute(&self, job: Job<'_>) -> (Result<Answer, InvocationError>, HostState) {
        let deadline = Instant::now() + job.limits.timeout;
        let state = HostState::new(
            &job.limits,
            deadline,
            job.config.clone(),
            job.grant.clone(),
            job.budget.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        // The epoch stops code that spins; this timeout stops a plugin that
        // waits inside a host call (a clock subscription, a slow stream).
        let timeout = deadline.saturating_duration_since(Instant::now());
        let result = tokio::time::timeout(timeout, call(&mut store, job.pre, &job.call)).await;
        let mut state = store.into_data();
        let answer = match result {
            Ok(Ok(answer)) => Ok(answer),
            Err(_) => {
                state.timed_out = true;
                Err(classify(job.plugin, &job.limits, &state, None))
            }
            Ok(Err(e)) => Err(classify(job.plugin, &job.limits, &state, Some(e))),
        };
        (answer, state)
    }
}

async fn call(store: &mut Store<HostState>, pre: &PluginPre, call: &Call<'_>) -> wasmtime::Result<Answer> {
    match (pre, call) {
        (PluginPre::Connector(p), Call::CheckConfig) => check_config(store, p.instance_pre()).await,
        (PluginPre::Processor(p), Call::CheckConfig) => check_config(store, p.instance_pre()).await,
        (PluginPre::Connector(pre), call) => {
            let plugin = pre.instantiate_async(&mut *store).await?;
            Ok(match call {
                Call::Describe => Answer::Manifest(plugin.call_describe(&mut *store).await?),
                Call::Invoke {
                    context,
                    operation,
                    input,
                } => Answer::Output(plugin.call_invoke(&mut *store, context, operation, input).await?),
                Call::TestConnection => Answer::Tested(plugin.call_test_connection(&mut *store).await?),
                Call::Process { .. } | Call::CheckConfig => unreachable!("handled above or kind checked"),
            })
        }
        (PluginPre::Processor(pre), call) => {
            let plugin = pre.instantiate_async(&mut *store).await?;
            Ok(match call {
                Call::Describe => Answer::Manifest(plugin.call_describe(&mut *store).await?),
                Call::Process { input } => Answer::Output(plugin.call_process(&mut *store, input).await?),
                _ => unreachable!("kind checked before the call"),
            })
        }
    }
}

/// Calls the optional `config-check.check` export.
async fn check_config(
    store: &mut Store<HostState>,
    pre: &wasmtime::component::InstancePre<HostState>,
) -> wasmtime::Result<Answer> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let missing = || wasmtime::format_err!("the plugin does not export `{}`", super::CONFIG_CHECK_EXPORT);
    let iface = instance
        .get_export_index(&mut *store, None, super::CONFIG_CHECK_EXPORT)
        .ok_or_else(missing)?;
    let func = instance
        .get_export_index(&mut *store, Some(&iface), "check")
        .ok_or_else(missing)?;
    let check = instance.get_typed_func::<(), (Result<(), types::PluginError>,)>(&mut *store, &func)?;
    let (result,) = check.call_async(&mut *store, ()).await?;
    Ok(Answer::Tested(result))
}

/// Names the cause of a failed call: the limit that was hit when one was,
/// otherwise the trap or engine error.
fn classify(
    plugin: &str,
    limits: &Limits,
    state: &HostState,
    err: Option<wasmtime::Error>,
) -> InvocationError {
    let plugin = plugin.to_string();
    let trap = err.as_ref().and_then(|e| e.downcast_ref::<Trap>().copied());
    if state.timed_out || trap == Some(Trap::Interrupt) {
        return InvocationError::Timeout {
            plugin,
            limit_ms: limits.timeout.as_millis() as u64,
        };
    }
    if trap == Some(Trap::StackOverflow) {
        return InvocationError::StackOverflow { plugin };
    }
    if state.limiter.refused {
        return InvocationError::MemoryLimit {
            plugin,
            limit_mib: limits.memory_mib(),
        };
    }
    let err = err.expect("a failure without timeout has an error");
    let full = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    });
    if full {
        return InvocationError::ResourceLimit {
            plugin,
            limit: super::state::resource_cap(limits.host_memory_bytes),
            host_memory_mib: limits.host_memory_mib(),
        };
    }
    let text = format!("{err:#}");
    if trap.is_none() && text.contains("concurrent") {
        return InvocationError::Busy;
    }
    match trap {
        Some(t) => InvocationError::Trapped {
            plugin,
            trap: trap_text(t),
            stderr: state.stderr.tail(),
        },
        None if text.contains("wasm trap") || text.contains("error while executing") => {
            InvocationError::Trapped {
                plugin,
                trap: first_line(&text),
                stderr: state.stderr.tail(),
            }
        }
        None => InvocationError::Instantiate {
            plugin,
            reason: first_line(&text),
        },
    }
}

/// The trap in words, with a hint where the usual cause is not obvious.
fn trap_text(t: Trap) -> String {
    match t {
        // Languages that keep their stack in linear memory (Rust, C) overflow
        // it by running below address zero: the engine sees a bad access.
        Trap::MemoryOutOfBounds => {
            format!("{t} (often the plugin's own stack overflowing from runaway recursion)")
        }
        _ => t.to_string(),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

fn output_of(plugin: &str, answer: Answer, limit: usize) -> Result<String, InvocationError> {
    match answer {
        Answer::Output(Ok(out)) => check_output(plugin, out, limit),
        Answer::Output(Err(e)) | Answer::Tested(Err(e)) => Err(plugin_error(plugin, e, limit)),
        Answer::Tested(Ok(())) => Ok(r#"{"ok":true}"#.to_string()),
        Answer::Manifest(_) => unreachable!("only describe answers with a manifest"),
    }
}

fn check_output(plugin: &str, out: String, limit: usize) -> Result<String, InvocationError> {
    if out.len() > limit {
        return Err(InvocationError::OutputTooLarge {
            plugin: plugin.into(),
            size: out.len(),
            limit,
        });
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&out) {
        return Err(InvocationError::OutputNotJson {
            plugin: plugin.into(),
            reason: e.to_string(),
        });
    }
    Ok(out)
}

/// A plugin's own error, size-checked; `details` that are not JSON are kept
/// as a JSON string rather than dropped.
fn plugin_error(plugin: &str, e: types::PluginError, limit: usize) -> InvocationError {
    let size = e.code.len() + e.message.len() + e.details.as_ref().map_or(0, String::len);
    if size > limit {
        return InvocationError::OutputTooLarge {
            plugin: plugin.into(),
            size,
            limit,
        };
    }
    let details = e
        .details
        .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d)));
    InvocationError::Plugin {
        code: e.code,
        message: e.message,
        retryable: e.retryable,
        details,
    }
}

fn identity(plugin: &dyn Runnable) -> PluginIdentity<'_> {
    PluginIdentity {
        name: plugin.name(),
        sha256: plugin.sha256(),
    }
}

fn check_kind(plugin: &dyn Runnable, expected: PluginKind) -> Result<(), InvocationError> {
    if plugin.kind() == expected {
        return Ok(());
    }
    Err(InvocationError::WrongKind {
        plugin: plugin.name().to_string(),
        expected: expected.to_string(),
        actual: plugin.kind().to_string(),
    })
}

fn check_input(input: &str, limits: &Limits) -> Result<(), InvocationError> {
    if input.len() > limits.max_input_bytes {
        return Err(InvocationError::InputTooLarge {
            size: input.len(),
            limit: limits.max_input_bytes,
        });
    }
    serde_json::from_str::<serde::de::IgnoredAny>(input)
        .map(|_| ())
        .map_err(|e| InvocationError::InputNotJson(e.to_string()))
}

impl Invocation {
    /// An invocation settled before any plugin code ran.
    fn without_running(output: Result<String, InvocationError>, started: Instant) -> Invocation {
        Invocation {
            output,
            logs: Vec::new(),
            callouts: Vec::new(),
            callouts_dropped: 0,
            duration: started.elapsed(),
            peak_memory_bytes: 0,
            peak_host_memory_bytes: 0,
        }
    }

    fn failed(error: InvocationError, started: Instant) -> Invocation {
        Invocation::without_running(Err(error), started)
    }
}
