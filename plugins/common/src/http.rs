//! The HTTP side shared by the `rest-json` and `http-fetch` connectors: the
//! operations and their schemas, turning an input document into a [`Call`],
//! turning a [`Reply`] into the output document, and mapping transport
//! failures ([`UpstreamError`]) to plugin-errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Failure;

/// The operations an HTTP connector may offer: name, method, description.
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    ("get", "GET", "send a GET request and return the answer"),
    ("post", "POST", "send a POST request with an optional JSON body"),
    ("put", "PUT", "send a PUT request with an optional JSON body"),
    ("patch", "PATCH", "send a PATCH request with an optional JSON body"),
    ("delete", "DELETE", "send a DELETE request with an optional JSON body"),
];

/// The HTTP method of `operation`, or an `unknown_operation` failure.
pub fn method_for(operation: &str, offered: &[&str]) -> Result<&'static str, Failure> {
    OPERATIONS
        .iter()
        .find(|(name, ..)| *name == operation && offered.contains(name))
        .map(|(_, method, _)| *method)
        .ok_or_else(|| Failure::new("unknown_operation", format!("unknown operation `{operation}`")))
}

/// What a connector's manifest says about one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationSpec {
    /// Operation name (`get`, `post`, ...).
    pub name: String,
    /// What it does.
    pub description: String,
    /// Input JSON Schema as JSON text.
    pub input_schema: String,
    /// Output JSON Schema as JSON text.
    pub output_schema: String,
}

/// The manifest entries of the `offered` operations; `extra` adds input
/// properties, as in [`input_schema`].
pub fn operation_specs(offered: &[&str], extra: &[(&str, Value)]) -> Vec<OperationSpec> {
    OPERATIONS
        .iter()
        .filter(|(name, ..)| offered.contains(name))
        .map(|(name, method, description)| OperationSpec {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            input_schema: input_schema(method, extra).to_string(),
            output_schema: output_schema().to_string(),
        })
        .collect()
}

/// JSON Schema of an operation's input. `extra` adds properties (and then
/// `path` is no longer required, as one of them may replace it).
pub fn input_schema(method: &str, extra: &[(&str, Value)]) -> Value {
    let mut properties = json!({
        "path": {"type": "string", "pattern": "^/", "description": "path below the slot's base URL"},
        "query": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    });
    if method != "GET" {
        properties["body"] = json!({"description": "JSON body of the request"});
    }
    for (name, schema) in extra {
        properties[*name] = schema.clone();
    }
    let required = if extra.is_empty() { json!(["path"]) } else { json!([]) };
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// JSON Schema of every operation's output.
pub fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": {"type": "integer"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"description": "parsed JSON when the answer is JSON, else text"},
        },
        "required": ["status", "headers", "body"],
    })
}

/// The request part of an operation's input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    /// Path below the slot's base URL, starting with `/`.
    pub path: Option<String>,
    /// Query parameters, appended percent-encoded.
    #[serde(default)]
    pub query: Map<String, Value>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body (not for `GET`).
    pub body: Option<Value>,
}

impl RequestInput {
    /// Read the request fields of `input`; `GET` takes no body.
    pub fn parse(method: &str, input: Value) -> Result<Self, Failure> {
        let request: Self = serde_json::from_value(input)
            .map_err(|e| Failure::invalid_input(format!("invalid input: {e}")))?;
        if method == "GET" && request.body.is_some() {
            return Err(Failure::invalid_input("`GET` takes no `body`"));
        }
        Ok(request)
    }

    /// `base_path` + `path` + query string: the target sent to the slot.
    pub fn target(&self, base_path: Option<&str>) -> Result<String, Failure> {
        let path = self.path.as_deref().ok_or_else(|| Failure::invalid_input("missing field `path`"))?;
        let path = checked_path(path).map_err(Failure::invalid_input)?;
        append_query(&format!("{}{path}", base_path.unwrap_or("")), &self.query)
    }

    /// The call to send to `target`. Non-`GET` calls carry `run_id` as their
    /// `idempotency-key` unless the input sets one.
    pub fn into_call(self, method: &'static str, target: String, run_id: &str) -> Call {
        let mut headers: BTreeMap<String, String> =
            self.headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        let content_type = self.body.as_ref().map(|_| "application/json");
        let idempotency_key = (method != "GET").then_some(run_id);
        let defaults = [
            ("accept", Some("application/json")),
            ("content-type", content_type),
            ("idempotency-key", idempotency_key),
        ];
        for (name, value) in defaults.into_iter().filter_map(|(name, value)| Some((name, value?))) {
            headers.entry(name.to_owned()).or_insert_with(|| value.to_owned());
        }
        let body = self.body.map(|body| body.to_string().into_bytes());
        Call { method, target, headers: headers.into_iter().collect(), body }
    }
}

/// An HTTP request ready to send through a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// HTTP method.
    pub method: &'static str,
    /// Path and query (or, for a raw URL, the URL's path and query).
    pub target: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes, if any.
    pub body: Option<Vec<u8>>,
}

impl Call {
    /// A `GET` without headers or body, for health checks.
    pub fn get(target: String) -> Self {
        Self { method: "GET", target, headers: Vec::new(), body: None }
    }

    /// `GET /v1/x`: how messages and log lines name the call.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// `path` when it starts with `/`, else the reason it is refused.
fn checked_path(path: &str) -> Result<&str, String> {
    match path.starts_with('/') {
        true => Ok(path),
        false => Err(format!("path `{path}` must start with `/`")),
    }
}

/// The config's `base_path`, checked and without its trailing `/`.
pub fn base_path(raw: Option<String>) -> Result<Option<String>, Failure> {
    let Some(raw) = raw else { return Ok(None) };
    checked_path(&raw).map_err(|e| Failure::invalid_config(format!("base_{e}")))?;
    Ok(Some(raw.trim_end_matches('/').to_owned()))
}

/// The config's `health_path` (default `/`), checked.
pub fn health_path(raw: Option<String>) -> Result<String, Failure> {
    let raw = raw.unwrap_or_else(|| "/".to_owned());
    checked_path(&raw).map_err(|e| Failure::invalid_config(format!("health_{e}")))?;
    Ok(raw)
}

/// `target` with the query parameters appended, percent-encoded.
pub fn append_query(target: &str, query: &Map<String, Value>) -> Result<String, Failure> {
    let mut out = target.to_owned();
    for (key, value) in query {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => {
                return Err(Failure::invalid_input(format!(
                    "query parameter `{key}` must be a string, number or boolean, not `{value}`"
                )));
            }
        };
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&format!("{}={}", percent_encode(key), percent_encode(&value)));
    }
    Ok(out)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The external system's answer, whatever the transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body: parsed JSON when the content type says JSON and it parses,
    /// else (lossy UTF-8) text.
    pub fn body_value(&self) -> Value {
        let is_json = self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("content-type") && value.to_ascii_lowercase().contains("json")
        });
        let parsed = is_json.then(|| serde_json::from_slice(&self.body).ok()).flatten();
        parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }

    /// Headers as an object with lowercase names; repeated names are joined
    /// with `, `.
    pub fn headers_value(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            let name = name.to_ascii_lowercase();
            match headers.get_mut(&name) {
                Some(Value::String(seen)) => seen.push_str(&format!(", {value}")),
                _ => drop(headers.insert(name, Value::String(value.clone()))),
            }
        }
        Value::Object(headers)
    }

    /// The operation's output for a 2xx answer, else an `upstream_status`
    /// failure (retryable for 5xx, 429 and 408).
    pub fn into_output(self, call: &Call) -> Result<Value, Failure> {
        if !(200..300).contains(&self.status) {
            return Err(self.status_failure(call));
        }
        Ok(json!({"status": self.status, "headers": self.headers_value(), "body": self.body_value()}))
    }

    /// Accept the answer to a health check: anything but 5xx, 401 and 403.
    pub fn check_health(self, call: &Call) -> Result<(), Failure> {
        match self.status {
            401 | 403 | 500.. => Err(self.status_failure(call)),
            _ => Ok(()),
        }
    }

    fn status_failure(&self, call: &Call) -> Failure {
        let retryable = matches!(self.status, 408 | 429 | 500..);
        Failure::new("upstream_status", format!("upstream answered {} for `{}`", self.status, call.label()))
            .retryable(retryable)
            .with_details(json!({"status": self.status, "body": self.body_value()}))
    }
}

/// Why no answer arrived, whatever the transport.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamError {
    /// The slot is not bound to a credential.
    UnboundSlot(String),
    /// The host's policy refused the request.
    Denied(String),
    /// The invocation's callout budget (this many calls) is used up.
    BudgetExhausted(u32),
    /// No answer in time (after this many milliseconds, when known).
    Timeout(Option<u32>),
    /// The answer exceeded the size limit (of this many bytes, when known).
    TooLarge(Option<u64>),
    /// The external system could not be reached.
    Unreachable(String),
}

impl UpstreamError {
    /// Short name for log lines: `GET /x -> timeout`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnboundSlot(_) => "unbound slot",
            Self::Denied(_) => "denied",
            Self::BudgetExhausted(_) => "budget exhausted",
            Self::Timeout(_) => "timeout",
            Self::TooLarge(_) => "too large",
            Self::Unreachable(_) => "unreachable",
        }
    }

    /// The plugin-error code, and whether trying again may help.
    pub fn code(&self) -> (&'static str, bool) {
        match self {
            Self::UnboundSlot(_) => ("unbound_slot", false),
            Self::Denied(_) => ("denied", false),
            Self::BudgetExhausted(_) => ("callout_budget_exhausted", false),
            Self::Timeout(_) => ("upstream_timeout", true),
            Self::TooLarge(_) => ("response_too_large", false),
            Self::Unreachable(_) => ("upstream_unreachable", true),
        }
    }

    /// What went wrong with `call`, in one sentence.
    pub fn message(&self, call: &Call) -> String {
        let call = call.label();
        match self {
            Self::UnboundSlot(d) => format!("no credential is bound for `{call}`: {d}"),
            Self::Denied(d) => format!("the host refused the request `{call}`: {d}"),
            Self::BudgetExhausted(n) => format!("the budget of {n} callouts is used up before `{call}`"),
            Self::Timeout(Some(ms)) => format!("no answer to `{call}` within {ms} ms"),
            Self::Timeout(None) => format!("no answer to `{call}` in time"),
            Self::TooLarge(Some(n)) => format!("the answer to `{call}` exceeds the size limit of {n} bytes"),
            Self::TooLarge(None) => format!("the answer to `{call}` exceeds the size limit"),
            Self::Unreachable(d) => format!("cannot reach the upstream for `{call}`: {d}"),
        }
    }

    /// The plugin-error reporting this failure of `call`.
    pub fn into_failure(self, call: &Call) -> Failure {
        let (code, retryable) = self.code();
        Failure::new(code, self.message(call)).retryable(retryable)
    }
}

/// The info line logged per call: `GET /v1/x -> 200` or `GET /v1/x -> timeout`.
pub fn log_line(call: &Call, outcome: &Result<Reply, UpstreamError>) -> String {
    match outcome {
        Ok(reply) => format!("{} -> {}", call.label(), reply.status),
        Err(error) => format!("{} -> {}", call.label(), error.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(input: Value, method: &'static str) -> Result<Call, Failure> {
        let request = RequestInput::parse(method, input)?;
        let target = request.target(Some("/api"))?;
        Ok(request.into_call(method, target, "run-1"))
    }

    #[test]
    fn builds_target_headers_and_body() {
        let call = call(json!({"path": "/v1/x", "query": {"q": "a b/c", "n": 2}, "body": {"a": 1}}), "POST");
        let call = call.unwrap();
        assert_eq!(call.target, "/api/v1/x?n=2&q=a%20b%2Fc");
        assert!(call.headers.contains(&("idempotency-key".into(), "run-1".into())));
        assert!(call.headers.contains(&("content-type".into(), "application/json".into())));
        assert_eq!(call.body.as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(call(json!({"path": "v1"}), "GET").unwrap_err().message, "path `v1` must start with `/`");
        assert_eq!(call(json!({"path": "/x", "body": 1}), "GET").unwrap_err().code, "invalid_input");
        assert_eq!(call(json!({"query": {}}), "GET").unwrap_err().message, "missing field `path`");
    }

    #[test]
    fn shapes_replies() {
        let call = Call::get("/v1/x".into());
        let headers = vec![("Content-Type".into(), "application/json".into())];
        let reply = |status| Reply { status, headers: headers.clone(), body: br#"{"ok":true}"#.to_vec() };
        let output = reply(200).into_output(&call).unwrap();
        assert_eq!(
            output,
            json!({"status": 200, "headers": {"content-type": "application/json"}, "body": {"ok": true}})
        );
        let failure = reply(404).into_output(&call).unwrap_err();
        assert_eq!((failure.code.as_str(), failure.retryable), ("upstream_status", false));
        assert_eq!(failure.message, "upstream answered 404 for `GET /v1/x`");
        assert!(reply(429).into_output(&call).unwrap_err().retryable);
        assert!(reply(404).check_health(&call).is_ok() && reply(403).check_health(&call).is_err());
    }

    #[test]
    fn maps_upstream_errors() {
        let call = Call::get("/x".into());
        let failure = UpstreamError::Timeout(Some(5)).into_failure(&call);
        assert_eq!((failure.code.as_str(), failure.retryable), ("upstream_timeout", true));
        assert_eq!(failure.message, "no answer to `GET /x` within 5 ms");
    }
}
