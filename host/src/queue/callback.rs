//! Result callbacks: when an async run reaches a final status, its result
//! is POSTed to the URL the caller gave, signed so the receiver can trust it,
//! and delivered again until the receiver answers 2xx (up to a bound).
//!
//! The signature is the `Plugboard-Signature` header,
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the
//! timestamp is signed with the body so a captured callback cannot be
//! replayed later (receivers reject old timestamps; see [`verify`]).
//!
//! Callback URLs are caller input, so the host only calls URLs under the
//! prefixes the operator allows (`[runs] callback_urls`); anything else is
//! refused when the run is invoked.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use sha2::Sha256;
use url::Url;

use crate::outbound::{HttpClient, TlsSettings, build_client};
use crate::secret::Secret;
use crate::store::QueuedRun;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "plugboard-signature";

/// Result callbacks of one host.
#[derive(Clone, Debug, Default)]
pub struct CallbackSettings {
    /// The signing secret; without one, callbacks are refused.
    pub secret: Option<Secret>,
    /// URL prefixes callbacks may go to.
    pub allowed: Vec<Url>,
    /// Deliveries tried before giving up (default 10 when 0).
    pub max_attempts: u32,
}

impl CallbackSettings {
    /// Checks a caller's callback URL: a URL under an allowed prefix, with a
    /// signing secret configured.
    pub fn check_url(&self, text: &str) -> Result<Url, String> {
        if self.secret.is_none() {
            return Err(
                "this host takes no result callbacks: its operator has not set `[runs] callback_secret`"
                    .into(),
            );
        }
        let url = Url::parse(text).map_err(|e| format!("callback URL `{text}` is not a URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err("a callback URL must not carry a user name, password or fragment".into());
        }
        // Whole path segments, on the decoded path: `/hooks` admits
        // `/hooks/erp`, never `/hooks-admin` or `/hooks/..%2fadmin`.
        let allowed = self
            .allowed
            .iter()
            .any(|p| crate::callout::confine::is_within(p, &url));
        if !allowed {
            return Err(format!(
                "callback URL `{url}` is not under an allowed prefix (`[runs] callback_urls`: {})",
                if self.allowed.is_empty() {
                    "none set".to_string()
                } else {
                    self.allowed
                        .iter()
                        .map(|u| format!("`{u}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        Ok(url)
    }

    /// The client deliveries use.
    pub fn client(&self) -> HttpClient {
        build_client(Duration::from_secs(10), &TlsSettings::default()).expect("default TLS settings build")
    }

    fn max_attempts(&self) -> u32 {
        if self.max_attempts == 0 {
            10
        } else {
            self.max_attempts
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The signature header value for `body` at `at`.
pub fn sign(secret: &str, body: &[u8], at: SystemTime) -> String {
    let t = crate::time::unix_secs(at);
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header as a receiver would: the HMAC matches (in
/// constant time) and the timestamp is within `tolerance` of `now`.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err("malformed signature header".into());
    };
    let now_s = crate::time::unix_secs(now);
    if now_s.abs_diff(t) > tolerance.as_secs() {
        return Err("signature timestamp outside the tolerance".into());
    }
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1)
        .map_err(|_| "signature does not match".to_string())
}

/// Delay before delivery attempt `n + 1` after `n` failed ones: 1 s, 2 s,
/// 4 s ... capped at 10 minutes.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(10)).min(Duration::from_secs(600))
}

/// Tries one delivery of `run`'s result; returns the new callback state.
pub async fn deliver(
    settings: &CallbackSettings,
    client: &HttpClient,
    run: &QueuedRun,
    body: Vec<u8>,
    now_ms: u64,
) -> Value {
    let prev = run.callback.clone().unwrap_or(json!({}));
    let attempts = prev["attempts"].as_u64().unwrap_or(0) as u32 + 1;
    let outcome = match (&settings.secret, &run.callback_url) {
        (Some(secret), Some(url)) => send(client, secret, url, &run.id, body).await,
        (None, _) => Err("no callback secret is configured on this host".to_string()),
        (_, None) => Err("the run has no callback URL".to_string()),
    };
    match outcome {
        Ok(status) => {
            json!({"state": "delivered", "attempts": attempts, "last_status": status, "delivered_at_ms": now_ms})
        }
        Err(error) if attempts >= settings.max_attempts() => {
            json!({"state": "failed", "attempts": attempts, "last_error": error, "failed_at_ms": now_ms})
        }
        Err(error) => json!({
            "state": "pending",
            "attempts": attempts,
            "last_error": error,
            "next_at_ms": now_ms + backoff(attempts - 1).as_millis() as u64,
        }),
    }
}

async fn send(
    client: &HttpClient,
    secret: &Secret,
    url: &str,
    run_id: &str,
    body: Vec<u8>,
) -> Result<u16, String> {
    let signature = sign(secret.expose(), &body, SystemTime::now());
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("plugboard-run-id", run_id)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the callback request: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "the receiver did not answer within 30 s".to_string())?
        .map_err(|e| format!("cannot reach the receiver: {e}"))?;
    let status = response.status().as_u16();
    // Read (a bounded part of) the answer so the connection can be reused.
    let _ = Limited::new(response.into_body(), 64 * 1024).collect().await;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_old_timestamps() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let header = sign("whsec", b"{\"a\":1}", at);
        assert!(header.starts_with("t=1795000000,v1="));
        let tol = Duration::from_secs(300);
        verify("whsec", &header, b"{\"a\":1}", at, tol).unwrap();
        assert!(verify("whsec", &header, b"{\"a\":2}", at, tol).is_err());
        assert!(verify("other", &header, b"{\"a\":1}", at, tol).is_err());
        assert!(verify("whsec", &header, b"{\"a\":1}", at + Duration::from_secs(301), tol).is_err());
    }

    #[test]
    fn callback_urls_must_be_under_an_allowed_prefix() {
        let s = CallbackSettings {
            secret: Some(Secret::from_plaintext("k".into())),
            allowed: vec![Url::parse("https://erp.example.com/hooks/").unwrap()],
            max_attempts: 0,
        };
        assert!(s.check_url("https://erp.example.com/hooks/orders").is_ok());
        assert!(s.check_url("https://erp.example.com/admin").is_err());
        assert!(s.check_url("http://erp.example.com/hooks/x").is_err());
        assert!(s.check_url("https://erp.example.com.evil.io/hooks/").is_err());
        // Whole segments of the decoded path, whatever the prefix's trailing slash.
        let bare = CallbackSettings {
            allowed: vec![Url::parse("https://erp.example.com/hooks").unwrap()],
            ..s.clone()
        };
        for settings in [&s, &bare] {
            for ok in [
                "https://erp.example.com/hooks/a/b?x=1",
                "https://erp.example.com/hooks/a%20b",
            ] {
                assert!(settings.check_url(ok).is_ok(), "{ok}");
            }
            for bad in [
                "https://erp.example.com/hooks-admin",
                "https://erp.example.com/hooksadmin/x",
                "https://erp.example.com/hooks/..%2fadmin",
                "https://erp.example.com/hooks/..%2Fadmin",
                "https://erp.example.com/hooks/%2e%2e/admin",
                "https://erp.example.com/hooks/%252e%252e/admin",
                "https://erp.example.com/hooks/..%5cadmin",
                "https://erp.example.com/hooks/.%2e;x/admin",
                "https://erp.example.com/hooks%2f..%2fadmin",
                "https://erp.example.com:8443/hooks/x",
                "https://user@erp.example.com/hooks/x",
            ] {
                assert!(settings.check_url(bad).is_err(), "{bad} should be refused");
            }
        }
        let none = CallbackSettings::default();
        assert!(
            none.check_url("https://erp.example.com/hooks/")
                .unwrap_err()
                .contains("callback_secret")
        );
    }

    #[test]
    fn delivery_backs_off() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), Duration::from_secs(600));
    }
}
