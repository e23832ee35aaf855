//! A small blocking HTTP client over the generated `wasi:http` bindings
//! (`wasi::http::outgoing_handler` and `wasi::http::types`).

use common::Failure;
use common::http::{Call, Reply, UpstreamError};

use crate::wasi::http::outgoing_handler::{self, FutureIncomingResponse};
use crate::wasi::http::types::{
    ErrorCode, Fields, HeaderError, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    Scheme, http_error_code,
};
use crate::wasi::io::streams::{InputStream, StreamError};

/// Largest chunk `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;
/// Largest chunk asked of `blocking-read`.
const READ_CHUNK: u64 = 64 * 1024;

/// The wasi:http request for `call`, whose target is a full URL.
pub fn build(call: &Call) -> Result<OutgoingRequest, Failure> {
    let (scheme, authority, path) = split_url(&call.target)?;
    let length = call.body.as_ref().map(|body| ("content-length".to_owned(), body.len().to_string()));
    let request = OutgoingRequest::new(headers(call.headers.iter().chain(&length))?);
    let refused = |what: &str| Failure::invalid_input(format!("invalid {what} in `{}`", call.target));
    request.set_method(&method(call.method)).map_err(|()| refused("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|()| refused("scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| refused("authority"))?;
    request.set_path_with_query(Some(&path)).map_err(|()| refused("path"))?;
    Ok(request)
}

/// `(scheme, authority, path with query)` of an `http` or `https` URL.
fn split_url(url: &str) -> Result<(Scheme, &str, String), Failure> {
    let invalid = || Failure::invalid_input(format!("`{url}` is not an http or https URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(invalid()),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(invalid());
    }
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    Ok((scheme, authority, path))
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_owned()),
    }
}

/// Request headers, added one by one so that a refusal names the header.
fn headers<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> Result<Fields, Failure> {
    let fields = Fields::new();
    for (name, value) in pairs {
        fields.append(name, value.as_bytes()).map_err(|error| match error {
            HeaderError::Forbidden => Failure::new("denied", format!("the host refused the header `{name}`")),
            _ => Failure::invalid_input(format!("invalid header `{name}`")),
        })?;
    }
    Ok(fields)
}

/// Send `request` with `body` and read the whole answer.
pub fn exchange(request: OutgoingRequest, body: Option<&[u8]>) -> Result<Reply, UpstreamError> {
    let outgoing = request.body().map_err(|()| unreachable("the request body is gone"))?;
    let future = outgoing_handler::handle(request, None).map_err(upstream_error)?;
    write_body(outgoing, body.unwrap_or_default())?;
    read_response(wait(&future)?)
}

fn write_body(outgoing: OutgoingBody, bytes: &[u8]) -> Result<(), UpstreamError> {
    {
        let stream = outgoing.write().map_err(|()| unreachable("the request body stream is gone"))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(stream_error)?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(upstream_error)
}

fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, UpstreamError> {
    loop {
        match future.get() {
            Some(Ok(response)) => return response.map_err(upstream_error),
            Some(Err(())) => return Err(unreachable("the response was already taken")),
            None => future.subscribe().block(),
        }
    }
}

fn read_response(response: IncomingResponse) -> Result<Reply, UpstreamError> {
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response.consume().map_err(|()| unreachable("the response body is gone"))?;
    let body = read_all(&incoming.stream().map_err(|()| unreachable("the response body stream is gone"))?)?;
    drop(IncomingBody::finish(incoming));
    Ok(Reply { status, headers, body })
}

/// Read `stream` until it is closed.
fn read_all(stream: &InputStream) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(error) => return Err(stream_error(error)),
        }
    }
}

fn stream_error(error: StreamError) -> UpstreamError {
    match error {
        StreamError::LastOperationFailed(io) => match http_error_code(&io) {
            Some(code) => upstream_error(code),
            None => unreachable(&io.to_debug_string()),
        },
        StreamError::Closed => unreachable("the stream closed early"),
    }
}

/// The wasi:http error codes as connector failures.
fn upstream_error(code: ErrorCode) -> UpstreamError {
    match code {
        ErrorCode::HttpRequestDenied => {
            UpstreamError::Denied("wasi:http answered `http-request-denied`".into())
        }
        ErrorCode::ConnectionTimeout | ErrorCode::HttpResponseTimeout => UpstreamError::Timeout(None),
        ErrorCode::HttpResponseBodySize(limit) => UpstreamError::TooLarge(limit),
        other => UpstreamError::Unreachable(format!("{other:?}")),
    }
}

fn unreachable(detail: &str) -> UpstreamError {
    UpstreamError::Unreachable(detail.to_owned())
}
