//! A plugin's manifest, checked.
//!
//! `describe` returns the WIT record; this module turns it into the host's
//! own type and refuses manifests that would cause trouble later: bad or
//! duplicate names, schemas that are not JSON Schemas, a processor claiming
//! operations.

use serde::Serialize;
use serde_json::Value;

use crate::names::{check_operation_name, check_plugin_name, check_slot_name};
use crate::sandbox::PluginKind;
use crate::sandbox::bindings::types;

/// What a plugin says about itself, validated.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Manifest {
    /// Plugin name, unique in the folder.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// Operations (connectors only).
    pub operations: Vec<Operation>,
    /// Credential slots (connectors only).
    pub credential_slots: Vec<CredentialSlot>,
}

/// One connector operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Operation {
    /// Name used to invoke it.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: Option<Value>,
    /// JSON Schema of its output.
    pub output_schema: Option<Value>,
}

/// One credential slot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CredentialSlot {
    /// Slot name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether an integration must bind it.
    pub required: bool,
}

impl Manifest {
    /// Validates the manifest a plugin of `kind` returned; the error lists
    /// every problem.
    pub fn from_wit(kind: PluginKind, m: types::Manifest) -> Result<Manifest, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_plugin_name(&m.name) {
            problems.push(e);
        }
        if m.version.trim().is_empty() {
            problems.push("version is empty".to_string());
        }
        if kind == PluginKind::Processor && (!m.operations.is_empty() || !m.credential_slots.is_empty()) {
            problems.push("a processor declares no operations and no credential slots".to_string());
        }
        if kind == PluginKind::Connector && m.operations.is_empty() {
            problems.push("a connector must declare at least one operation".to_string());
        }
        let operations = m
            .operations
            .into_iter()
            .filter_map(|o| operation(o, &mut problems))
            .collect::<Vec<_>>();
        let credential_slots = m
            .credential_slots
            .into_iter()
            .filter_map(|s| slot(s, &mut problems))
            .collect::<Vec<_>>();
        duplicates("operation", operations.iter().map(|o| &o.name), &mut problems);
        duplicates(
            "credential slot",
            credential_slots.iter().map(|s| &s.name),
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Manifest {
            name: m.name,
            version: m.version,
            description: m.description,
            operations,
            credential_slots,
        })
    }
}

fn operation(o: types::Operation, problems: &mut Vec<String>) -> Option<Operation> {
    let mut ok = true;
    if let Err(e) = check_operation_name(&o.name) {
        problems.push(e);
        ok = false;
    }
    let mut schema = |which: &str, text: Option<String>| -> Option<Value> {
        let text = text?;
        match parse_schema(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("operation `{}` has an {which} schema that {e}", o.name));
                ok = false;
                None
            }
        }
    };
    let input_schema = schema("input", o.input_schema);
    let output_schema = schema("output", o.output_schema);
    ok.then_some(Operation {
        name: o.name,
        description: o.description,
        input_schema,
        output_schema,
    })
}

fn parse_schema(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    jsonschema::meta::validate(&value).map_err(|e| format!("is not a valid JSON Schema: {e}"))?;
    Ok(value)
}

fn slot(s: types::CredentialSlot, problems: &mut Vec<String>) -> Option<CredentialSlot> {
    if let Err(e) = check_slot_name(&s.name) {
        problems.push(format!("credential slot {e}"));
        return None;
    }
    Some(CredentialSlot {
        name: s.name,
        description: s.description,
        required: s.required,
    })
}

fn duplicates<'a>(what: &str, names: impl Iterator<Item = &'a String>, problems: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            problems.push(format!("{what} `{n}` is declared twice"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit(name: &str) -> types::Manifest {
        types::Manifest {
            name: name.into(),
            version: "1.0.0".into(),
            description: "d".into(),
            operations: vec![types::Operation {
                name: "get".into(),
                description: "".into(),
                input_schema: Some(r#"{"type":"object"}"#.into()),
                output_schema: None,
            }],
            credential_slots: vec![],
        }
    }

    #[test]
    fn good_connector_manifest_passes() {
        let m = Manifest::from_wit(PluginKind::Connector, wit("rest-json")).unwrap();
        assert_eq!(
            m.operations[0].input_schema,
            Some(serde_json::json!({"type":"object"}))
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let mut m = wit("Not A Name!");
        m.operations.push(m.operations[0].clone());
        m.operations[1].output_schema = Some(r#"{"type": 12}"#.into());
        let errs = Manifest::from_wit(PluginKind::Connector, m).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("plugin name `Not A Name!`")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("not a valid JSON Schema")),
            "{errs:?}"
        );
    }

    #[test]
    fn processors_have_no_operations() {
        let errs = Manifest::from_wit(PluginKind::Processor, wit("p")).unwrap_err();
        assert!(errs[0].contains("processor"), "{errs:?}");
    }
}
