//! `plugboard credentials ...`: named credentials from the command line,
//! on the data folder directly (a serving host picks changes up within a
//! second).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::credentials::seal::SealKey;
use crate::credentials::service::rotate_key;
use crate::host::Host;
use crate::store::Store;

/// `plugboard credentials ...`.
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Every credential: source, base URL, authentication, secrets set.
    List,
    /// One credential as JSON (never its secrets).
    Show {
        /// Credential name.
        name: String,
    },
    /// Delete a stored credential and its secrets (refused while an
    /// integration uses it).
    Delete {
        /// Credential name.
        name: String,
    },
    /// Print a new random secret key (base64) to seal secrets with; keep it
    /// in a secret manager and give it to the host as PLUGBOARD_SECRET_KEY or
    /// --secret-key-file.
    GenerateKey,
    /// Re-seal every stored secret with a new key, in one transaction, then
    /// rewrite the database so no secret sealed with the old key is left in
    /// its files. The current key comes from PLUGBOARD_SECRET_KEY /
    /// --secret-key-file. Restart serving hosts with the new key afterwards.
    RotateKey {
        /// File holding the new key (from `generate-key`).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

/// Runs one `credentials` command.
pub async fn run(cmd: CredentialsCommand, config: Config) -> anyhow::Result<ExitCode> {
    match cmd {
        CredentialsCommand::GenerateKey => {
            println!("{}", SealKey::generate().encode());
            return Ok(ExitCode::SUCCESS);
        }
        CredentialsCommand::RotateKey { new_key_file } => {
            let store = Store::open(&config.data_dir)?;
            let old = SealKey::load(config.secret_key_file.as_deref())
                .map_err(anyhow::Error::msg)?
                .context("rotation needs the current key: set PLUGBOARD_SECRET_KEY or --secret-key-file")?;
            let new = SealKey::load(Some(&new_key_file))
                .map_err(anyhow::Error::msg)?
                .context("the new key file is empty")?;
            let rotation = rotate_key(&store, &old, &new)?;
            let n = rotation.resealed;
            println!(
                "re-sealed {n} secret{} with the new key (check value {}); restart hosts with the new key",
                if n == 1 { "" } else { "s" },
                new.check_value()
            );
            if !rotation.scrubbed {
                eprintln!(
                    "warning: a running host kept the database's write-ahead log in use, so `plugboard.db-wal` may still hold secrets sealed with the old key; stop every host and run `rotate-key` again with the new key as both keys to empty it"
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let host = Host::open(config)?;
    let used = host.integrations().credential_users()?;
    match cmd {
        CredentialsCommand::List => {
            let all = host.credentials().list(&used)?;
            if all.is_empty() {
                println!("no credentials");
            }
            for c in all {
                let secrets: Vec<String> = c["secrets"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{:<20} {:<7} {:<28} {:<40} {}{}",
                    c["name"].as_str().unwrap_or("?"),
                    c["source"].as_str().unwrap_or("?"),
                    c["auth"]["type"].as_str().unwrap_or("?"),
                    c["base_url"].as_str().unwrap_or("?"),
                    secrets.join(" "),
                    if c["enabled"] == false { " (disabled)" } else { "" }
                );
            }
        }
        CredentialsCommand::Show { name } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&host.credentials().get(&name, &used)?)?
            );
        }
        CredentialsCommand::Delete { name } => {
            host.credentials().delete(&name, &used)?;
            println!("{name}: deleted");
        }
        CredentialsCommand::GenerateKey | CredentialsCommand::RotateKey { .. } => {
            unreachable!("handled above")
        }
    }
    Ok(ExitCode::SUCCESS)
}
