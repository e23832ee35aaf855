//! `hostile`: a test fixture for the host's test suite. Each operation does
//! one hostile or probing thing (spin, exhaust memory or stack, print, read
//! files, call out, fail on request) so that the tests can prove the host
//! contains it. Not a product plugin: never ship it.

// The generated wasi:http bindings have a function with many parameters.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:plugin/connector",
    generate_all,
});

mod abuse;
mod bombs;
mod calls;
mod probes;

use plugboard::plugin::types::{CredentialSlot, Operation};
use serde_json::Value;

/// Every operation with its description.
const OPERATIONS: &[(&str, &str)] = &[
    ("spin", "loop forever"),
    ("grow", "allocate and touch 1 MiB chunks until allocation fails"),
    ("recurse", "recurse without bound until the stack overflows"),
    ("huge-output", "return a JSON string of `bytes` bytes (default 16 MiB)"),
    ("panic", "panic with `plugin bug`"),
    ("read-file", "try to read `path` (default `/etc/passwd`), `/` and `.`"),
    ("read-env", "return the environment variables and arguments"),
    ("callout", "send the input as a callout request and return what came back"),
    ("callout-loop", "send `count` GET callouts to `path` on slot `api`"),
    ("tcp", "try to open a TCP connection to `addr` (default `127.0.0.1:80`)"),
    ("echo-context", "return the invoke-context and the configuration"),
    ("print", "print `lines` lines to stdout, stderr and the log"),
    ("sleep", "busy-wait `ms` milliseconds"),
    ("fail", "return the plugin-error described by the input"),
    ("bad-json", "return output that is not JSON"),
    ("mark-memory", "fill `mib` MiB of memory with a marker and leave it behind"),
    ("scan-memory", "grow memory by `mib` MiB and count markers anywhere in linear memory"),
    ("log-bomb", "log a line of `bytes` bytes `count` times"),
    ("wasi-request", "send one raw wasi:http request (`path`, `method`, `headers`) and return what came back"),
    ("body-bomb", "start `count` wasi:http POSTs of up to `bytes` each and never finish their bodies"),
    ("fields-bomb", "build `count` wasi:http header sets of `bytes` each and keep them"),
    ("unread-responses", "start `count` wasi:http GETs of `path` and never read the responses"),
];

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Manifest {
        Manifest {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: each operation misbehaves or probes the sandbox on purpose.".into(),
            operations: OPERATIONS.iter().map(|(name, description)| operation(name, description)).collect(),
            credential_slots: vec![slot("api", "the API probed by callouts"), slot("other", "a second slot")],
        }
    }

    fn invoke(context: InvokeContext, operation: String, input: String) -> Result<String, PluginError> {
        let input = parse(&input)?;
        let output = match operation.as_str() {
            "spin" => abuse::spin(),
            "grow" => abuse::grow(),
            "recurse" => abuse::recurse(&input),
            "huge-output" => return Ok(abuse::huge_output(&input)),
            "panic" => panic!("plugin bug"),
            "read-file" => probes::read_file(&input),
            "read-env" => probes::read_env(),
            "callout" => calls::callout(input)?,
            "callout-loop" => calls::callout_loop(&input),
            "tcp" => probes::tcp(&input),
            "echo-context" => probes::echo_context(&context),
            "print" => probes::print(&input),
            "sleep" => probes::sleep(&input),
            "fail" => return Err(calls::fail(&input)),
            "bad-json" => return Ok("this is not json".into()),
            "mark-memory" => abuse::mark_memory(&input),
            "scan-memory" => abuse::scan_memory(&input),
            "log-bomb" => bombs::log_bomb(&input),
            "wasi-request" => bombs::wasi_request(&input),
            "body-bomb" => bombs::body_bomb(&input),
            "fields-bomb" => bombs::fields_bomb(&input),
            "unread-responses" => bombs::unread_responses(&input),
            other => {
                return Err(error("unknown_operation", format!("unknown operation `{other}`")));
            }
        };
        Ok(output.to_string())
    }

    fn test_connection() -> Result<(), PluginError> {
        Ok(())
    }
}

export!(Hostile);

fn operation(name: &str, description: &str) -> Operation {
    Operation { name: name.into(), description: description.into(), input_schema: None, output_schema: None }
}

fn slot(name: &str, description: &str) -> CredentialSlot {
    CredentialSlot { name: name.into(), description: description.into(), required: false }
}

/// The input document; empty input counts as `null`.
fn parse(input: &str) -> Result<Value, PluginError> {
    if input.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(input).map_err(|e| error("invalid_input", format!("input is not JSON: {e}")))
}

/// A plugin-error that is not retryable and has no details.
fn error(code: &str, message: String) -> PluginError {
    PluginError { code: code.into(), message, retryable: false, details: None }
}

/// The number at `input[key]`, or `default`.
fn number(input: &Value, key: &str, default: u64) -> u64 {
    input.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// The string at `input[key]`, or `default`.
fn text<'a>(input: &'a Value, key: &str, default: &'a str) -> &'a str {
    input.get(key).and_then(Value::as_str).unwrap_or(default)
}
