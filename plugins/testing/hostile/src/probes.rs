//! Operations that probe the sandbox and report what the guest observed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plugboard::plugin::config;
use crate::plugboard::plugin::log::{self, Level};
use crate::{InvokeContext, number, text};

/// Try to read a file and list `/` and `.`; report each outcome.
pub fn read_file(input: &Value) -> Value {
    let file = std::fs::read_to_string(text(input, "path", "/etc/passwd")).map(|s| s.len());
    let list = |dir: &str| std::fs::read_dir(dir).map(|entries| entries.count());
    json!({"file": outcome(file), "root": outcome(list("/")), "cwd": outcome(list("."))})
}

/// `ok:<n>` or `err:<message>`.
fn outcome<T: std::fmt::Display, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("ok:{value}"),
        Err(error) => format!("err:{error}"),
    }
}

/// The environment variables and arguments the guest sees.
pub fn read_env() -> Value {
    json!({"vars": std::env::vars().collect::<Vec<_>>(), "args": std::env::args().collect::<Vec<_>>()})
}

/// Try to open a TCP connection to `input.addr`.
pub fn tcp(input: &Value) -> Value {
    let result = match std::net::TcpStream::connect(text(input, "addr", "127.0.0.1:80")) {
        Ok(_) => "ok".to_owned(),
        Err(error) => format!("err:{error}"),
    };
    json!({"result": result})
}

/// The invoke-context and the configuration as JSON.
pub fn echo_context(context: &InvokeContext) -> Value {
    let config = config::get_json();
    json!({
        "run_id": context.run_id,
        "attempt": context.attempt,
        "integration": context.integration,
        "deadline_ms": context.deadline_ms,
        "config": serde_json::from_str::<Value>(&config).unwrap_or(Value::String(config)),
    })
}

/// Print `input.lines` lines (default 1) to stdout, stderr and the log.
pub fn print(input: &Value) -> Value {
    for line in 1..=number(input, "lines", 1) {
        println!("to stdout {line}");
        eprintln!("to stderr {line}");
        log::log(Level::Info, &format!("to log {line}"));
    }
    json!({})
}

/// Busy-wait `input.ms` milliseconds.
pub fn sleep(input: &Value) -> Value {
    let wanted = Duration::from_millis(number(input, "ms", 0));
    let start = Instant::now();
    while start.elapsed() < wanted {
        std::hint::spin_loop();
    }
    json!({"slept_ms": start.elapsed().as_millis() as u64})
}
