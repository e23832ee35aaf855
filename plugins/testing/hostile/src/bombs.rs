//! Operations that try to make the host allocate on the guest's behalf:
//! long log lines, callout records, buffered `wasi:http` bodies, header
//! sets, unread responses. Each reports what it managed to do.

use serde_json::{Value, json};

use crate::plugboard::plugin::log::{self, Level};
use crate::wasi::http::outgoing_handler::{self, FutureIncomingResponse};
use crate::wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use crate::{number, text};

/// Log one line of `bytes` bytes (or the given `text`) `count` times.
pub fn log_bomb(input: &Value) -> Value {
    let line = match input.get("text").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => "x".repeat(number(input, "bytes", 1 << 20) as usize),
    };
    let count = number(input, "count", 1000);
    for _ in 0..count {
        log::log(Level::Info, &line);
    }
    json!({"logged": count})
}

/// A `wasi:http` request to `https://{slot}{path}`, with the path set as it
/// is (no client in between to tidy it).
fn request(slot: &str, path: &str, method: Method, headers: Fields) -> Result<OutgoingRequest, String> {
    let request = OutgoingRequest::new(headers);
    request.set_method(&method).map_err(|()| "set-method refused".to_string())?;
    request.set_scheme(Some(&Scheme::Https)).map_err(|()| "set-scheme refused".to_string())?;
    request.set_authority(Some(slot)).map_err(|()| "set-authority refused".to_string())?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("set-path-with-query refused `{path}`"))?;
    Ok(request)
}

/// One raw `wasi:http` request: `{"path", "method", "headers": [[n, v]]}`;
/// reports the status, headers and body, or where it was refused.
pub fn wasi_request(input: &Value) -> Value {
    let headers = Fields::new();
    let mut forbidden = Vec::new();
    for pair in input.get("headers").and_then(Value::as_array).into_iter().flatten() {
        let (Some(n), Some(v)) = (pair[0].as_str(), pair[1].as_str()) else { continue };
        match headers.append(n, v.as_bytes()) {
            Ok(()) => {}
            // wasi:http itself refuses some (connection-level) headers.
            Err(crate::wasi::http::types::HeaderError::Forbidden) => forbidden.push(n.to_string()),
            Err(e) => return json!({"err": format!("header `{n}`: {e:?}")}),
        }
    }
    let method = match text(input, "method", "GET") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    let request = match request(text(input, "slot", "api"), text(input, "path", "/"), method, headers) {
        Ok(r) => r,
        Err(e) => return json!({"err": e}),
    };
    let body = request.body().expect("a new request has its body");
    let future = match outgoing_handler::handle(request, None) {
        Ok(f) => f,
        Err(e) => return json!({"err": format!("{e:?}")}),
    };
    drop(OutgoingBody::finish(body, None));
    match wait(&future) {
        Ok(response) => {
            let headers: Vec<(String, String)> = response
                .headers()
                .entries()
                .into_iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let status = response.status();
            let body = response.consume().expect("the body is there");
            let stream = body.stream().expect("the stream is there");
            let mut bytes = Vec::new();
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                bytes.extend_from_slice(&chunk);
            }
            json!({"ok": {"status": status, "headers": headers, "body": String::from_utf8_lossy(&bytes)},
                "forbidden": forbidden})
        }
        Err(e) => json!({"err": e}),
    }
}

fn wait(future: &FutureIncomingResponse) -> Result<crate::wasi::http::types::IncomingResponse, String> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(format!("{code:?}")),
            Some(Err(())) => return Err("taken".into()),
            None => future.subscribe().block(),
        }
    }
}

/// Start `count` POSTs on slot `api`, each writing up to `bytes` of body
/// without ever finishing it, and keep them all open; reports how many were
/// started and how many bytes the host accepted.
pub fn body_bomb(input: &Value) -> Value {
    let chunk = vec![b'b'; 64 * 1024];
    let (count, per_request) = (number(input, "count", 64), number(input, "bytes", 63 << 20) as usize);
    let mut held = Vec::new();
    let (mut started, mut written) = (0u64, 0usize);
    for _ in 0..count {
        let Ok(request) = request("api", "/upload", Method::Post, Fields::new()) else { break };
        let body = request.body().expect("a new request has its body");
        let Ok(future) = outgoing_handler::handle(request, None) else { break };
        started += 1;
        let stream = body.write().expect("the body stream is there");
        let mut sent = 0;
        while sent < per_request {
            match stream.check_write() {
                Ok(0) | Err(_) => break,
                Ok(room) => {
                    let n = (room as usize).min(chunk.len()).min(per_request - sent);
                    if stream.write(&chunk[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
            }
        }
        written += sent;
        held.push((future, body, stream));
    }
    json!({"started": started, "written": written, "held": held.len()})
}

/// Build `count` header sets with one `bytes`-long value each and keep them
/// all; reports how many the host allowed (the host may also stop the
/// plugin outright when it holds too many resources).
pub fn fields_bomb(input: &Value) -> Value {
    let value = vec![b'v'; number(input, "bytes", 1024) as usize];
    let mut kept = Vec::new();
    let mut refused = 0u64;
    for i in 0..number(input, "count", 1_000_000) {
        let fields = Fields::new();
        if fields.append(&format!("x-bomb-{i}"), &value).is_err() {
            refused += 1;
        }
        kept.push(fields);
    }
    json!({"kept": kept.len(), "refused": refused})
}

/// Start `count` GETs of `path` on slot `api` and never read the responses;
/// reports how many answered.
pub fn unread_responses(input: &Value) -> Value {
    let mut held = Vec::new();
    let mut answered = 0;
    for _ in 0..number(input, "count", 100) {
        let Ok(request) = request("api", text(input, "path", "/big/6000000"), Method::Get, Fields::new()) else {
            break;
        };
        let body = request.body().expect("a new request has its body");
        let Ok(future) = outgoing_handler::handle(request, None) else { break };
        drop(OutgoingBody::finish(body, None));
        if let Ok(response) = wait(&future) {
            answered += 1;
            held.push(response);
        }
    }
    json!({"answered": answered})
}
