//! Why an invocation did not produce an output.
//!
//! Callers branch on the variant (the HTTP layer maps them to statuses,
//! retry policies look at [`InvocationError::retryable`]); users read the
//! message and the machine-readable [`InvocationError::code`].

use serde::Serialize;
use serde_json::{Value, json};

/// A failed invocation. Messages name the plugin and the limit or cause; they
/// never contain host paths, secrets or stack traces.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InvocationError {
    /// The plugin reported a failure through `plugin-error`.
    #[error("{message}")]
    Plugin {
        /// The plugin's code.
        code: String,
        /// The plugin's message.
        message: String,
        /// Whether the plugin says a retry may succeed.
        retryable: bool,
        /// The plugin's structured detail.
        details: Option<Value>,
    },
    /// The input is not a JSON document.
    #[error("input is not valid JSON: {0}")]
    InputNotJson(String),
    /// The input is larger than the plugin's limit.
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    InputTooLarge {
        /// Input size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The output is larger than the plugin's limit.
    #[error("plugin `{plugin}` returned {size} bytes, over the output limit of {limit} bytes")]
    OutputTooLarge {
        /// Plugin name.
        plugin: String,
        /// Output size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The output is not a JSON document.
    #[error("plugin `{plugin}` returned output that is not valid JSON: {reason}")]
    OutputNotJson {
        /// Plugin name.
        plugin: String,
        /// Parser message.
        reason: String,
    },
    /// The wall-time limit passed.
    #[error("plugin `{plugin}` did not finish within its time limit of {limit_ms} ms")]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// Limit in milliseconds.
        limit_ms: u64,
    },
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin `{plugin}` tried to use more than its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// Limit in MiB.
        limit_mib: u64,
    },
    /// The plugin held more host resources (`wasi:http` requests, header
    /// sets, streams) at once than its host memory limit allows.
    #[error(
        "plugin `{plugin}` held more than {limit} host resources at once (wasi:http requests, header sets, streams); its host memory limit of {host_memory_mib} MiB allows that many"
    )]
    ResourceLimit {
        /// Plugin name.
        plugin: String,
        /// Most resources at once.
        limit: usize,
        /// The host memory limit they derive from.
        host_memory_mib: u64,
    },
    /// The plugin exhausted its call stack.
    #[error("plugin `{plugin}` exhausted its call stack (runaway recursion?)")]
    StackOverflow {
        /// Plugin name.
        plugin: String,
    },
    /// The plugin trapped: a panic, an `unreachable`, a bad memory access.
    #[error("plugin `{plugin}` crashed: {trap}{}", stderr_suffix(.stderr))]
    Trapped {
        /// Plugin name.
        plugin: String,
        /// What the engine reported.
        trap: String,
        /// Last line the plugin wrote to stderr (a panic message, usually).
        stderr: Option<String>,
    },
    /// The connector does not offer the operation.
    #[error("connector `{plugin}` has no operation `{operation}`; it offers: {available}")]
    UnknownOperation {
        /// Plugin name.
        plugin: String,
        /// Requested operation.
        operation: String,
        /// Offered operations, comma-separated.
        available: String,
    },
    /// The plugin is not of the kind the call needs.
    #[error("plugin `{plugin}` is a {actual}, not a {expected}")]
    WrongKind {
        /// Plugin name.
        plugin: String,
        /// What the call needs.
        expected: String,
        /// What the plugin is.
        actual: String,
    },
    /// A slot binding could not be resolved before the call.
    #[error("{0}")]
    Binding(String),
    /// Every sandbox slot is in use.
    #[error("the host is running as many plugin instances as it is configured for; try again shortly")]
    Busy,
    /// The instance could not be created.
    #[error("plugin `{plugin}` could not be started: {reason}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Engine message.
        reason: String,
    },
}

fn stderr_suffix(stderr: &Option<String>) -> String {
    stderr
        .as_ref()
        .map(|s| format!(" (its last output: {s})"))
        .unwrap_or_default()
}

impl InvocationError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            InvocationError::Plugin { code, .. } => code,
            InvocationError::InputNotJson(_) => "input_not_json",
            InvocationError::InputTooLarge { .. } => "input_too_large",
            InvocationError::OutputTooLarge { .. } => "output_too_large",
            InvocationError::OutputNotJson { .. } => "output_not_json",
            InvocationError::Timeout { .. } => "timeout",
            InvocationError::MemoryLimit { .. } => "memory_limit_exceeded",
            InvocationError::ResourceLimit { .. } => "resource_limit_exceeded",
            InvocationError::StackOverflow { .. } => "stack_overflow",
            InvocationError::Trapped { .. } => "plugin_crashed",
            InvocationError::UnknownOperation { .. } => "unknown_operation",
            InvocationError::WrongKind { .. } => "wrong_plugin_kind",
            InvocationError::Binding(_) => "invalid_binding",
            InvocationError::Busy => "host_busy",
            InvocationError::Instantiate { .. } => "instantiation_failed",
        }
    }

    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            InvocationError::Plugin { retryable, .. } => *retryable,
            InvocationError::Timeout { .. } | InvocationError::Busy => true,
            _ => false,
        }
    }

    /// Who is at fault: `plugin` for what the plugin reported or did,
    /// `input` for the caller's document, `host` for the host's own state.
    pub fn origin(&self) -> &'static str {
        match self {
            InvocationError::InputNotJson(_)
            | InvocationError::InputTooLarge { .. }
            | InvocationError::UnknownOperation { .. }
            | InvocationError::WrongKind { .. }
            | InvocationError::Binding(_) => "input",
            InvocationError::Busy | InvocationError::Instantiate { .. } => "host",
            _ => "plugin",
        }
    }

    /// The error as a JSON object: `code`, `message`, `retryable`, `origin`
    /// and, for plugin errors, `details`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "code": self.code(),
            "message": self.to_string(),
            "retryable": self.retryable(),
            "origin": self.origin(),
        });
        if let InvocationError::Plugin { details: Some(d), .. } = self {
            v["details"] = d.clone();
        }
        v
    }
}

impl Serialize for InvocationError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}
