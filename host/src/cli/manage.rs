//! `plugboard apply`, `plugboard integrations` and `plugboard tokens`: the
//! store, managed from the command line.
//!
//! These work on the data folder directly (SQLite in WAL mode lets them run
//! beside a serving host, which reads definitions from the store on every
//! request), so a team can keep definitions in git and apply them in CI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::credentials::service::ApplyOutcome;
use crate::host::Host;
use crate::integrations::{IntegrationError, Integrations, Status};
use crate::store::{Role, Store};

/// Arguments of `plugboard apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// TOML file with `[[integration]]` tables.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
}

/// `[[credential]]` tables (a name plus the credential, secrets as
/// `env:`/`file:` references) and `[[integration]]` tables (a definition
/// plus the wanted status). Credentials are applied first, so integrations
/// in the same file can bind them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyFile {
    #[serde(default)]
    credential: Vec<toml::Table>,
    #[serde(default)]
    integration: Vec<toml::Table>,
}

/// `plugboard integrations ...`.
#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Every integration with its status and version.
    List,
    /// One integration as JSON, with its versions.
    Show {
        /// Integration name.
        name: String,
    },
    /// Validate and activate.
    Activate {
        /// Integration name.
        name: String,
    },
    /// Switch off.
    Deactivate {
        /// Integration name.
        name: String,
    },
    /// Delete (its runs stay).
    Delete {
        /// Integration name.
        name: String,
    },
}

/// `plugboard tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print its secret (shown only this once).
    Create {
        /// A name to recognise the token by.
        name: String,
        /// `admin` (everything) or `invoker` (invoke only).
        #[arg(long, value_enum, default_value = "invoker")]
        role: RoleArg,
        /// Limit an invoker token to these integrations (repeatable).
        #[arg(long = "integration")]
        integrations: Vec<String>,
    },
    /// Every token, without secrets.
    List,
    /// Revoke a token by id or name.
    Revoke {
        /// Token id or name.
        token: String,
    },
}

/// A role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Everything.
    Admin,
    /// Invoke only.
    Invoker,
}

/// The integrations of the data folder, with the plugins loaded (nothing
/// starts in the background: see [`Host::open`]).
async fn integrations(config: Config) -> anyhow::Result<Arc<Integrations>> {
    let host = Host::open(config)?;
    host.load_plugins().await;
    Ok(host.integrations().clone())
}

/// Applies a file: creates missing integrations, updates changed ones, sets
/// the wanted status. Prints one line per integration; running it twice
/// changes nothing the second time.
pub async fn apply(args: ApplyArgs, config: Config) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let file: ApplyFile =
        toml::from_str(&text).with_context(|| format!("invalid file `{}`", args.file.display()))?;
    let host = Host::open(config)?;
    let mut failed = false;
    for mut table in file.credential {
        let name = match table.remove("name") {
            Some(toml::Value::String(n)) => n,
            _ => {
                failed = true;
                println!("credential: refused: every [[credential]] needs `name = \"...\"`");
                continue;
            }
        };
        let outcome = toml::Value::Table(table)
            .try_into::<crate::credentials::input::RawCredential>()
            .map_err(|e| e.to_string())
            .and_then(|raw| host.credentials().apply(&name, raw).map_err(|e| e.to_string()));
        match outcome {
            Ok(o) => println!(
                "credential {name}: {}",
                match o {
                    ApplyOutcome::Created => "created",
                    ApplyOutcome::Updated => "updated",
                    ApplyOutcome::Unchanged => "unchanged",
                }
            ),
            Err(e) => {
                failed = true;
                println!("credential {name}: refused: {e}");
            }
        }
    }
    host.load_plugins().await;
    let service = host.integrations();
    for mut table in file.integration {
        let wanted = table.remove("status").map(|s| s.as_str().and_then(Status::parse));
        let name = table
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let def = serde_json::to_value(&table).context("definition to JSON")?;
        match apply_one(service, &name, def, wanted).await {
            Ok(line) => println!("{name}: {line}"),
            Err(e) => {
                failed = true;
                println!("{name}: refused: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn apply_one(
    service: &Integrations,
    name: &str,
    def: Value,
    wanted: Option<Option<Status>>,
) -> Result<String, IntegrationError> {
    let def =
        crate::integrations::definition::Definition::from_json(def).map_err(IntegrationError::Invalid)?;
    let mut what = match service.get(name) {
        Err(IntegrationError::NotFound(_)) => format!("created (version {})", service.create(def)?.version),
        Err(e) => return Err(e),
        Ok(_) => match service.update(name, def).await? {
            (v, true) => format!("updated (version {})", v.version),
            (_, false) => "unchanged".to_string(),
        },
    };
    let current = service.get(name)?.status;
    match wanted {
        None => {}
        Some(None) => {
            return Err(IntegrationError::Invalid(vec![
                "status must be `draft`, `active` or `inactive`".into(),
            ]));
        }
        Some(Some(s)) if s == current => {}
        Some(Some(Status::Active)) => {
            service.activate(name).await?;
            what.push_str(&format!(", activated (was {current})"));
        }
        Some(Some(Status::Inactive)) => {
            service.deactivate(name)?;
            what.push_str(&format!(", deactivated (was {current})"));
        }
        Some(Some(Status::Draft)) => {
            return Err(IntegrationError::Invalid(vec![
                "an integration cannot go back to `draft`".into(),
            ]));
        }
    }
    Ok(what)
}

/// Runs an integrations command.
pub async fn integrations_command(cmd: IntegrationsCommand, config: Config) -> anyhow::Result<ExitCode> {
    let service = integrations(config).await?;
    let shown = match cmd {
        IntegrationsCommand::List => {
            for i in service.list()? {
                let degraded = if i.degraded {
                    format!(" (degraded: {})", i.problems.join("; "))
                } else {
                    String::new()
                };
                println!("{:<32} {:<9} v{}{degraded}", i.name, i.status, i.version);
            }
            return Ok(ExitCode::SUCCESS);
        }
        IntegrationsCommand::Show { name } => {
            let mut v = serde_json::to_value(service.get(&name)?)?;
            v["versions"] = serde_json::to_value(service.versions(&name)?)?;
            v
        }
        IntegrationsCommand::Activate { name } => serde_json::to_value(service.activate(&name).await?)?,
        IntegrationsCommand::Deactivate { name } => serde_json::to_value(service.deactivate(&name)?)?,
        IntegrationsCommand::Delete { name } => {
            service.delete(&name)?;
            println!("deleted `{name}`");
            return Ok(ExitCode::SUCCESS);
        }
    };
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs a tokens command.
pub fn tokens_command(cmd: TokensCommand, config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir)?;
    match cmd {
        TokensCommand::Create {
            name,
            role,
            integrations,
        } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Invoker => Role::Invoker,
            };
            if matches!(role, Role::Admin) && !integrations.is_empty() {
                anyhow::bail!("`--integration` limits invoker tokens; an admin token may do everything");
            }
            let limit = (!integrations.is_empty()).then_some(integrations);
            let (record, secret) = store.create_token(&name, role, limit)?;
            println!(
                "created token `{}` ({}); its secret is shown only this once:\n\n    {secret}\n",
                record.name, record.id
            );
        }
        TokensCommand::List => {
            for t in store.list_tokens()? {
                let state = if t.revoked_at_ms.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let scope = t.integrations.map(|l| l.join(",")).unwrap_or_else(|| "*".into());
                println!(
                    "{:<20} {:<24} {:<8} {:<8} {scope}",
                    t.id,
                    t.name,
                    format!("{:?}", t.role).to_lowercase(),
                    state
                );
            }
        }
        TokensCommand::Revoke { token } => {
            let t = store.revoke_token(&token)?;
            println!("revoked token `{}` ({})", t.name, t.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
