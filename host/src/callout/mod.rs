//! The callout policy: the one path from a plugin to the network.
//!
//! Both ways a connector can make a request - the `callout` interface and its
//! own `wasi:http` client - end in [`CalloutPolicy::execute`]. There is no
//! other route: the host is built without wasmtime-wasi-http's default
//! sender, so a request that does not pass through here cannot be sent.
//!
//! For each request the policy
//! 1. counts it against the invocation's callout budget;
//! 2. resolves the slot through the invocation's bindings to a named
//!    credential and checks that the credential allows this plugin;
//! 3. joins the path onto the credential's base URL without ever leaving it;
//! 4. removes the guest's authentication and connection headers and adds the
//!    credential's own;
//! 5. sends it on the credential's pooled client with the clamped timeout and
//!    the response-size limit, following redirects only within the base URL;
//! 6. records it (method, URL without secrets, status, duration).
//!
//! The guest gets the response or a typed [`CalloutError`]; secrets never
//! appear in either, nor in the record.

mod client;
pub mod confine;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Serialize;
use url::Url;

pub use client::{HttpClient, TlsSettings, build_client};

use crate::credentials::NamedCredential;
use crate::credentials::live::{CredentialSet, LiveCredential, Source};

/// Most same-origin redirects followed for one callout.
const MAX_REDIRECTS: usize = 5;

/// The credentials known to the host, each with its own connection pool.
#[derive(Debug, Default)]
pub struct CalloutPolicy {
    credentials: Arc<CredentialSet>,
}

impl CalloutPolicy {
    /// A policy over these credentials (declared in the config file).
    pub fn new(credentials: impl IntoIterator<Item = NamedCredential>) -> anyhow::Result<CalloutPolicy> {
        let set = CredentialSet::default();
        for c in credentials {
            set.insert(LiveCredential::build(c, Source::Config, 0, None, None).map_err(anyhow::Error::msg)?);
        }
        Ok(CalloutPolicy {
            credentials: Arc::new(set),
        })
    }

    /// The live credential set (the credential service swaps entries in it).
    pub fn credential_set(&self) -> &Arc<CredentialSet> {
        &self.credentials
    }

    /// The credential named `name`.
    pub fn credential(&self, name: &str) -> Option<Arc<LiveCredential>> {
        self.credentials.get(name)
    }

    /// Every credential, by name.
    pub fn credentials(&self) -> Vec<Arc<LiveCredential>> {
        self.credentials.all()
    }

    /// Resolves slot bindings (`slot -> credential name`) for one invocation.
    /// Unknown credential names are refused here, before the plugin runs;
    /// each callout then uses the credential as it is at that moment.
    pub fn grant(
        &self,
        plugin: &str,
        bindings: &BTreeMap<String, String>,
        max_callouts: u32,
        deadline: Instant,
    ) -> Result<Arc<Grant>, String> {
        for (slot, cred) in bindings {
            if self.credentials.get(cred).is_none() {
                return Err(format!(
                    "slot `{slot}` is bound to credential `{cred}`, which does not exist"
                ));
            }
        }
        Ok(Arc::new(Grant {
            plugin: plugin.to_string(),
            slots: bindings.clone(),
            set: self.credentials.clone(),
            max_callouts,
            used: AtomicU32::new(0),
            deadline,
            records: Mutex::new(Vec::new()),
        }))
    }

    /// Runs one guest request through the policy. See the module docs.
    pub async fn execute(grant: &Grant, req: GuestRequest) -> Result<GuestResponse, CalloutError> {
        let started = Instant::now();
        let at = SystemTime::now();
        let mut trace = Trace::default();
        let result = Self::send_checked(grant, &req, &mut trace).await;
        grant.record(CalloutRecord {
            slot: req.slot.clone(),
            credential: trace.credential,
            method: req.method.to_string(),
            url: trace.url.unwrap_or_else(|| req.path.clone()),
            status: result.as_ref().ok().map(|r| r.status),
            error: result.as_ref().err().map(|e| e.to_string()),
            started_at_ms: unix_ms(at),
            duration_ms: started.elapsed().as_millis() as u64,
            request_bytes: req.body.len(),
            response_bytes: result.as_ref().map_or(0, |r| r.body.len()),
            stripped_headers: trace.stripped,
            token_refreshed: trace.token_refreshed,
            retry_after_ms: result
                .as_ref()
                .ok()
                .and_then(|r| retry_after_ms(r, SystemTime::now())),
        });
        result
    }

    /// Steps 1 to 5 of the policy; `trace` collects what the record shows.
    async fn send_checked(
        grant: &Grant,
        req: &GuestRequest,
        trace: &mut Trace,
    ) -> Result<GuestResponse, CalloutError> {
        if grant.used.fetch_add(1, Ordering::SeqCst) >= grant.max_callouts {
            return Err(CalloutError::BudgetExhausted(grant.max_callouts));
        }
        if crate::credentials::check_slot_name(&req.slot).is_err() {
            return Err(CalloutError::Denied(format!(
                "`{}` is not a credential slot: plugins address a slot by name, as in `https://api/path`, never a host or an IP address",
                req.slot.escape_debug()
            )));
        }
        let name = (grant.slots.get(&req.slot)).ok_or_else(|| CalloutError::UnboundSlot(req.slot.clone()))?;
        trace.credential = Some(name.clone());
        // The credential as it is now: an edit takes effect for the next
        // callout, and this one finishes with what it started with.
        let cred = grant
            .set
            .get(name)
            .ok_or_else(|| CalloutError::Denied(format!("credential `{name}` no longer exists")))?;
        let spec = cred.spec();
        if !spec.allows(&grant.plugin) {
            let msg = format!(
                "credential `{}` does not allow plugin `{}`",
                spec.name, grant.plugin
            );
            return Err(CalloutError::Denied(msg));
        }
        cred.ready()?;
        let url = confine::join_confined(&spec.base_url, &req.path).map_err(CalloutError::Denied)?;
        if let Some(param) = cred.owned_query_param()
            && url.query_pairs().any(|(k, _)| k == param)
        {
            return Err(CalloutError::Denied(format!(
                "the query parameter `{param}` is set by credential `{}`; a plugin cannot set it",
                spec.name
            )));
        }
        trace.url = Some(url.to_string());
        if req.body.len() > spec.max_request_bytes {
            return Err(CalloutError::Denied(format!(
                "request body of {} bytes exceeds the credential's limit of {} bytes",
                req.body.len(),
                spec.max_request_bytes
            )));
        }
        let (headers, stripped) =
            confine::clean_headers(&req.headers, cred.owned_headers()).map_err(CalloutError::Denied)?;
        trace.stripped = stripped;
        let timeout = clamp_timeout(
            req.timeout,
            Duration::from_millis(spec.timeout_ms),
            grant.deadline,
        );
        cred.wait_turn(grant.deadline).await?;
        let timeout = timeout.min(grant.deadline.saturating_duration_since(Instant::now()));
        let send = send_following_redirects(&cred, req.method.clone(), url, headers, req.body.clone(), trace);
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| CalloutError::Timeout(timeout.as_millis() as u32))?
    }
}

/// What the record of a callout shows, filled in as the policy proceeds.
#[derive(Default)]
struct Trace {
    url: Option<String>,
    credential: Option<String>,
    stripped: Vec<String>,
    token_refreshed: bool,
}

/// What one invocation may reach: its resolved slots, its callout budget and
/// the records of what it sent.
#[derive(Debug)]
pub struct Grant {
    plugin: String,
    slots: BTreeMap<String, String>,
    set: Arc<CredentialSet>,
    max_callouts: u32,
    used: AtomicU32,
    deadline: Instant,
    records: Mutex<Vec<CalloutRecord>>,
}

impl Grant {
    fn record(&self, r: CalloutRecord) {
        // A std mutex: held only to push, never across an await.
        self.records.lock().expect("callout records lock").push(r);
    }

    /// The callouts made so far.
    pub fn records(&self) -> Vec<CalloutRecord> {
        self.records.lock().expect("callout records lock").clone()
    }

    /// Whether `slot` is bound in this invocation.
    pub fn has_slot(&self, slot: &str) -> bool {
        self.slots.contains_key(slot)
    }
}

/// A request as the guest asked for it, before the policy.
#[derive(Debug, Clone)]
pub struct GuestRequest {
    /// Credential slot.
    pub slot: String,
    /// Method.
    pub method: Method,
    /// Path and query relative to the base URL.
    pub path: String,
    /// Guest headers, raw.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Bytes,
    /// Timeout the guest asked for.
    pub timeout: Option<Duration>,
}

/// The upstream's answer as the guest receives it.
#[derive(Debug, Clone)]
pub struct GuestResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Whole body (bounded by the credential's limit).
    pub body: Bytes,
}

/// Why the policy did not deliver a response. The guest sees this; it names
/// the cause and never carries a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CalloutError {
    /// The slot is not bound in this invocation.
    #[error("slot `{0}` is not bound to a credential")]
    UnboundSlot(String),
    /// The policy refused the request.
    #[error("request refused: {0}")]
    Denied(String),
    /// The invocation used up its callouts.
    #[error("callout budget of {0} requests is used up")]
    BudgetExhausted(u32),
    /// No answer in time.
    #[error("no answer within {0} ms")]
    Timeout(u32),
    /// The response was too large.
    #[error("response body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The upstream could not be reached.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// The credential's rate limit gave no turn in time (retryable).
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// The credential could not authenticate the request: no access token
    /// could be obtained, or it needs to be reconnected.
    #[error("{message}")]
    Credential {
        /// Whether trying again later may succeed.
        retryable: bool,
        /// What went wrong, naming the credential; never a secret.
        message: String,
    },
}

/// One callout, as recorded with the invocation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CalloutRecord {
    /// Slot the guest addressed.
    pub slot: String,
    /// Credential the slot resolved to, when it did.
    pub credential: Option<String>,
    /// HTTP method.
    pub method: String,
    /// URL before authentication was added (or the guest's path if it was
    /// refused before joining).
    pub url: String,
    /// Upstream status, when there was an answer.
    pub status: Option<u16>,
    /// Why there was no answer.
    pub error: Option<String>,
    /// Start, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Request body size.
    pub request_bytes: usize,
    /// Response body size.
    pub response_bytes: usize,
    /// Guest headers the policy removed.
    pub stripped_headers: Vec<String>,
    /// Whether the upstream refused the access token and the callout was
    /// sent again with a new one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub token_refreshed: bool,
    /// How long the upstream asked to be left alone, from its `Retry-After`
    /// on a 429 or 5xx answer; the queue waits at least this long before a
    /// retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The upstream's `Retry-After` in milliseconds, read only on answers that
/// mean "not now" (429 and 5xx): on a redirect the header means something
/// else, and on a success there is nothing to retry.
fn retry_after_ms(resp: &GuestResponse, now: SystemTime) -> Option<u64> {
    if !matches!(resp.status, 429 | 500..=599) {
        return None;
    }
    let value = resp.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    let delay = crate::queue::retry::parse_retry_after(value, now)?;
    Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

/// The effective timeout: what the guest asked for, never more than the
/// credential allows, never past the invocation's deadline.
fn clamp_timeout(asked: Option<Duration>, credential: Duration, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    asked.unwrap_or(credential).min(credential).min(left)
}

async fn send_following_redirects(
    cred: &LiveCredential,
    mut method: Method,
    mut url: Url,
    headers: HeaderMap,
    mut body: Bytes,
    trace: &mut Trace,
) -> Result<GuestResponse, CalloutError> {
    for _ in 0..=MAX_REDIRECTS {
        let resp = send_authenticated(cred, &method, &url, &headers, body.clone(), trace).await?;
        let Some(next) = same_origin_redirect(cred, &url, &resp) else {
            return Ok(resp);
        };
        if resp.status == StatusCode::SEE_OTHER.as_u16()
            || (method == Method::POST && matches!(resp.status, 301 | 302))
        {
            method = Method::GET;
            body = Bytes::new();
        }
        url = next;
    }
    Err(CalloutError::Unreachable(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// The redirect target when the response is a redirect that stays inside the
/// credential's base URL. Redirects anywhere else are handed to the guest
/// unfollowed, so credentials never travel to another origin.
fn same_origin_redirect(cred: &LiveCredential, current: &Url, resp: &GuestResponse) -> Option<Url> {
    if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = resp.headers.get(http::header::LOCATION)?.to_str().ok()?;
    let next = current.join(location).ok()?;
    confine::is_within(&cred.spec().base_url, &next).then_some(next)
}

/// Authenticates and sends one request; when the upstream refuses an OAuth
/// token (401, or a status the credential lists), gets a new token - one
/// refresh shared by every callout that saw the refusal - and sends once more.
async fn send_authenticated(
    cred: &LiveCredential,
    method: &Method,
    url: &Url,
    clean: &HeaderMap,
    body: Bytes,
    trace: &mut Trace,
) -> Result<GuestResponse, CalloutError> {
    let mut target = url.clone();
    let mut headers = clean.clone();
    let token = cred
        .authenticate(method, &mut target, &mut headers, &body)
        .await?;
    let resp = send_once(cred, method, &target, url, &headers, body.clone()).await?;
    match token {
        Some(token) if cred.token_rejected(resp.status) => {
            cred.reauthenticate(&token, &mut headers).await?;
            trace.token_refreshed = true;
            send_once(cred, method, &target, url, &headers, body).await
        }
        _ => Ok(resp),
    }
}

/// Sends to `target` (the URL with any query-placed key); errors name only
/// `shown`'s origin.
async fn send_once(
    cred: &LiveCredential,
    method: &Method,
    target: &Url,
    shown: &Url,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<GuestResponse, CalloutError> {
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(target.as_str())
        .body(Full::new(body))
        .map_err(|e| CalloutError::Denied(format!("cannot build the request: {e}")))?;
    *request.headers_mut() = headers.clone();
    let response = cred
        .client()
        .request(request)
        .await
        .map_err(|e| CalloutError::Unreachable(describe_client_error(&e, shown)))?;
    let (parts, body) = response.into_parts();
    let limit = cred.spec().max_response_bytes;
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                CalloutError::TooLarge(limit as u64)
            } else {
                CalloutError::Unreachable(format!(
                    "reading the response from `{}` failed: {e}",
                    origin(shown)
                ))
            }
        })?
        .to_bytes();
    Ok(GuestResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A client error in words, naming the origin but never the full URL (whose
/// query could hold an API key).
fn describe_client_error(e: &hyper_util::client::legacy::Error, url: &Url) -> String {
    use std::error::Error as _;
    let mut cause = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    format!("cannot reach `{}`: {cause}", origin(url))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_timeouts_are_clamped() {
        let far = Instant::now() + Duration::from_secs(3600);
        let c = Duration::from_secs(10);
        assert_eq!(clamp_timeout(Some(Duration::from_secs(60)), c, far), c);
        assert_eq!(
            clamp_timeout(Some(Duration::from_secs(2)), c, far),
            Duration::from_secs(2)
        );
        assert_eq!(clamp_timeout(None, c, far), c);
        let near = Instant::now() + Duration::from_millis(50);
        assert!(clamp_timeout(None, c, near) <= Duration::from_millis(50));
    }

    /// Retry-After is recorded from 429 and 5xx answers only.
    #[test]
    fn retry_after_is_read_from_refusals_only() {
        let response = |status: u16, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            GuestResponse {
                status,
                headers,
                body: Bytes::new(),
            }
        };
        let now = SystemTime::now();
        assert_eq!(retry_after_ms(&response(429, "120"), now), Some(120_000));
        assert_eq!(retry_after_ms(&response(503, "2"), now), Some(2000));
        assert_eq!(retry_after_ms(&response(500, "0"), now), Some(0));
        assert_eq!(retry_after_ms(&response(503, "soon"), now), None);
        assert_eq!(retry_after_ms(&response(200, "120"), now), None);
        assert_eq!(retry_after_ms(&response(301, "120"), now), None);
        let plain = GuestResponse {
            headers: HeaderMap::new(),
            ..response(429, "1")
        };
        assert_eq!(retry_after_ms(&plain, now), None);
    }
}
