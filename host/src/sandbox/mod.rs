//! The sandbox: one wasmtime engine for the process, the linkers that define
//! what a plugin may import, and running one invocation under its limits.
//!
//! This module owns everything between "here is a compiled component" and
//! "here is its answer": linking a component against its world, a fresh
//! `Store` and instance per call from a pre-instantiated component, memory,
//! time, size and callout limits, capturing logs and mapping every failure
//! to an [`InvocationError`]. Finding, compiling and caching plugin files is
//! left to [`crate::plugins`].

pub mod bindings;
mod engine;
mod error;
mod run;
mod state;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

pub use error::InvocationError;
pub use run::{ConnectorCall, Invocation};
pub use state::{Bindings, HostState, LogLine, PluginConfig, empty_config};

use crate::callout::CalloutPolicy;
use crate::config::SandboxSettings;
use crate::limits::Limits;
use bindings::connector::ConnectorPre;
use bindings::processor::ProcessorPre;

/// Which world a plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// Talks to an external system.
    Connector,
    /// Turns one JSON document into another.
    Processor,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Connector => "connector",
            PluginKind::Processor => "processor",
        })
    }
}

/// A component linked against its world, ready to instantiate per call.
#[derive(Clone)]
pub enum PluginPre {
    /// A connector.
    Connector(ConnectorPre<HostState>),
    /// A processor.
    Processor(ProcessorPre<HostState>),
}

impl PluginPre {
    /// The world this plugin implements.
    pub fn kind(&self) -> PluginKind {
        match self {
            PluginPre::Connector(_) => PluginKind::Connector,
            PluginPre::Processor(_) => PluginKind::Processor,
        }
    }
}

/// What the sandbox needs of a plugin to run it: its identity, its kind, its
/// limits, the linked component and the few manifest facts a call is checked
/// against.
///
/// The plugin registry's `Plugin` implements it; the sandbox defines it so
/// that running a component does not depend on how plugin files are found,
/// compiled and kept (which [`crate::plugins`] owns, using the sandbox). It
/// is `Send + Sync` because invocations run on the async workers.
pub trait Runnable: Send + Sync {
    /// The plugin's name, as errors and the callout grant name it.
    fn name(&self) -> &str;
    /// SHA-256 of the plugin's file, lowercase hex: what a credential's
    /// `allowed_plugins` entry may pin.
    fn sha256(&self) -> &str;
    /// The world the plugin implements.
    fn kind(&self) -> PluginKind;
    /// The limits each invocation runs under, before any overrides.
    fn limits(&self) -> &Limits;
    /// The linked component.
    fn pre(&self) -> &PluginPre;
    /// Whether the component exports `config-check`.
    fn checks_config(&self) -> bool;
    /// Whether the connector declares the operation `name`.
    fn has_operation(&self, name: &str) -> bool;
    /// Every declared operation, for a message naming what is available.
    fn operation_names(&self) -> Vec<String>;
    /// The credential slots an invocation must bind.
    fn required_slots(&self) -> Vec<&str>;
}

/// Plugins are shared as `Arc`s; a shared one runs as itself.
impl<T: Runnable + ?Sized> Runnable for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn sha256(&self) -> &str {
        (**self).sha256()
    }
    fn kind(&self) -> PluginKind {
        (**self).kind()
    }
    fn limits(&self) -> &Limits {
        (**self).limits()
    }
    fn pre(&self) -> &PluginPre {
        (**self).pre()
    }
    fn checks_config(&self) -> bool {
        (**self).checks_config()
    }
    fn has_operation(&self, name: &str) -> bool {
        (**self).has_operation(name)
    }
    fn operation_names(&self) -> Vec<String> {
        (**self).operation_names()
    }
    fn required_slots(&self) -> Vec<&str> {
        (**self).required_slots()
    }
}

/// The engine, the linkers and the callout policy, shared by every
/// invocation in the process.
pub struct Sandbox {
    engine: Engine,
    connector_linker: Linker<HostState>,
    processor_linker: Linker<HostState>,
    policy: Arc<CalloutPolicy>,
    memory_ceiling_bytes: u64,
    max_instances: u32,
    _ticker: engine::EpochTicker,
}

/// Export name of the optional `config-check` interface.
pub const CONFIG_CHECK_EXPORT: &str = "plugboard:plugin/config-check@0.1.0";

/// How long `describe` may take when a plugin is loaded.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

impl Sandbox {
    /// Builds the engine (pooling allocator, epoch interruption) and links
    /// the host's imports.
    pub fn new(settings: &SandboxSettings, policy: Arc<CalloutPolicy>) -> anyhow::Result<Sandbox> {
        let engine = engine::build_engine(settings)?;
        let connector_linker = engine::connector_linker(&engine)?;
        let processor_linker = engine::processor_linker(&engine)?;
        let ticker = engine::EpochTicker::start(&engine);
        Ok(Sandbox {
            engine,
            connector_linker,
            processor_linker,
            policy,
            memory_ceiling_bytes: settings.max_memory_bytes,
            max_instances: settings.max_instances,
            _ticker: ticker,
        })
    }

    /// No plugin's memory limit may exceed this (`[sandbox] max_memory_mib`).
    pub fn memory_ceiling_bytes(&self) -> u64 {
        self.memory_ceiling_bytes
    }

    /// Invocations the instance pool holds at once (`[sandbox] max_instances`).
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }

    /// The process's engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The callout policy and its credentials.
    pub fn policy(&self) -> &Arc<CalloutPolicy> {
        &self.policy
    }

    /// Whether `component` exports the optional `config-check` interface.
    pub fn checks_config(&self, component: &Component) -> bool {
        component
            .component_type()
            .exports(&self.engine)
            .any(|(name, _)| name == CONFIG_CHECK_EXPORT)
    }

    /// Works out which world `component` implements and links it, or says
    /// in words why it cannot be a plugin.
    pub fn link(&self, component: &Component) -> Result<PluginPre, String> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        if has("invoke") {
            let pre = self
                .connector_linker
                .instantiate_pre(component)
                .map_err(|e| link_error(e, PluginKind::Connector))?;
            let pre = ConnectorPre::new(pre).map_err(|e| export_error(e, PluginKind::Connector))?;
            Ok(PluginPre::Connector(pre))
        } else if has("process") {
            let pre = self
                .processor_linker
                .instantiate_pre(component)
                .map_err(|e| link_error(e, PluginKind::Processor))?;
            let pre = ProcessorPre::new(pre).map_err(|e| export_error(e, PluginKind::Processor))?;
            Ok(PluginPre::Processor(pre))
        } else {
            let shown = if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(format!(
                "implements neither the `connector` world (exports `invoke`) nor the `processor` world (exports `process`); it exports {shown}"
            ))
        }
    }
}

fn link_error(e: wasmtime::Error, kind: PluginKind) -> String {
    let text = format!("{e:#}");
    let hint = if kind == PluginKind::Processor && text.contains("wasi:http") {
        " (processors have no network: only connectors may import `wasi:http`)"
    } else {
        ""
    };
    format!("cannot be linked as a {kind}: {text}{hint}")
}

fn export_error(e: wasmtime::Error, kind: PluginKind) -> String {
    format!("does not match the `{kind}` world of plugboard:plugin@0.1.0: {e:#}")
}
