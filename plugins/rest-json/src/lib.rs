//! `rest-json`: a connector that calls a JSON REST API through the host's
//! `callout` interface, addressing the credential slot `api`.
//!
//! Operations `get`, `post`, `put`, `patch` and `delete` take
//! `{"path", "query"?, "headers"?, "body"?}` and return
//! `{"status", "headers", "body"}`. Non-2xx answers and transport failures
//! become plugin-errors (see `common::http`).

// The generated wasi:http bindings have a function with many parameters.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugboard:plugin/connector",
    generate_all,
});

use common::Failure;
use common::failure::parse_input;
use common::http::{self, Call, Reply, RequestInput, UpstreamError};
use plugboard::plugin::callout::{self, CalloutError};
use plugboard::plugin::config;
use plugboard::plugin::log::{self, Level};
use plugboard::plugin::types::{CredentialSlot, Operation};

/// The one credential slot this connector calls.
const SLOT: &str = "api";
/// The operations this connector offers.
const OFFERED: &[&str] = &["get", "post", "put", "patch", "delete"];

struct RestJson;

impl Guest for RestJson {
    fn describe() -> Manifest {
        Manifest {
            name: "rest-json".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Calls a JSON REST API through the `api` credential slot: one operation per HTTP \
                          method, JSON bodies in and out, upstream failures reported as plugin-errors."
                .into(),
            operations: operations(),
            credential_slots: vec![CredentialSlot {
                name: SLOT.into(),
                description: "the REST API to call".into(),
                required: true,
            }],
        }
    }

    fn invoke(context: InvokeContext, operation: String, input: String) -> Result<String, PluginError> {
        run(&context, &operation, &input).map_err(PluginError::from)
    }

    fn test_connection() -> Result<(), PluginError> {
        let call = Call::get(http::health_path(config::get("health_path"))?);
        send(&call).map_err(|e| e.into_failure(&call))?.check_health(&call)?;
        Ok(())
    }
}

export!(RestJson);

fn operations() -> Vec<Operation> {
    http::operation_specs(OFFERED, &[])
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
    let request = RequestInput::parse(method, parse_input(input)?)?;
    let target = request.target(http::base_path(config::get("base_path"))?.as_deref())?;
    let call = request.into_call(method, target, &context.run_id);
    let reply = send(&call).map_err(|e| e.into_failure(&call))?;
    Ok(reply.into_output(&call)?.to_string())
}

/// Send `call` through the slot and log one line about the outcome.
fn send(call: &Call) -> Result<Reply, UpstreamError> {
    let request = callout::Request {
        credential: SLOT.into(),
        method: call.method.into(),
        path: call.target.clone(),
        headers: call.headers.clone(),
        body: call.body.clone(),
        timeout_ms: None,
    };
    let outcome = callout::send(&request)
        .map(|r| Reply { status: r.status, headers: r.headers, body: r.body })
        .map_err(upstream_error);
    log::log(Level::Info, &http::log_line(call, &outcome));
    outcome
}

fn upstream_error(error: CalloutError) -> UpstreamError {
    match error {
        CalloutError::UnboundSlot(d) => UpstreamError::UnboundSlot(d),
        CalloutError::Denied(d) => UpstreamError::Denied(d),
        CalloutError::BudgetExhausted(n) => UpstreamError::BudgetExhausted(n),
        CalloutError::Timeout(ms) => UpstreamError::Timeout(Some(ms)),
        CalloutError::TooLarge(n) => UpstreamError::TooLarge(Some(n)),
        CalloutError::Unreachable(d) => UpstreamError::Unreachable(d),
    }
}

common::impl_from_failure!(PluginError);
