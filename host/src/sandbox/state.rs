//! What one invocation's `Store` holds, and the host side of the plugin
//! imports: `log`, `config`, `callout` and the `wasi:http` hooks.
//!
//! Everything here lives exactly as long as one invocation: a fresh
//! `HostState` per call is what guarantees no state leaks between calls.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{callout, config, log};
use crate::budget::{Held, HostBudget};
use crate::callout::{CalloutError, CalloutPolicy, Grant, GuestRequest};
use crate::limits::Limits;

/// Most log lines kept per invocation; the rest are counted as dropped.
const MAX_LOG_LINES: usize = 1000;
/// Longest log line kept; the rest of a longer one is cut and counted. Far
/// above any useful line, far below what would let a thousand lines fill the
/// host budget.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;
/// What one kept log line costs the host budget besides its text.
const LOG_LINE_OVERHEAD: usize = 64;
/// Most bytes of stdout and of stderr kept per invocation.
const MAX_STDIO_BYTES: usize = 256 * 1024;
/// Largest `wasi:http` header set (`fields`) a plugin may build, in the
/// engine's in-memory measure (about twice the wire size): four times what
/// common proxies accept on the wire.
pub const FIELD_SIZE_LIMIT: usize = 32 * 1024;

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
    pub(super) budget: Arc<HostBudget>,
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
    /// stdio; stdout and stderr captured; linear memory capped at the
    /// limits' `memory_bytes`, host-side allocations at `budget`.
    pub fn new(
        limits: &Limits,
        deadline: Instant,
        config: Arc<serde_json::Map<String, serde_json::Value>>,
        grant: Option<Arc<Grant>>,
        budget: Arc<HostBudget>,
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(resource_cap(limits.host_memory_bytes));
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        HostState {
            wasi,
            table,
            http,
            hooks: HttpHooks {
                grant: grant.clone(),
                budget: budget.clone(),
            },
            limiter: MemoryLimiter::new(limits.memory_bytes as usize),
            budget,
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
        let message = truncate_line(message);
        if self.logs.len() >= MAX_LOG_LINES || !self.budget.charge(message.len() + LOG_LINE_OVERHEAD) {
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
                message: format!(
                    "{} more log lines were dropped (at most {MAX_LOG_LINES} lines are kept, within the invocation's host memory budget of {} MiB)",
                    self.dropped_logs,
                    self.budget.limit() >> 20
                ),
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
        Ok(serde_json::to_string(&*self.config)?)
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
///
/// `wasi:http` lets a guest start requests without waiting for them, so this
/// side also bounds what it may keep the host holding: requests in flight
/// (the limits' `max_concurrent_callouts`), each request body while it is
/// buffered, and each response body until the guest has read it - all
/// charged to the invocation's host budget.
struct HttpHooks {
    grant: Option<Arc<Grant>>,
    budget: Arc<HostBudget>,
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
        let budget = self.budget.clone();
        Box::new(async move {
            let grant = grant.ok_or(wasmtime_wasi_http::Error::HttpRequestDenied)?;
            // Queue behind the requests already in flight; the guest's body
            // writes wait meanwhile, so nothing piles up in the host.
            let _turn = grant.in_flight_turn().await;
            let (guest, held) = guest_request_from_wasi(request, options, &grant, &budget).await?;
            let resp = CalloutPolicy::execute(&grant, guest).await.map_err(wasi_error)?;
            drop(held);
            let Some(held) = budget.hold(resp.body.len()) else {
                return Err(budget_spent(&budget));
            };
            let mut out = http::Response::builder().status(resp.status);
            if let Some(h) = out.headers_mut() {
                *h = resp.headers;
            }
            let body = HeldBody {
                body: Full::new(resp.body),
                _held: held,
            }
            .boxed_unsync();
            let response = out
                .body(body)
                .map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))?;
            let done: Box<dyn Future<Output = _> + Send> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

fn budget_spent(budget: &HostBudget) -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(format!(
        "the invocation's host memory budget of {} MiB is spent",
        budget.limit() >> 20
    )))
}

/// A response body the guest has not read yet, holding its bytes of the
/// host budget until it is dropped.
struct HeldBody {
    body: Full<Bytes>,
    _held: Held,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        Pin::new(&mut this.body)
            .poll_frame(cx)
            .map_err(|never| match never {})
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Turns a `wasi:http` request into a policy request. The authority becomes
/// the slot (the policy refuses anything that is not a slot name: ports, IP
/// addresses, other hosts); the guest's scheme is ignored, since the
/// credential's base URL decides it. The body is buffered so the policy
/// sees one whole request, never more than the credential accepts and the
/// host budget holds; a request the policy will refuse anyway (budget spent,
/// slot unbound) is not read at all.
async fn guest_request_from_wasi(
    request: http::Request<wasmtime_wasi_http::WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
    grant: &Grant,
    budget: &Arc<HostBudget>,
) -> wasmtime_wasi_http::Result<(GuestRequest, Option<Held>)> {
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
    let (body, held) = match grant.request_body_limit(&slot) {
        Some(limit) => {
            let (bytes, held) = buffer_body(body, limit, budget).await?;
            (bytes, Some(held))
        }
        None => (Bytes::new(), None),
    };
    let timeout = options.and_then(|o| {
        [o.connect_timeout, o.first_byte_timeout]
            .into_iter()
            .flatten()
            .min()
    });
    let guest = GuestRequest {
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
    };
    Ok((guest, held))
}

/// Reads a guest's request body frame by frame, refusing it as soon as it
/// passes `limit` or the host budget.
async fn buffer_body(
    mut body: wasmtime_wasi_http::WasiBody,
    limit: usize,
    budget: &Arc<HostBudget>,
) -> wasmtime_wasi_http::Result<(Bytes, Held)> {
    let mut held = budget.hold(0).expect("an empty hold always fits");
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            return Err(wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit as u64)));
        }
        if !held.grow(data.len()) {
            return Err(budget_spent(budget));
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), held))
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

/// How many resources (`wasi:http` fields, requests, streams, pollables) one
/// invocation may hold at once. Half the host budget is set aside for the
/// worst case of every one of them being a full header set, so the host
/// memory an invocation can cause stays within its budget; at the default
/// 32 MiB that is 512, many times what the JavaScript and Python runtimes
/// use for a page of concurrent requests.
pub fn resource_cap(host_memory_bytes: u64) -> usize {
    ((host_memory_bytes as usize / 2) / FIELD_SIZE_LIMIT).clamp(64, 100_000)
}

/// `message` cut to [`MAX_LOG_LINE_BYTES`] on a character boundary, saying
/// how much was cut.
fn truncate_line(message: String) -> String {
    if message.len() <= MAX_LOG_LINE_BYTES {
        return message;
    }
    let mut end = MAX_LOG_LINE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let cut = message.len() - end;
    // A new string: truncating would keep the whole allocation alive.
    format!("{} [{cut} more bytes cut]", &message[..end])
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

/// Config given to one use of a plugin, as a JSON object.
pub type PluginConfig = Arc<serde_json::Map<String, serde_json::Value>>;

/// An empty configuration.
pub fn empty_config() -> PluginConfig {
    Arc::new(serde_json::Map::new())
}

/// Slot bindings of one invocation: slot name to credential name.
pub type Bindings = BTreeMap<String, String>;
