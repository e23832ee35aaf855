//! What an integration is: its definition as users write it (TOML in
//! `plugboard apply` files, JSON over the admin API), and the checks that
//! need nothing but the definition itself.
//!
//! Checks against the loaded plugins and credentials (activation) live in
//! [`super::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::LimitOverrides;
use crate::retry::RetryPolicy;
use crate::sandbox::PluginConfig;

/// An integration definition: input processor -> connector operation ->
/// output processor, bound to credentials.
///
/// Its OpenAPI schema states every rule that concerns one field; the rules
/// that span fields are checked on create and update (422 with `problems`):
/// `async` settings only with `mode = "async"`, `sync` settings only with
/// `mode = "sync"`, an exponential retry's `max_ms` not below its
/// `initial_ms`, `limits.memory_mib` within the sandbox's ceiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Developer name: URL-safe, unique (`create-customer`).
    #[schema(pattern = r"^[a-z][a-z0-9_-]{0,63}$", example = "create-customer")]
    pub name: String,
    /// Human label (`Create customer in CRM`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// What the integration is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The connector operation at the heart of the pipeline.
    pub connector: ConnectorStep,
    /// Optional processor run on the caller's input first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_processor: Option<ProcessorStep>,
    /// Optional processor run on the connector's output last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_processor: Option<ProcessorStep>,
    /// Credential slot of the connector -> named credential.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub bindings: BTreeMap<String, String>,
    /// `sync`: the caller waits for the output; `async`: the run is queued
    /// durably and executed in the background.
    #[serde(default)]
    pub mode: ExecutionMode,
    /// How `sync` invocations are admitted: how many may run at once.
    #[serde(default, skip_serializing_if = "SyncSettings::is_default")]
    pub sync: SyncSettings,
    /// How `async` runs are executed: time limit, concurrency, queue bound,
    /// retry policy, release rate.
    #[serde(default, rename = "async", skip_serializing_if = "AsyncSettings::is_default")]
    pub async_settings: AsyncSettings,
    /// Keep the request and response bodies with each run.
    #[serde(default)]
    pub save_payloads: bool,
    /// Limits that override the plugins' for this integration's steps.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: LimitOverrides,
}

fn is_empty_config(c: &PluginConfig) -> bool {
    c.is_empty()
}

fn is_default(l: &LimitOverrides) -> bool {
    *l == LimitOverrides::default()
}

/// The connector step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorStep {
    /// Connector plugin name.
    pub plugin: String,
    /// Operation name from its manifest.
    #[schema(pattern = r"\S")]
    pub operation: String,
    /// Configuration for this use of the connector: a free-form JSON
    /// object whose shape is the plugin's.
    /// Shared, so each call hands the plugin the parsed map without a copy.
    #[serde(default, skip_serializing_if = "is_empty_config")]
    #[schema(value_type = Object, additional_properties = true)]
    pub config: PluginConfig,
}

/// A processor step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessorStep {
    /// Processor plugin name.
    pub plugin: String,
    /// Configuration for this use of the processor: a free-form JSON
    /// object whose shape is the plugin's.
    /// Shared, so each call hands the plugin the parsed map without a copy.
    #[serde(default, skip_serializing_if = "is_empty_config")]
    #[schema(value_type = Object, additional_properties = true)]
    pub config: PluginConfig,
}

/// How callers get the result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// The caller waits for the output (a service-type integration).
    #[default]
    Sync,
    /// Queued and run in the background (a process-type integration).
    Async,
}

/// `sync = {...}`: how a sync integration's invocations are admitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Invocations of this integration running at once; more are answered
    /// 503 `integration_busy` at once, so one slow integration cannot take
    /// the whole instance pool from the others. Default: a quarter of the
    /// pool (`[sandbox] max_instances / 4`, 25 by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub concurrency: Option<u32>,
}

impl SyncSettings {
    fn is_default(&self) -> bool {
        *self == SyncSettings::default()
    }

    /// Every problem, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        match self.concurrency {
            Some(n) if n == 0 || n > MAX_SYNC_CONCURRENCY => vec![format!(
                "sync.concurrency must be between 1 and {MAX_SYNC_CONCURRENCY}"
            )],
            _ => vec![],
        }
    }
}

/// The largest `sync.concurrency` (the instance pool bounds it anyway).
pub const MAX_SYNC_CONCURRENCY: u32 = 10_000;

/// `async = {...}`: how an async integration's runs are executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncSettings {
    /// Wall-time limit of one attempt, for every step (default 1 hour, at
    /// most 24 hours): far beyond a synchronous request's.
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub timeout_ms: u64,
    /// Runs of this integration executing at once (default 4).
    #[schema(minimum = 1, maximum = 1000)]
    pub concurrency: u32,
    /// Runs not yet final (queued, retrying, on hold, running) before invoke
    /// answers 429 (default 10,000).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub max_pending: u64,
    /// When and how often retryable failures are tried again.
    pub retry: RetryPolicy,
    /// On reactivation, runs put on hold are released at this many per
    /// second (default 10), so a backlog does not flood the external system.
    #[schema(exclusive_minimum = 0)]
    pub release_per_second: f64,
}

impl Default for AsyncSettings {
    fn default() -> Self {
        AsyncSettings {
            timeout_ms: 3_600_000,
            concurrency: 4,
            max_pending: 10_000,
            retry: RetryPolicy::default(),
            release_per_second: 10.0,
        }
    }
}

impl AsyncSettings {
    fn is_default(&self) -> bool {
        *self == AsyncSettings::default()
    }

    /// Every problem, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.timeout_ms == 0 || self.timeout_ms > 24 * 3_600_000 {
            p.push("async.timeout_ms must be between 1 and 86400000 (24 hours)".into());
        }
        if self.concurrency == 0 || self.concurrency > 1000 {
            p.push("async.concurrency must be between 1 and 1000".into());
        }
        if self.max_pending == 0 {
            p.push("async.max_pending must be at least 1".into());
        }
        if !(self.release_per_second.is_finite() && self.release_per_second > 0.0) {
            p.push("async.release_per_second must be a number above 0".into());
        }
        p.extend(
            self.retry
                .problems()
                .into_iter()
                .map(|e| format!("async.retry: {e}")),
        );
        p
    }
}

pub use crate::store::IntegrationStatus as Status;

/// Checks an integration name: lowercase letters, digits, `-` and `_`,
/// starting with a letter, at most 64 characters, so it is safe in a URL
/// path segment and a file name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        return Ok(());
    }
    Err(format!(
        "integration name `{}` is not valid: use lowercase letters, digits, `-` and `_`, starting with a letter, at most 64 characters",
        name.escape_debug()
    ))
}

impl Definition {
    /// Parses a definition from JSON, refusing unknown fields, and checks
    /// what needs no plugins: the name, the mode, the limits.
    pub fn from_json(value: Value) -> Result<Definition, Vec<String>> {
        let def: Definition = serde_json::from_value(value).map_err(|e| vec![e.to_string()])?;
        def.check_shape()?;
        Ok(def)
    }

    /// The checks that need nothing but the definition.
    pub fn check_shape(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_name(&self.name) {
            problems.push(e);
        }
        if self.mode == ExecutionMode::Sync && !self.async_settings.is_default() {
            problems.push("`async` settings apply only to `mode = \"async\"`".to_string());
        }
        if self.mode == ExecutionMode::Async && !self.sync.is_default() {
            problems.push(
                "`sync` settings apply only to `mode = \"sync\"` (async runs use `async.concurrency`)"
                    .to_string(),
            );
        }
        problems.extend(self.sync.problems());
        problems.extend(self.async_settings.problems());
        // The sandbox's own memory ceiling is checked at activation; here
        // only what no host could accept.
        let limits = self.limits.problems(crate::limits::MAX_MEMORY_CEILING_MIB);
        problems.extend(limits.into_iter().map(|p| format!("limits: {p}")));
        if self.connector.operation.trim().is_empty() {
            problems.push("connector.operation is empty".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The definition as JSON (what the store keeps).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a definition always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"name": "create-customer", "connector": {"plugin": "rest-json", "operation": "post"}})
    }

    #[test]
    fn a_minimal_definition_parses_with_defaults() {
        let d = Definition::from_json(minimal()).unwrap();
        assert_eq!(d.mode, ExecutionMode::Sync);
        assert!(!d.save_payloads && d.bindings.is_empty());
    }

    #[test]
    fn unknown_fields_and_bad_names_are_refused() {
        let mut v = minimal();
        v["colour"] = json!("red");
        assert!(Definition::from_json(v).unwrap_err()[0].contains("colour"));
        let mut v = minimal();
        v["name"] = json!("../etc");
        assert!(Definition::from_json(v).unwrap_err()[0].contains("`../etc`"));
    }

    #[test]
    fn async_settings_are_checked_and_only_for_async_mode() {
        let mut v = minimal();
        v["mode"] = json!("async");
        v["async"] = json!({"concurrency": 0, "retry": {"policy": "fixed", "retries": 3, "interval_ms": 0}});
        let problems = Definition::from_json(v).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("async.concurrency")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("async.retry: ")),
            "{problems:?}"
        );
        let mut v = minimal();
        v["async"] = json!({"concurrency": 2});
        let problems = Definition::from_json(v).unwrap_err();
        assert!(problems[0].contains("only to `mode = \"async\"`"), "{problems:?}");
        let mut v = minimal();
        v["mode"] = json!("async");
        let d = Definition::from_json(v).unwrap();
        assert_eq!(d.async_settings, AsyncSettings::default());
        assert_eq!(Definition::from_json(d.to_json()).unwrap(), d);
    }

    #[test]
    fn round_trips_through_json() {
        let d = Definition::from_json(minimal()).unwrap();
        assert_eq!(Definition::from_json(d.to_json()).unwrap(), d);
    }
}
