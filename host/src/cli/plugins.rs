//! `plugboard plugins list` and `plugboard plugins inspect`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use crate::config::Config;
use crate::plugins::{FileStatus, Plugin, Registry};

/// Plugin folder commands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every file in the plugin folder: its plugin, kind, version and status.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One plugin: manifest, world, limits, file and load errors.
    Inspect {
        /// Plugin name (or file name without `.wasm`).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a plugins command.
pub async fn run(cmd: PluginsCommand, config: Config) -> anyhow::Result<ExitCode> {
    let registry = crate::host::open_registry(config).await?;
    match cmd {
        PluginsCommand::List { json } => list(&registry, json),
        PluginsCommand::Inspect { name, json } => inspect(&registry, &name, json),
    }
}

fn list(registry: &Registry, as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(&registry.files_json())?);
        return Ok(ExitCode::SUCCESS);
    }
    let files = registry.files();
    if files.is_empty() {
        println!("no plugins in `{}`", registry.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<10} {:<10} {:<9} FILE",
        "NAME", "KIND", "VERSION", "STATUS"
    );
    for f in &files {
        let plugin = f.plugin.as_deref().and_then(|n| registry.get(n));
        let (name, kind, version) = plugin.as_ref().map_or(("-".into(), "-".into(), "-".into()), |p| {
            (p.name.clone(), p.kind.to_string(), p.manifest.version.clone())
        });
        println!(
            "{name:<20} {kind:<10} {version:<10} {:<9} {}",
            status_word(f.status),
            f.file
        );
        match (&f.error, &plugin) {
            (Some(err), Some(p)) => println!(
                "{:<20} `{}` {} (version {} keeps serving)",
                "",
                f.file,
                super::terminal_safe(err),
                super::terminal_safe(&p.manifest.version)
            ),
            (Some(err), None) => println!("{:<20} `{}` {}", "", f.file, super::terminal_safe(err)),
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_word(s: FileStatus) -> &'static str {
    match s {
        FileStatus::Compiling => "compiling",
        FileStatus::Ready => "ready",
        FileStatus::Failed => "failed",
    }
}

fn inspect(registry: &Registry, name: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let plugin = registry.get(name);
    let files = registry.files_for(name);
    if plugin.is_none() && files.is_empty() {
        let known: Vec<String> = registry.plugins().iter().map(|p| p.name.clone()).collect();
        anyhow::bail!(
            "no plugin `{name}` in `{}`; loaded plugins: {}",
            registry.path().display(),
            known.join(", ")
        );
    }
    let errors: Vec<_> = files
        .iter()
        .filter_map(|f| f.error.as_ref().map(|e| json!({"file": f.file, "error": e})))
        .collect();
    if as_json {
        let v = json!({"plugin": plugin.as_deref().map(Plugin::to_json), "load_errors": errors});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_inspect(plugin.as_deref(), &errors);
    }
    Ok(if plugin.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_inspect(plugin: Option<&Plugin>, errors: &[serde_json::Value]) {
    if let Some(p) = plugin {
        let safe = super::terminal_safe;
        println!("{} {} ({})", p.name, safe(&p.manifest.version), p.kind);
        println!("  {}", safe(&p.manifest.description));
        println!("  file: {} ({} bytes, sha256 {})", p.file, p.size, p.sha256);
        println!("  pin in allowed_plugins: \"{}@sha256:{}\"", p.name, p.sha256);
        let l = &p.limits;
        println!(
            "  limits: {} MiB memory, {} MiB host memory, {} ms, {} bytes in, {} bytes out, {} callouts ({} at once)",
            l.memory_mib(),
            l.host_memory_mib(),
            l.timeout.as_millis(),
            l.max_input_bytes,
            l.max_output_bytes,
            l.max_callouts,
            l.max_concurrent_callouts
        );
        for o in &p.manifest.operations {
            println!("  operation {}: {}", o.name, safe(&o.description));
        }
        for s in &p.manifest.credential_slots {
            let req = if s.required { "required" } else { "optional" };
            println!("  slot {} ({req}): {}", s.name, safe(&s.description));
        }
    }
    for e in errors {
        println!(
            "  load error in `{}`: {}",
            e["file"].as_str().unwrap_or(""),
            super::terminal_safe(e["error"].as_str().unwrap_or(""))
        );
    }
}
