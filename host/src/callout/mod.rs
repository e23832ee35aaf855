//! The callout policy: the one path from a plugin to the network.
//!
//! Both ways a connector can make a request - the `callout` interface and its
//! own `wasi:http` client - end in [`CalloutPolicy::execute`]. There is no
//! other route: the host is built without wasmtime-wasi-http's default
//! sender, so a request that does not pass through here cannot be sent.
//!
//! For each request the policy
//! 1. counts it against the invocation's callout budget (as it does every
//!    redirect hop and every resend with a new token it causes);
//! 2. resolves the slot through the invocation's bindings to a named
//!    credential and checks that the credential allows this plugin (by name,
//!    or pinned to the plugin file's digest) and this method;
//! 3. joins the path onto the credential's base URL without ever leaving it,
//!    and refuses query parameters the credential owns ([`confine`]);
//! 4. removes the guest's authentication, connection, reflection and routing
//!    headers and adds the credential's own;
//! 5. sends it on the credential's pooled client ([`crate::outbound`]) with the clamped timeout,
//!    the rate limit and the response-size limit, following redirects only
//!    within the base URL ([`send`]);
//! 6. takes every injected value back out of the response and drops the
//!    session cookies the upstream set ([`crate::redact`]);
//! 7. records it (method, URL without secrets, status, duration), within the
//!    invocation's host memory budget.
//!
//! The guest gets the response or a typed [`CalloutError`]; secrets never
//! appear in either, nor in the record.

pub mod confine;
mod send;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::Serialize;

use crate::budget::HostBudget;
use crate::credentials::live::{AuthError, CredentialSet, LiveCredential, Source};
use crate::credentials::{CredentialSpec, FORBIDDEN_METHODS, NamedCredential, STANDARD_METHODS};
use crate::limits::Limits;

/// Longest URL kept in a callout record; the rest is cut and counted.
const MAX_RECORD_URL: usize = 2048;
/// Longest error text and slot kept in a callout record.
const MAX_RECORD_TEXT: usize = 1024;
/// What one kept callout record costs the host budget besides its text.
const RECORD_OVERHEAD: usize = 256;

/// The credentials known to the host, each with its own connection pool.
#[derive(Debug, Default)]
pub struct CalloutPolicy {
    credentials: Arc<CredentialSet>,
}

/// The plugin a grant is for: its name and the SHA-256 of its file, which
/// `allowed_plugins` entries may pin.
#[derive(Debug, Clone, Copy)]
pub struct PluginIdentity<'a> {
    /// Plugin name (also its file name, without `.wasm`).
    pub name: &'a str,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: &'a str,
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

    /// Resolves slot bindings (`slot -> credential name`) for one invocation
    /// of `plugin` under `limits`, charging its records and buffers to
    /// `budget`. Unknown credential names are refused here, before the
    /// plugin runs; each callout then uses the credential as it is at that
    /// moment.
    pub fn grant(
        &self,
        plugin: PluginIdentity<'_>,
        bindings: &BTreeMap<String, String>,
        limits: &Limits,
        deadline: Instant,
        budget: Arc<HostBudget>,
    ) -> Result<Arc<Grant>, String> {
        for (slot, cred) in bindings {
            if self.credentials.get(cred).is_none() {
                return Err(format!(
                    "slot `{slot}` is bound to credential `{cred}`, which does not exist"
                ));
            }
        }
        Ok(Arc::new(Grant {
            plugin: plugin.name.to_string(),
            plugin_sha256: plugin.sha256.to_string(),
            slots: bindings.clone(),
            set: self.credentials.clone(),
            max_callouts: limits.max_callouts,
            used: AtomicU32::new(0),
            deadline,
            budget,
            records: Mutex::new(Records::default()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                limits.max_concurrent_callouts.max(1) as usize
            )),
            forced_refreshes: Mutex::new(Vec::new()),
        }))
    }

    /// Runs one guest request through the policy. See the module docs.
    pub async fn execute(grant: &Grant, req: GuestRequest) -> Result<GuestResponse, CalloutError> {
        let started = Instant::now();
        let at = SystemTime::now();
        let mut trace = Trace::default();
        let result = Self::send_checked(grant, &req, &mut trace).await;
        let retry_after_ms = result
            .as_ref()
            .ok()
            .and_then(|r| retry_after_ms(r, SystemTime::now()));
        grant.record(
            CalloutRecord {
                slot: cut(&req.slot, MAX_RECORD_TEXT),
                credential: trace.credential,
                method: cut(req.method.as_str(), MAX_RECORD_TEXT),
                url: cut(&trace.url.unwrap_or_else(|| req.path.clone()), MAX_RECORD_URL),
                status: result.as_ref().ok().map(|r| r.status),
                error: result
                    .as_ref()
                    .err()
                    .map(|e| cut(&e.to_string(), MAX_RECORD_TEXT)),
                started_at_ms: crate::time::unix_ms(at),
                duration_ms: started.elapsed().as_millis() as u64,
                request_bytes: req.body.len(),
                response_bytes: result.as_ref().map_or(0, |r| r.body.len()),
                stripped_headers: trace.stripped,
                token_refreshed: trace.token_refreshed,
                upstream_requests: trace.upstream_requests,
                redacted: trace.redacted,
                retry_after_ms,
            },
            matches!(result, Err(CalloutError::BudgetExhausted(_))),
        );
        result
    }

    /// Steps 1 to 6 of the policy; `trace` collects what the record shows.
    async fn send_checked(
        grant: &Grant,
        req: &GuestRequest,
        trace: &mut Trace,
    ) -> Result<GuestResponse, CalloutError> {
        grant.take_request()?;
        if crate::names::check_slot_name(&req.slot).is_err() {
            return Err(CalloutError::Denied(format!(
                "`{}` is not a credential slot: plugins address a slot by name, as in `https://api/path`, never a host or an IP address",
                confine::quoted(&req.slot)
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
        if !spec.allows(&grant.plugin, &grant.plugin_sha256) {
            let msg = format!(
                "credential `{}` does not allow plugin `{}` (file digest sha256:{})",
                spec.name, grant.plugin, grant.plugin_sha256
            );
            return Err(CalloutError::Denied(msg));
        }
        cred.ready()?;
        check_method(spec, &req.method)?;
        let url = confine::join_confined(&spec.base_url, &req.path).map_err(CalloutError::Denied)?;
        let guest_query = req.path.split_once('?').map_or("", |(_, q)| q);
        if let Some(param) = confine::owned_param_in(guest_query, cred.owned_query_params()) {
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
        let request = send::Outbound {
            grant,
            cred: &cred,
            method: req.method.clone(),
            url,
            headers,
            body: req.body.clone(),
            timeout,
        };
        request.send(trace).await
    }
}

/// Refuses a method outside the standard set and the credential's
/// `extra_methods`.
fn check_method(spec: &CredentialSpec, method: &Method) -> Result<(), CalloutError> {
    let m = method.as_str();
    if STANDARD_METHODS.contains(&m) || spec.extra_methods.contains(m) {
        return Ok(());
    }
    Err(CalloutError::Denied(format!(
        "method `{}` is not allowed through credential `{}`: use {}{}",
        confine::quoted(m),
        spec.name,
        STANDARD_METHODS.join(", "),
        if FORBIDDEN_METHODS.contains(&m.to_ascii_uppercase().as_str()) {
            String::new()
        } else {
            ", or list it in the credential's `extra_methods`".to_string()
        }
    )))
}

/// `text` cut to `max` bytes on a character boundary, saying how much was cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} more bytes]", &text[..end], text.len() - end)
}

/// What the record of a callout shows, filled in as the policy proceeds.
#[derive(Default)]
struct Trace {
    url: Option<String>,
    credential: Option<String>,
    stripped: Vec<String>,
    token_refreshed: bool,
    upstream_requests: u32,
    redacted: bool,
}

/// What one invocation may reach: its resolved slots, its callout budget and
/// the records of what it sent.
#[derive(Debug)]
pub struct Grant {
    plugin: String,
    plugin_sha256: String,
    slots: BTreeMap<String, String>,
    set: Arc<CredentialSet>,
    max_callouts: u32,
    used: AtomicU32,
    deadline: Instant,
    budget: Arc<HostBudget>,
    records: Mutex<Records>,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Credentials whose token this invocation already made the host
    /// replace after a refusal: at most once each.
    forced_refreshes: Mutex<Vec<String>>,
}

#[derive(Debug, Default)]
struct Records {
    kept: Vec<CalloutRecord>,
    dropped: usize,
    refused_for_budget: usize,
}

impl Grant {
    /// Keeps `r`, unless the host budget is spent or this is another
    /// refusal for a spent callout budget: those are counted instead.
    fn record(&self, r: CalloutRecord, budget_refusal: bool) {
        // A std mutex: held only to push, never across an await.
        let mut records = self.records.lock().expect("callout records lock");
        if budget_refusal {
            records.refused_for_budget += 1;
            if records.refused_for_budget > 1 {
                records.dropped += 1;
                return;
            }
        }
        let size = RECORD_OVERHEAD
            + r.url.len()
            + r.slot.len()
            + r.error.as_ref().map_or(0, String::len)
            + r.stripped_headers.iter().map(String::len).sum::<usize>();
        if self.budget.charge(size) {
            records.kept.push(r);
        } else {
            records.dropped += 1;
        }
    }

    /// The callouts made so far, and how many more were made but not kept.
    pub fn records(&self) -> (Vec<CalloutRecord>, usize) {
        let records = self.records.lock().expect("callout records lock");
        (records.kept.clone(), records.dropped)
    }

    /// Whether `slot` is bound in this invocation.
    pub fn has_slot(&self, slot: &str) -> bool {
        self.slots.contains_key(slot)
    }

    /// Counts one upstream request against the callout budget.
    fn take_request(&self) -> Result<(), CalloutError> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max_callouts).then_some(used + 1)
            })
            .map(|_| ())
            .map_err(|_| CalloutError::BudgetExhausted(self.max_callouts))
    }

    /// Whether the callout budget is used up.
    pub fn spent(&self) -> bool {
        self.used.load(Ordering::Acquire) >= self.max_callouts
    }

    /// Waits for a turn among this invocation's `wasi:http` requests in
    /// flight (the limits' `max_concurrent_callouts`).
    pub async fn in_flight_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// The largest request body worth reading for a request on `slot`: the
    /// credential's limit, or `None` when the policy will refuse the request
    /// whatever its body (budget spent, slot unbound, credential gone).
    pub fn request_body_limit(&self, slot: &str) -> Option<usize> {
        if self.spent() {
            return None;
        }
        let name = self.slots.get(slot)?;
        Some(self.set.get(name)?.spec().max_request_bytes)
    }

    /// Claims this invocation's one forced token refresh for `credential`.
    fn claim_forced_refresh(&self, credential: &str) -> bool {
        let mut claimed = self.forced_refreshes.lock().expect("forced refreshes lock");
        if claimed.iter().any(|c| c == credential) {
            return false;
        }
        claimed.push(credential.to_string());
        true
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

/// A credential's refusal as the guest sees it: a refused request as
/// `denied`, a spent rate limit as `rate limited`, a token failure keeping
/// whether a retry may help.
impl From<AuthError> for CalloutError {
    fn from(e: AuthError) -> CalloutError {
        match e {
            AuthError::Refused(message) => CalloutError::Denied(message),
            AuthError::RateLimited(message) => CalloutError::RateLimited(message),
            AuthError::Token { retryable, message } => CalloutError::Credential { retryable, message },
        }
    }
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
    /// Requests sent upstream for this callout: more than 1 when it followed
    /// redirects or was resent with a new token. Each counts against the
    /// callout budget and the credential's rate limit.
    pub upstream_requests: u32,
    /// Whether injected values were taken out of the response.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
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
    let delay = crate::retry::parse_retry_after(value, now)?;
    Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

/// The effective timeout: what the guest asked for, never more than the
/// credential allows, never past the invocation's deadline.
fn clamp_timeout(asked: Option<Duration>, credential: Duration, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    asked.unwrap_or(credential).min(credential).min(left)
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
