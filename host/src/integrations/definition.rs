//! What an integration is: its definition as users write it (TOML in
//! `plugboard apply` files, JSON over the admin API), and the checks that
//! need nothing but the definition itself.
//!
//! Checks against the loaded plugins and credentials (activation) live in
//! [`super::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::limits::LimitOverrides;

/// An integration definition: input processor -> connector operation ->
/// output processor, bound to credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Developer name: URL-safe, unique (`create-customer`).
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
    pub bindings: BTreeMap<String, String>,
    /// `sync`: the caller waits for the output.
    #[serde(default)]
    pub mode: ExecutionMode,
    /// Keep the request and response bodies with each run.
    #[serde(default)]
    pub save_payloads: bool,
    /// Limits that override the plugins' for this integration's steps.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: LimitOverrides,
}

fn is_default(l: &LimitOverrides) -> bool {
    *l == LimitOverrides::default()
}

/// The connector step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorStep {
    /// Connector plugin name.
    pub plugin: String,
    /// Operation name from its manifest.
    pub operation: String,
    /// Configuration for this use of the connector.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
}

/// A processor step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorStep {
    /// Processor plugin name.
    pub plugin: String,
    /// Configuration for this use of the processor.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
}

/// How callers get the result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// The caller waits for the output (a service-type integration).
    #[default]
    Sync,
    /// Queued and run in the background (a process-type integration).
    Async,
}

/// Lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being written; only admins can test-invoke it.
    Draft,
    /// Validated and invocable.
    Active,
    /// Switched off; invocations are refused.
    Inactive,
}

impl Status {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "draft" => Some(Status::Draft),
            "active" => Some(Status::Active),
            "inactive" => Some(Status::Inactive),
            _ => None,
        }
    }
}

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
        if self.mode == ExecutionMode::Async {
            problems.push("execution mode `async` is not available yet: use `sync`".to_string());
        }
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
    fn round_trips_through_json() {
        let d = Definition::from_json(minimal()).unwrap();
        assert_eq!(Definition::from_json(d.to_json()).unwrap(), d);
    }
}
