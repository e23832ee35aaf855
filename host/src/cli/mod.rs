//! The `plugboard` command line.
//!
//! `main.rs` only calls [`run`]; everything a command does is here, on top
//! of the library, so commands and tests exercise the same code.

mod credentials;
pub mod invoke;
mod manage;
mod plugins;
mod runs;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Plugboard: run integrations whose logic lives in sandboxed WebAssembly
/// plugins.
#[derive(Debug, Parser)]
#[command(name = "plugboard", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML). Without one, the built-in defaults apply.
    #[arg(long, global = true, env = "PLUGBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder to load plugins from [default: plugins.d].
    #[arg(long, global = true, env = "PLUGBOARD_PLUGIN_DIR", value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Folder for the host's own files, such as the compile cache [default: .plugboard].
    #[arg(long, global = true, env = "PLUGBOARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the key that seals stored credential secrets (else the
    /// `PLUGBOARD_SECRET_KEY` variable).
    #[arg(long, global = true, env = "PLUGBOARD_SECRET_KEY_FILE", value_name = "FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List and inspect the plugins in the plugin folder.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Run one plugin once and print its output: the plugin author's loop.
    Invoke(invoke::InvokeArgs),
    /// Start a local demo system and run the example plugins against it.
    Demo,
    /// Serve the invoke endpoint and the admin API on the embedded store.
    Serve(serve::ServeArgs),
    /// Create or update integrations from a file, idempotently.
    Apply(manage::ApplyArgs),
    /// List, show, activate, deactivate and delete integrations.
    #[command(subcommand)]
    Integrations(manage::IntegrationsCommand),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Tokens(manage::TokensCommand),
    /// Show, list, retry, resolve and cancel async runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// List, show and delete named credentials; generate and rotate the
    /// key that seals their secrets.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fatal(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let config = load_config(&cli)?;
        match cli.command {
            Command::Plugins(cmd) => plugins::run(cmd, config).await,
            Command::Invoke(args) => invoke::run(args, config).await,
            Command::Demo => crate::demo::run(config).await,
            Command::Serve(args) => serve::run(args, config).await,
            Command::Apply(args) => manage::apply(args, config).await,
            Command::Integrations(cmd) => manage::integrations_command(cmd, config).await,
            Command::Tokens(cmd) => manage::tokens_command(cmd, config),
            Command::Credentials(cmd) => credentials::run(cmd, config).await,
            Command::Runs(cmd) => runs::run(cmd, config),
        }
    });
    result.unwrap_or_else(fatal)
}

fn fatal(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

/// The config file (or defaults) with command-line folders applied.
fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &cli.plugin_dir {
        config.plugin_dir = dir.clone();
    }
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(file) = &cli.secret_key_file {
        config.secret_key_file = Some(file.clone());
    }
    Ok(config)
}

/// Text from a plugin (log lines, descriptions, refused paths, load errors)
/// made safe to print on a terminal: control characters, and the Unicode
/// controls that reorder or hide text, are shown as escapes, so a plugin
/// cannot move the cursor, recolour the screen or forge a line of output.
pub fn terminal_safe(text: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if hidden(c) {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    /// Escapes, line breaks and direction overrides are shown, not obeyed.
    #[test]
    fn plugin_text_is_made_terminal_safe() {
        assert_eq!(terminal_safe("plain café"), "plain café");
        assert_eq!(
            terminal_safe("\u{1b}[2J\u{1b}[31mred"),
            "\\u{1b}[2J\\u{1b}[31mred"
        );
        assert_eq!(
            terminal_safe("a\n[callout] GET /forged"),
            "a\\n[callout] GET /forged"
        );
        assert_eq!(terminal_safe("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
