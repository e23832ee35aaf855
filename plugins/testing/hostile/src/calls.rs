//! Operations around the `callout` interface and plugin-errors, reporting
//! exactly what the guest observed.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::plugboard::plugin::callout::{self, CalloutError, Request, Response};
use crate::{PluginError, error, number, text};

/// The `callout` operation's input: a callout request with defaults.
#[derive(Deserialize)]
struct CalloutInput {
    #[serde(default = "api")]
    credential: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout_ms: Option<u32>,
}

fn api() -> String {
    "api".into()
}

fn get() -> String {
    "GET".into()
}

fn root() -> String {
    "/".into()
}

/// Send the input as a callout; `{"ok": ...}` or `{"err": ...}`.
pub fn callout(input: Value) -> Result<Value, PluginError> {
    let input: CalloutInput = serde_json::from_value(input)
        .map_err(|e| error("invalid_input", format!("invalid callout input: {e}")))?;
    let request = Request {
        credential: input.credential,
        method: input.method,
        path: input.path,
        headers: input.headers,
        body: input.body.map(String::into_bytes),
        timeout_ms: input.timeout_ms,
    };
    Ok(match callout::send(&request) {
        Ok(response) => json!({"ok": response_json(response)}),
        Err(error) => json!({"err": error_json(&error)}),
    })
}

fn response_json(response: Response) -> Value {
    let body = String::from_utf8_lossy(&response.body);
    json!({"status": response.status, "headers": response.headers, "body": body})
}

fn error_json(error: &CalloutError) -> Value {
    let (kind, detail) = match error {
        CalloutError::UnboundSlot(d) => ("unbound-slot", json!(d)),
        CalloutError::Denied(d) => ("denied", json!(d)),
        CalloutError::BudgetExhausted(n) => ("budget-exhausted", json!(n)),
        CalloutError::Timeout(ms) => ("timeout", json!(ms)),
        CalloutError::TooLarge(n) => ("too-large", json!(n)),
        CalloutError::Unreachable(d) => ("unreachable", json!(d)),
    };
    json!({"kind": kind, "detail": detail})
}

/// `input.count` GET callouts to `input.path` on slot `api`; with
/// `input.path_bytes`, the path is padded to that many bytes (and so
/// refused), to see what the host keeps of each.
pub fn callout_loop(input: &Value) -> Value {
    let mut path = text(input, "path", "/").to_string();
    let pad = number(input, "path_bytes", 0) as usize;
    if pad > path.len() {
        path.push_str(&"/..".repeat((pad - path.len()) / 3 + 1));
    }
    let request = Request {
        credential: api(),
        method: get(),
        path,
        headers: Vec::new(),
        body: None,
        timeout_ms: None,
    };
    let (mut statuses, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..number(input, "count", 1) {
        match callout::send(&request) {
            Ok(response) => statuses.push(response.status),
            Err(error) => errors.push(error_json(&error)["kind"].clone()),
        }
    }
    json!({"statuses": statuses, "errors": errors})
}

/// The plugin-error described by `{"code", "message", "retryable", "details"}`.
/// A string `details` is passed on as it is (even when it is not JSON);
/// any other value is serialized.
pub fn fail(input: &Value) -> PluginError {
    let details = match input.get("details") {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => Some(raw.clone()),
        Some(other) => Some(other.to_string()),
    };
    PluginError {
        code: text(input, "code", "failed").into(),
        message: text(input, "message", "failure requested by the test").into(),
        retryable: input.get("retryable").and_then(Value::as_bool).unwrap_or(false),
        details,
    }
}
