//! `plugboard invoke`: run one plugin once.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use crate::config::Config;
use crate::sandbox::{ConnectorCall, Invocation, PluginKind};

/// Arguments of `plugboard invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Plugin name.
    pub plugin: String,
    /// Connector operation (processors have none).
    pub operation: Option<String>,
    /// Input JSON document: a file, or `-` for standard input [default: `{}`].
    #[arg(long, short, value_name = "FILE|-")]
    pub input: Option<String>,
    /// Bind a credential slot to a named credential from the config file.
    #[arg(long = "bind", value_name = "SLOT=CREDENTIAL", value_parser = parse_binding)]
    pub bindings: Vec<(String, String)>,
    /// Configuration for this use of the plugin: a JSON object, or `@FILE`.
    #[arg(long = "plugin-config", value_name = "JSON|@FILE")]
    pub plugin_config: Option<String>,
    /// Run the connector's `test-connection` instead of an operation.
    #[arg(long, conflicts_with = "operation")]
    pub test_connection: bool,
    /// Print the whole invocation record (output, logs, callouts, timings)
    /// as JSON instead of only the output.
    #[arg(long)]
    pub report: bool,
}

fn parse_binding(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((slot, cred)) if !slot.is_empty() && !cred.is_empty() => Ok((slot.into(), cred.into())),
        _ => Err(format!("`{s}` is not SLOT=CREDENTIAL")),
    }
}

/// Runs the command.
pub async fn run(args: InvokeArgs, config: Config) -> anyhow::Result<ExitCode> {
    let input = read_input(args.input.as_deref())?;
    let plugin_config = read_plugin_config(args.plugin_config.as_deref())?;
    // With a store in the data folder, its credentials can be bound too.
    let registry = if config.data_dir.join(crate::store::DB_FILE).exists() {
        let host = crate::host::Host::open(config)?;
        host.load_plugins().await;
        host.registry().clone()
    } else {
        crate::host::open_registry(config).await?
    };
    let Some(plugin) = registry.get(&args.plugin) else {
        let errors: Vec<String> = registry
            .files_for(&args.plugin)
            .into_iter()
            .filter_map(|f| f.error.map(|e| format!("`{}` {e}", f.file)))
            .collect();
        let known: Vec<String> = registry.plugins().iter().map(|p| p.name.clone()).collect();
        anyhow::bail!(
            "no plugin `{}` in `{}`{}; loaded plugins: {}",
            args.plugin,
            registry.path().display(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            },
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
    };
    let sandbox = registry.sandbox();
    let bindings: BTreeMap<String, String> = args.bindings.into_iter().collect();
    let invocation = match (plugin.kind, args.operation) {
        (PluginKind::Processor, Some(op)) => {
            anyhow::bail!("`{}` is a processor: it has no operation `{op}`", plugin.name)
        }
        (PluginKind::Processor, None) => sandbox.process(&plugin, &input, plugin_config).await,
        (PluginKind::Connector, _) if args.test_connection => {
            sandbox.test_connection(&plugin, &bindings, plugin_config).await
        }
        (PluginKind::Connector, None) => anyhow::bail!(
            "`{}` is a connector: name an operation ({})",
            plugin.name,
            plugin.operation_names().join(", ")
        ),
        (PluginKind::Connector, Some(operation)) => {
            let call = ConnectorCall {
                operation,
                input,
                bindings,
                config: plugin_config,
                run_id: crate::store::new_run_id(),
                attempt: 1,
                integration: None,
                limits: Default::default(),
            };
            sandbox.invoke(&plugin, call).await
        }
    };
    Ok(print(invocation, args.report))
}

fn read_input(arg: Option<&str>) -> anyhow::Result<String> {
    match arg {
        None => Ok("{}".to_string()),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| anyhow::anyhow!("cannot read the input from standard input: {e}"))?;
            Ok(s)
        }
        Some(path) => std::fs::read_to_string(PathBuf::from(path))
            .map_err(|e| anyhow::anyhow!("cannot read the input file `{path}`: {e}")),
    }
}

fn read_plugin_config(arg: Option<&str>) -> anyhow::Result<crate::sandbox::PluginConfig> {
    let Some(arg) = arg else {
        return Ok(crate::sandbox::empty_config());
    };
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the plugin config file `{path}`: {e}"))?,
        None => arg.to_string(),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(Arc::new(map)),
        Ok(_) => anyhow::bail!("the plugin config must be a JSON object"),
        Err(e) => anyhow::bail!("the plugin config is not valid JSON: {e}"),
    }
}

/// Prints the output (or the error) to stdout, plugin logs and callouts to
/// stderr, and returns 0 for success, 1 for a failed invocation.
fn print(inv: Invocation, report: bool) -> ExitCode {
    let code = if inv.output.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if report {
        let output = match &inv.output {
            Ok(o) => json!({"output": serde_json::from_str::<serde_json::Value>(o).unwrap_or_default()}),
            Err(e) => json!({"error": e.to_json()}),
        };
        let mut v = output;
        v["logs"] = json!(inv.logs);
        v["callouts"] = json!(inv.callouts);
        v["callouts_dropped"] = json!(inv.callouts_dropped);
        v["peak_host_memory_bytes"] = json!(inv.peak_host_memory_bytes);
        v["duration_ms"] = json!((inv.duration.as_secs_f64() * 1e6).round() / 1e3);
        v["peak_memory_bytes"] = json!(inv.peak_memory_bytes);
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return code;
    }
    for line in &inv.logs {
        eprintln!("[plugin {}] {}", line.level, super::terminal_safe(&line.message));
    }
    for c in &inv.callouts {
        let outcome = c
            .status
            .map_or_else(|| c.error.clone().unwrap_or_default(), |s| s.to_string());
        eprintln!(
            "[callout] {} {} -> {} ({} ms)",
            super::terminal_safe(&c.method),
            super::terminal_safe(&c.url),
            super::terminal_safe(&outcome),
            c.duration_ms
        );
    }
    if inv.callouts_dropped > 0 {
        eprintln!(
            "[callout] {} more callouts were not recorded",
            inv.callouts_dropped
        );
    }
    match inv.output {
        Ok(o) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&o)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or(o);
            println!("{pretty}");
        }
        Err(e) => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"error": e.to_json()})).unwrap_or_default()
        ),
    }
    code
}
