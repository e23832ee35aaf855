//! The load benchmark's pipeline as one `wasi:http/proxy` component, for
//! `wasmtime serve`: what a user would write instead of Plugboard's three
//! steps. For each request it parses the JSON body, maps `name` and `email`
//! into a request body (field-map's input mapping), POSTs it with a bearer
//! token to `UPSTREAM_URL` (rest-json's `post`), parses the answer and maps
//! `body.id` and the status into the reply (field-map's output mapping).
//!
//! `UPSTREAM_URL` (`http://host:port/path`) and `UPSTREAM_TOKEN` come from
//! the environment (`wasmtime serve -Scli --env ...`); the component holds
//! the token itself, since `wasmtime serve` has no credential boundary.

use std::io::{Read as _, Write as _};

use serde_json::{Value, json};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Peer);

struct Peer;

impl wasip2::exports::http::incoming_handler::Guest for Peer {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match run(request) {
            Ok(reply) => (200, reply.to_string()),
            Err(e) => (502, json!({ "error": e }).to_string()),
        };
        respond(out, status, body.as_bytes());
    }
}

/// The whole pipeline for one request.
fn run(request: IncomingRequest) -> Result<Value, String> {
    let input: Value = serde_json::from_slice(&read_incoming(request.consume())?)
        .map_err(|e| format!("the body is not JSON: {e}"))?;
    // Input mapping: `/name` (required) and `/email` into `/body`.
    let name = input.get("name").cloned().ok_or("`name` is required")?;
    let mut body = json!({ "name": name });
    if let Some(email) = input.get("email") {
        body["email"] = email.clone();
    }
    let (status, answer) = post(&body.to_string())?;
    let answer: Value =
        serde_json::from_slice(&answer).map_err(|e| format!("the upstream did not answer JSON: {e}"))?;
    // Output mapping: `/body/id` -> `/id`, the status -> `/upstream_status`.
    Ok(json!({ "id": answer.get("id").cloned().unwrap_or(Value::Null), "upstream_status": status }))
}

/// POSTs `body` to `UPSTREAM_URL` with the bearer token; the status and body.
fn post(body: &str) -> Result<(u16, Vec<u8>), String> {
    let env: std::collections::HashMap<String, String> =
        wasip2::cli::environment::get_environment().into_iter().collect();
    let url = env.get("UPSTREAM_URL").ok_or("UPSTREAM_URL is not set")?;
    let token = env.get("UPSTREAM_TOKEN").ok_or("UPSTREAM_TOKEN is not set")?;
    let rest = url.strip_prefix("http://").ok_or("UPSTREAM_URL must be http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"application/json".to_vec()),
        ("authorization".to_string(), format!("Bearer {token}").into_bytes()),
    ])
    .map_err(|e| format!("headers: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let _ = request.set_method(&Method::Post);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let outgoing = request.body().map_err(|_| "no request body")?;
    {
        let mut stream = outgoing.write().map_err(|_| "no body stream")?;
        stream.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
        stream.flush().map_err(|e| e.to_string())?;
    }
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("the upstream request failed: {e:?}"))?;
    let status = response.status();
    let body = read_incoming(response.consume())?;
    Ok((status, body))
}

/// The whole of an incoming body.
fn read_incoming(body: Result<IncomingBody, ()>) -> Result<Vec<u8>, String> {
    let body = body.map_err(|_| "the body was already taken")?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|_| "no body stream")?;
        stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    }
    IncomingBody::finish(body);
    Ok(bytes)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
