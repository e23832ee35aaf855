//! Sending one checked callout: authentication, the rate limit, redirects
//! within the base URL, one resend with a new token, and cleaning the answer.
//!
//! Every request that actually goes upstream - the first, each redirect hop,
//! a resend after a refused token - takes a turn of the credential's rate
//! limit and a unit of the invocation's callout budget, so neither can be
//! multiplied by a path that redirects or answers 401.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, LOCATION};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use url::Url;

use super::{CalloutError, Grant, GuestResponse, Trace, confine};
use crate::credentials::live::LiveCredential;

/// Most same-origin redirects followed for one callout.
const MAX_REDIRECTS: usize = 5;

/// A request that passed the policy's checks, ready to send.
pub(super) struct Outbound<'a> {
    pub grant: &'a Grant,
    pub cred: &'a LiveCredential,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Longest the upstream may take, from the first request going out
    /// (waiting for the rate limit does not count) to the last answer.
    pub timeout: Duration,
}

impl Outbound<'_> {
    /// Sends, following redirects that stay inside the base URL, and returns
    /// the final answer cleaned for the guest.
    pub async fn send(mut self, trace: &mut Trace) -> Result<GuestResponse, CalloutError> {
        let mut deadline = None;
        let mut injected = Vec::new();
        for hop in 0..=MAX_REDIRECTS {
            if hop > 0 {
                self.grant.take_request()?;
            }
            let resp = self
                .send_authenticated(&mut deadline, &mut injected, trace)
                .await?;
            let Some(next) = self.same_origin_redirect(&resp) else {
                return self.finish(resp, &injected, trace);
            };
            if resp.status == StatusCode::SEE_OTHER.as_u16()
                || (self.method == Method::POST && matches!(resp.status, 301 | 302))
            {
                self.method = Method::GET;
                self.body = Bytes::new();
            }
            self.url = next;
        }
        Err(CalloutError::Unreachable(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Authenticates and sends once; when the upstream refuses an OAuth
    /// token, gets a new one - one refresh shared by every callout that saw
    /// the refusal, at most one per credential per invocation, and not at
    /// all right after another forced refresh - and sends once more.
    /// Otherwise the refusal goes to the guest as it is.
    async fn send_authenticated(
        &self,
        deadline: &mut Option<Instant>,
        injected: &mut Vec<String>,
        trace: &mut Trace,
    ) -> Result<GuestResponse, CalloutError> {
        let mut target = self.url.clone();
        let mut headers = self.headers.clone();
        let token = (self.cred)
            .authenticate(&self.method, &mut target, &mut headers, &self.body, injected)
            .await?;
        let resp = self.hop(&target, &headers, deadline, trace).await?;
        let Some(token) = token.filter(|_| self.cred.token_rejected(resp.status)) else {
            return Ok(resp);
        };
        if self.grant.spent() || !self.grant.claim_forced_refresh(&self.cred.spec().name) {
            return Ok(resp);
        }
        if !self.cred.reauthenticate(&token, &mut headers, injected).await? {
            return Ok(resp);
        }
        if self.grant.take_request().is_err() {
            return Ok(resp);
        }
        trace.token_refreshed = true;
        self.hop(&target, &headers, deadline, trace).await
    }

    /// One request upstream: a turn of the rate limit, then the send within
    /// what is left of the callout's time.
    async fn hop(
        &self,
        target: &Url,
        headers: &HeaderMap,
        deadline: &mut Option<Instant>,
        trace: &mut Trace,
    ) -> Result<GuestResponse, CalloutError> {
        self.cred.wait_turn(self.grant.deadline).await?;
        let until = *deadline.get_or_insert_with(|| (Instant::now() + self.timeout).min(self.grant.deadline));
        let left = until.saturating_duration_since(Instant::now());
        trace.upstream_requests += 1;
        let mut headers = headers.clone();
        // Plain bodies only: an encoded one could not be checked for secrets.
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let send = send_once(
            self.cred,
            &self.method,
            target,
            &self.url,
            headers,
            self.body.clone(),
        );
        tokio::time::timeout(left, send)
            .await
            .map_err(|_| CalloutError::Timeout(self.timeout.as_millis() as u32))?
    }

    /// The redirect target when the response is a redirect that stays inside
    /// the credential's base URL (judged as the upstream will decode it).
    /// Redirects anywhere else are handed to the guest unfollowed, so
    /// credentials never travel to another origin. An API key the upstream
    /// echoed into the target is dropped: authentication adds it again.
    fn same_origin_redirect(&self, resp: &GuestResponse) -> Option<Url> {
        if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let location = resp.headers.get(LOCATION)?.to_str().ok()?;
        let mut next = self.url.join(location).ok()?;
        if !confine::is_within(&self.cred.spec().base_url, &next) {
            return None;
        }
        if let Some(param) = self.cred.owned_query_param() {
            let kept: Vec<(String, String)> = next
                .query_pairs()
                .filter(|(k, _)| k != param)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            next.set_query(None);
            if !kept.is_empty() {
                next.query_pairs_mut().extend_pairs(kept);
            }
        }
        Some(next)
    }

    /// The answer as the guest may see it: no session cookies, no injected
    /// value anywhere in its headers or body.
    fn finish(
        &self,
        mut resp: GuestResponse,
        injected: &[String],
        trace: &mut Trace,
    ) -> Result<GuestResponse, CalloutError> {
        let encoding = resp
            .headers
            .get(CONTENT_ENCODING)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(encoding) = encoding.filter(|e| !e.eq_ignore_ascii_case("identity"))
            && !resp.body.is_empty()
        {
            return Err(CalloutError::Denied(format!(
                "`{}` answered with a `{}`-encoded body although the host asked for none; Plugboard hands on only bodies it can check for secrets",
                origin(&self.url),
                confine::quoted(&encoding)
            )));
        }
        confine::clean_response_headers(&mut resp.headers);
        let redactor = self.cred.redactor(injected);
        let headers_changed = redactor.redact_headers(&mut resp.headers) > 0;
        if let Some(clean) = redactor.redact(&resp.body) {
            resp.body = Bytes::from(clean);
            trace.redacted = true;
        }
        trace.redacted |= headers_changed;
        Ok(resp)
    }
}

/// Sends to `target` (the URL with any query-placed key); errors name only
/// `shown`'s origin.
async fn send_once(
    cred: &LiveCredential,
    method: &Method,
    target: &Url,
    shown: &Url,
    headers: HeaderMap,
    body: Bytes,
) -> Result<GuestResponse, CalloutError> {
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(target.as_str())
        .body(Full::new(body))
        .map_err(|e| CalloutError::Denied(format!("cannot build the request: {e}")))?;
    *request.headers_mut() = headers;
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
