//! `plugboard runs ...`: async runs from the command line, on the data
//! folder directly (a serving host sees the changes on its next poll).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::config::Config;
use crate::queue::engine::{is_final, summary, view};
use crate::store::{AsyncRunFilter, Store};

/// `plugboard runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// One async run as JSON: status, attempts, output or error.
    Show {
        /// Run id.
        id: String,
    },
    /// An integration's async runs, newest first.
    List {
        /// Integration name.
        integration: String,
        /// Only runs with this status (queued, running, retrying, succeeded,
        /// failed, on-hold, cancelled).
        #[arg(long)]
        status: Option<String>,
    },
    /// Failed async runs not yet resolved (the dead-letter list).
    DeadLetters {
        /// Integration name.
        integration: String,
    },
    /// Send failed runs back to the queue with a fresh retry budget.
    Retry {
        /// Run ids.
        ids: Vec<String>,
        /// Every dead letter of this integration instead.
        #[arg(long, value_name = "INTEGRATION", conflicts_with = "ids")]
        all: Option<String>,
        /// With `--all`: only those that failed with this error code.
        #[arg(long, requires = "all")]
        error_code: Option<String>,
    },
    /// Mark failed runs resolved: they leave the dead-letter list.
    Resolve {
        /// Run ids.
        ids: Vec<String>,
        /// Every dead letter of this integration instead.
        #[arg(long, value_name = "INTEGRATION", conflicts_with = "ids")]
        all: Option<String>,
        /// With `--all`: only those that failed with this error code.
        #[arg(long, requires = "all")]
        error_code: Option<String>,
    },
    /// Cancel a queued, retrying or on-hold run (a running one stops at its
    /// host's next lease renewal).
    Cancel {
        /// Run id.
        id: String,
    },
}

fn now() -> u64 {
    crate::time::unix_ms(std::time::SystemTime::now())
}

fn print_line(r: &Value) {
    println!(
        "{}  {:<10} attempts={} {}",
        r["id"].as_str().unwrap_or("?"),
        r["status"].as_str().unwrap_or("?"),
        r["attempt_count"],
        r["error_code"].as_str().unwrap_or("")
    );
}

/// Runs one `runs` command.
pub fn run(cmd: RunsCommand, config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir)?;
    match cmd {
        RunsCommand::Show { id } => {
            let run = store
                .get_async_run(&id)?
                .ok_or_else(|| anyhow::anyhow!("no async run `{id}`"))?;
            println!("{}", serde_json::to_string_pretty(&view(&run))?);
        }
        RunsCommand::List { integration, status } => {
            let filter = AsyncRunFilter {
                integration: Some(integration),
                status: status.map(|s| s.replace('-', "_")),
                limit: 100,
                ..AsyncRunFilter::default()
            };
            for r in store.list_async_runs(&filter)? {
                print_line(&summary(&r));
            }
        }
        RunsCommand::DeadLetters { integration } => {
            let filter = AsyncRunFilter {
                integration: Some(integration),
                dead_letters: true,
                limit: 500,
                ..AsyncRunFilter::default()
            };
            let runs = store.list_async_runs(&filter)?;
            if runs.is_empty() {
                println!("no dead letters");
            }
            for r in runs {
                print_line(&summary(&r));
            }
        }
        RunsCommand::Retry { ids, all, error_code } => {
            let ids = match all {
                Some(i) => store.dead_letter_ids(&i, error_code.as_deref())?,
                None => ids,
            };
            let done = store.retry_failed_runs(&ids, now())?;
            println!("re-queued {} of {} run(s)", done.len(), ids.len());
            for id in ids.iter().filter(|i| !done.contains(i)) {
                println!("{id}: skipped (not failed)");
            }
        }
        RunsCommand::Resolve { ids, all, error_code } => {
            let ids = match all {
                Some(i) => store.dead_letter_ids(&i, error_code.as_deref())?,
                None => ids,
            };
            let done = store.resolve_failed_runs(&ids, now())?;
            println!("resolved {} of {} run(s)", done.len(), ids.len());
        }
        RunsCommand::Cancel { id } => {
            let run = store.cancel_run(&id, now())?;
            if is_final(&run.status) {
                println!("{id}: cancelled");
            } else {
                println!("{id}: cancel requested; its host stops it shortly");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
