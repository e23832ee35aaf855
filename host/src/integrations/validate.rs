//! Checking a definition against what is loaded now: the plugins, their
//! operations and slots, the credentials.
//!
//! Activation runs these checks and refuses with every problem listed. An
//! active integration runs them again before each invocation (they are map
//! look-ups), so an integration whose plugin was removed, or no longer offers
//! its operation, reports itself degraded with the reason instead of failing
//! somewhere inside the pipeline.

use std::sync::Arc;

use super::definition::Definition;
use crate::callout::CalloutPolicy;
use crate::plugins::{Plugin, Registry};
use crate::sandbox::PluginKind;

/// The plugins a definition runs, resolved.
#[derive(Clone)]
pub struct Resolved {
    /// The connector.
    pub connector: Arc<Plugin>,
    /// The input processor, if any.
    pub input: Option<Arc<Plugin>>,
    /// The output processor, if any.
    pub output: Option<Arc<Plugin>>,
}

/// Resolves the definition's plugins and checks operations, slots and
/// credentials. The error lists every problem found.
pub fn resolve(
    def: &Definition,
    registry: &Registry,
    policy: &CalloutPolicy,
) -> Result<Resolved, Vec<String>> {
    let mut problems = Vec::new();
    let ceiling_mib = registry.sandbox().memory_ceiling_bytes() / (1024 * 1024);
    let limits = def.limits.problems(ceiling_mib);
    problems.extend(limits.into_iter().map(|p| format!("limits: {p}")));
    let connector = plugin(
        registry,
        &def.connector.plugin,
        PluginKind::Connector,
        "connector",
        &mut problems,
    );
    let input = def.input_processor.as_ref().and_then(|p| {
        plugin(
            registry,
            &p.plugin,
            PluginKind::Processor,
            "input processor",
            &mut problems,
        )
    });
    let output = def.output_processor.as_ref().and_then(|p| {
        plugin(
            registry,
            &p.plugin,
            PluginKind::Processor,
            "output processor",
            &mut problems,
        )
    });
    if let Some(c) = &connector {
        check_operation(def, c, &mut problems);
        check_bindings(def, c, policy, &mut problems);
    }
    let wants_input = def.input_processor.is_some();
    let wants_output = def.output_processor.is_some();
    match connector {
        Some(connector)
            if problems.is_empty() && input.is_some() == wants_input && output.is_some() == wants_output =>
        {
            Ok(Resolved {
                connector,
                input,
                output,
            })
        }
        _ => Err(problems),
    }
}

fn plugin(
    registry: &Registry,
    name: &str,
    kind: PluginKind,
    role: &str,
    problems: &mut Vec<String>,
) -> Option<Arc<Plugin>> {
    match registry.get(name) {
        Some(p) if p.kind == kind => Some(p),
        Some(p) => {
            problems.push(format!("{role} `{name}` is a {}, not a {kind}", p.kind));
            None
        }
        None => {
            problems.push(format!("{role} plugin `{name}` is not loaded"));
            None
        }
    }
}

fn check_operation(def: &Definition, connector: &Plugin, problems: &mut Vec<String>) {
    let op = &def.connector.operation;
    if !connector.manifest.operations.iter().any(|o| &o.name == op) {
        problems.push(format!(
            "connector `{}` has no operation `{op}`; it offers: {}",
            connector.name,
            connector.operation_names().join(", ")
        ));
    }
}

fn check_bindings(def: &Definition, connector: &Plugin, policy: &CalloutPolicy, problems: &mut Vec<String>) {
    let slots = &connector.manifest.credential_slots;
    for slot in slots
        .iter()
        .filter(|s| s.required && !def.bindings.contains_key(&s.name))
    {
        problems.push(format!(
            "required credential slot `{}` of connector `{}` is not bound",
            slot.name, connector.name
        ));
    }
    for (slot, cred) in &def.bindings {
        if !slots.iter().any(|s| &s.name == slot) {
            problems.push(format!(
                "connector `{}` has no credential slot `{slot}`",
                connector.name
            ));
        }
        match policy.credential(cred) {
            None => problems.push(format!(
                "slot `{slot}` is bound to credential `{cred}`, which does not exist"
            )),
            Some(c) if !c.spec().allows(&connector.name, &connector.sha256) => problems.push(format!(
                "credential `{cred}` does not allow plugin `{}`",
                connector.name
            )),
            Some(_) => {}
        }
    }
}
