//! `http-fetch`: a connector that brings its own HTTP client over
//! `wasi:http/outgoing-handler` instead of the `callout` interface. It
//! addresses the credential slot `api` as `https://api/<path>`, or takes a
//! full `url` from the input as it is (the host confines both the same way).
//!
//! Operations `get` and `post` take `{"path" | "url", "query"?, "headers"?,
//! "body"?, "authorization"?}` and return `{"status", "headers", "body"}`,
//! with the same error codes as `rest-json`.

// The generated wasi:http bindings have a function with many parameters.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugboard:plugin/connector",
    generate_all,
});

mod client;

use common::Failure;
use common::failure::parse_input;
use common::http::{self, Call, RequestInput};
use plugboard::plugin::config;
use plugboard::plugin::log::{self, Level};
use plugboard::plugin::types::{CredentialSlot, Operation};
use serde_json::{Map, Value, json};

/// The one credential slot this connector calls.
const SLOT: &str = "api";
/// The operations this connector offers.
const OFFERED: &[&str] = &["get", "post"];

struct HttpFetch;

impl Guest for HttpFetch {
    fn describe() -> Manifest {
        Manifest {
            name: "http-fetch".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Calls a JSON HTTP API with its own wasi:http client, addressing the `api` \
                          credential slot as `https://api/...`."
                .into(),
            operations: operations(),
            credential_slots: vec![CredentialSlot {
                name: SLOT.into(),
                description: "the HTTP API to call".into(),
                required: true,
            }],
        }
    }

    fn invoke(context: InvokeContext, operation: String, input: String) -> Result<String, PluginError> {
        run(&context, &operation, &input).map_err(PluginError::from)
    }

    fn test_connection() -> Result<(), PluginError> {
        let path = http::health_path(config::get("health_path"))?;
        let call = Call::get(format!("https://{SLOT}{path}"));
        fetch(&call)?.check_health(&call)?;
        Ok(())
    }
}

export!(HttpFetch);

fn operations() -> Vec<Operation> {
    let extra = [
        ("url", json!({"type": "string", "description": "full URL used instead of `https://api` + `path`"})),
        ("authorization", json!({"type": "string", "description": "sent as the `authorization` header"})),
    ];
    http::operation_specs(OFFERED, &extra)
        .into_iter()
        .map(|spec| Operation {
            name: spec.name,
            description: spec.description,
            input_schema: Some(spec.input_schema),
            output_schema: Some(spec.output_schema),
        })
        .collect()
}

/// Build the call for `operation`, send it and shape the answer.
fn run(context: &InvokeContext, operation: &str, input: &str) -> Result<String, Failure> {
    let method = http::method_for(operation, OFFERED)?;
    let call = prepare(context, method, input)?;
    Ok(fetch(&call)?.into_output(&call)?.to_string())
}

/// The call for `input`, whose target is a full URL.
fn prepare(context: &InvokeContext, method: &'static str, input: &str) -> Result<Call, Failure> {
    let Value::Object(mut fields) = parse_input(input)? else {
        return Err(Failure::invalid_input("input must be a JSON object"));
    };
    let url = take_string(&mut fields, "url")?;
    let authorization = take_string(&mut fields, "authorization")?;
    let request = RequestInput::parse(method, Value::Object(fields))?;
    let target = match url {
        Some(_) if request.path.is_some() => {
            return Err(Failure::invalid_input("give `url` or `path`, not both"));
        }
        Some(url) => http::append_query(&url, &request.query)?,
        None => format!(
            "https://{SLOT}{}",
            request.target(http::base_path(config::get("base_path"))?.as_deref())?
        ),
    };
    let mut call = request.into_call(method, target, &context.run_id);
    call.headers.extend(authorization.map(|value| ("authorization".to_owned(), value)));
    Ok(call)
}

/// Remove the string field `key` from `fields`.
fn take_string(fields: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Failure> {
    match fields.remove(key) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(other) => Err(Failure::invalid_input(format!("`{key}` must be a string, not `{other}`"))),
    }
}

/// Send `call` over wasi:http and log one line about the outcome.
fn fetch(call: &Call) -> Result<http::Reply, Failure> {
    let request = client::build(call)?;
    let outcome = client::exchange(request, call.body.as_deref());
    log::log(Level::Info, &http::log_line(call, &outcome));
    outcome.map_err(|error| error.into_failure(call))
}

common::impl_from_failure!(PluginError);
