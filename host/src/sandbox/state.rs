//! What one invocation's `Store` holds, and the host side of the plugin
//! imports: `log`, `config`, `callout` and the `wasi:http` hooks.
//!
//! Everything here lives exactly as long as one invocation: a fresh
//! `HostState` per call is what guarantees no state leaks between calls.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{callout, config, log};
use crate::callout::{CalloutError, CalloutPolicy, Grant, GuestRequest};

/// Most log lines kept per invocation; the rest are counted as dropped.
const MAX_LOG_LINES: usize = 1000;
/// Most bytes of stdout and of stderr kept per invocation.
const MAX_STDIO_BYTES: usize = 256 * 1024;

/// One line a plugin logged or printed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogLine {
    /// `trace` .. `error`, or `stdout` / `stderr` for printed lines.
    pub level: String,
    /// The text.
    pub message: String,
    /// Milliseconds since the invocation started.
    pub at_ms: u64,
}

/// The per-invocation state of a `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: HttpHooks,
    pub(super) limiter: MemoryLimiter,
    pub(super) logs: Vec<LogLine>,
    pub(super) dropped_logs: usize,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
    pub(super) started: Instant,
    pub(super) deadline: Instant,
    pub(super) timed_out: bool,
    config: Arc<serde_json::Map<String, serde_json::Value>>,
    grant: Option<Arc<Grant>>,
}

impl HostState {
    /// A fresh state: no files, no environment, no sockets, no inherited
    /// stdio; stdout and stderr captured; memory capped at `memory_bytes`.
    pub fn new(
        memory_bytes: u64,
        deadline: Instant,
        config: Arc<serde_json::Map<String, serde_json::Value>>,
        grant: Option<Arc<Grant>>,
    ) -> HostState {
        let stdout = Capture::default();
        let stderr = Capture::default();
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: HttpHooks { grant: grant.clone() },
            limiter: MemoryLimiter::new(memory_bytes as usize),
            logs: Vec::new(),
            dropped_logs: 0,
            stdout,
            stderr,
            started: Instant::now(),
            deadline,
            timed_out: false,
            config,
            grant,
        }
    }

    fn push_log(&mut self, level: &str, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        let at_ms = self.started.elapsed().as_millis() as u64;
        self.logs.push(LogLine {
            level: level.to_string(),
            message,
            at_ms,
        });
    }

    /// Log lines, then printed lines, in one list.
    pub(super) fn take_logs(&mut self) -> Vec<LogLine> {
        let mut lines = std::mem::take(&mut self.logs);
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            for line in capture.lines() {
                lines.push(LogLine {
                    level: stream.to_string(),
                    message: line,
                    at_ms: 0,
                });
            }
        }
        if self.dropped_logs > 0 {
            lines.push(LogLine {
                level: "warn".into(),
                message: format!("{} more log lines were dropped", self.dropped_logs),
                at_ms: self.started.elapsed().as_millis() as u64,
            });
        }
        lines
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => "trace",
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.push_log(level, message);
        Ok(())
    }
}

impl config::Host for HostState {
    fn get_json(&mut self) -> wasmtime::Result<String> {
        Ok(serde_json::Value::Object((*self.config).clone()).to_string())
    }

    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }
}

impl callout::Host for HostState {
    async fn send(
        &mut self,
        request: callout::Request,
    ) -> wasmtime::Result<Result<callout::Response, callout::CalloutError>> {
        let Some(grant) = self.grant.clone() else {
            return Ok(Err(callout::CalloutError::UnboundSlot(request.credential)));
        };
        let method = match http::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                let msg = format!("`{}` is not an HTTP method", request.method);
                return Ok(Err(callout::CalloutError::Denied(msg)));
            }
        };
        let guest = GuestRequest {
            slot: request.credential,
            method,
            path: request.path,
            headers: request
                .headers
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect(),
            body: request.body.map(Bytes::from).unwrap_or_default(),
            timeout: request.timeout_ms.map(|ms| Duration::from_millis(ms.into())),
        };
        Ok(match CalloutPolicy::execute(&grant, guest).await {
            Ok(resp) => Ok(callout::Response {
                status: resp.status,
                headers: resp
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
                body: resp.body.to_vec(),
            }),
            Err(e) => Err(to_wit_error(e)),
        })
    }
}

fn to_wit_error(e: CalloutError) -> callout::CalloutError {
    use callout::CalloutError as W;
    match e {
        CalloutError::UnboundSlot(s) => W::UnboundSlot(s),
        CalloutError::Denied(s) => W::Denied(s),
        CalloutError::BudgetExhausted(n) => W::BudgetExhausted(n),
        CalloutError::Timeout(ms) => W::Timeout(ms),
        CalloutError::TooLarge(n) => W::TooLarge(n),
        CalloutError::Unreachable(s) => W::Unreachable(s),
        // Contract 0.1 has no variants of their own for these: a retryable
        // failure travels as `unreachable` (plugins retry or report it as
        // such), a lasting one as `denied`; the message names the cause.
        e @ CalloutError::RateLimited(_) => W::Unreachable(e.to_string()),
        CalloutError::Credential {
            retryable: true,
            message,
        } => W::Unreachable(message),
        CalloutError::Credential { message, .. } => W::Denied(message),
    }
}

/// The `wasi:http` side of the callout policy. The URL's host names the slot
/// (`https://crm/v1/orders`); the request is then handed to the same
/// [`CalloutPolicy::execute`] as `callout.send`.
struct HttpHooks {
    grant: Option<Arc<Grant>>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for HttpHooks {
    // The slot decides the host; the guest's Host header would only mislead.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let grant = self.grant.clone();
        Box::new(async move {
            let grant = grant.ok_or(wasmtime_wasi_http::Error::HttpRequestDenied)?;
            let guest = guest_request_from_wasi(request, options).await?;
            let resp = CalloutPolicy::execute(&grant, guest).await.map_err(wasi_error)?;
            let mut out = http::Response::builder().status(resp.status);
            if let Some(h) = out.headers_mut() {
                *h = resp.headers;
            }
            let body = Full::new(resp.body)
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = out
                .body(body)
                .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;
            let done: Box<dyn Future<Output = _> + Send> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Turns a `wasi:http` request into a policy request. The authority becomes
/// the slot (the policy refuses anything that is not a slot name: ports, IP
/// addresses, other hosts); the guest's scheme is ignored, since the
/// credential's base URL decides it.
async fn guest_request_from_wasi(
    request: http::Request<wasmtime_wasi_http::WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> wasmtime_wasi_http::Result<GuestRequest> {
    let (parts, body) = request.into_parts();
    let slot = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    // Bodies are buffered so the policy sees one whole request; the bound keeps
    // a guest from streaming without end into host memory.
    let body = Limited::new(body, 64 * 1024 * 1024)
        .collect()
        .await
        .map_err(|_| wasmtime_wasi_http::Error::HttpRequestBodySize(None))?
        .to_bytes();
    let timeout = options.and_then(|o| {
        [o.connect_timeout, o.first_byte_timeout]
            .into_iter()
            .flatten()
            .min()
    });
    Ok(GuestRequest {
        slot,
        method: parts.method,
        path,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        body,
        timeout,
    })
}

fn wasi_error(e: CalloutError) -> wasmtime_wasi_http::Error {
    use wasmtime_wasi_http::Error as E;
    match e {
        CalloutError::UnboundSlot(_) | CalloutError::Denied(_) | CalloutError::BudgetExhausted(_) => {
            E::HttpRequestDenied
        }
        CalloutError::Timeout(_) => E::ConnectionTimeout,
        CalloutError::TooLarge(n) => E::HttpResponseBodySize(Some(n)),
        CalloutError::Unreachable(_) | CalloutError::RateLimited(_) => E::ConnectionRefused,
        CalloutError::Credential { retryable: true, .. } => E::ConnectionRefused,
        CalloutError::Credential { .. } => E::HttpRequestDenied,
    }
}

/// Caps the linear memory of one invocation (all memories together) and
/// remembers whether a growth was refused, so a resulting trap can be
/// reported as "memory limit exceeded" instead of a bare `unreachable`.
pub struct MemoryLimiter {
    limit: usize,
    total: usize,
    /// Peak linear memory in bytes.
    pub peak: usize,
    /// Set when a growth past the limit was refused.
    pub refused: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            total: 0,
            peak: 0,
            refused: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.total - current.min(self.total) + desired;
        if next > self.limit {
            self.refused = true;
            return Ok(false);
        }
        self.total = next;
        self.peak = self.peak.max(next);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond what
        // any real component needs and keeps a hostile one from exhausting
        // host memory through them.
        Ok(desired <= 1_000_000)
    }
}

/// Captured stdout or stderr of one invocation, bounded.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    /// The captured text, split into lines.
    pub fn lines(&self) -> Vec<String> {
        let buf = self.0.lock().expect("capture lock");
        let mut lines: Vec<String> = String::from_utf8_lossy(&buf.bytes)
            .lines()
            .map(str::to_string)
            .collect();
        if buf.dropped > 0 {
            lines.push(format!("[{} more bytes were dropped]", buf.dropped));
        }
        lines
    }

    /// The end of what was written, for crash messages: the last two
    /// meaningful lines (a Rust panic prints its location, then its message),
    /// leaving out the runtime's hint about backtraces.
    pub fn tail(&self) -> Option<String> {
        let lines: Vec<String> = self
            .lines()
            .into_iter()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let start = lines.len().saturating_sub(2);
        let tail = lines[start..].join(" ");
        (!tail.is_empty()).then_some(tail)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    // Always accepts everything: past the cap bytes are counted, not kept,
    // because a failed write makes some languages' print functions panic.
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut buf = self.0.lock().expect("capture lock");
        let room = MAX_STDIO_BYTES.saturating_sub(buf.bytes.len());
        let keep = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..keep]);
        buf.dropped += data.len() - keep;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Milliseconds since the Unix epoch for `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Config given to one use of a plugin, as a JSON object.
pub type PluginConfig = Arc<serde_json::Map<String, serde_json::Value>>;

/// An empty configuration.
pub fn empty_config() -> PluginConfig {
    Arc::new(serde_json::Map::new())
}

/// Slot bindings of one invocation: slot name to credential name.
pub type Bindings = BTreeMap<String, String>;
