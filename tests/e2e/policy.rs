//! The callout policy, through real plugins on both paths (`callout` and
//! `wasi:http`), against loopback upstreams that record what they received.

use plugboard_tests::{TestHost, Upstream, credential, secret_ref};
use serde_json::{Value, json};

use crate::util::{call, call_crm, output};

fn bearer(up: &Upstream, extra: &str) -> plugboard::credentials::NamedCredential {
    credential(
        "crm",
        &format!(
            "base_url = \"{}/api\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n{extra}",
            up.url(),
            secret_ref("tok-policy")
        ),
    )
}

/// `count` GETs of `/n` in one invocation of the hostile plugin; returns
/// `{"statuses", "errors"}` as the plugin saw them.
async fn callout_loop(host: &TestHost, count: u32) -> Value {
    output(
        &call_crm(
            host,
            "hostile",
            "callout-loop",
            json!({"path": "/n", "count": count}),
        )
        .await,
    )
}

/// What the hostile plugin observed for one `callout.send`.
async fn guest_callout(host: &TestHost, req: Value, bindings: &[(&str, &str)]) -> Value {
    output(&call(host, "hostile", "callout", req, bindings).await)
}

/// The guest's Authorization, Cookie and Proxy-* headers never reach the
/// upstream; the credential's do.
#[tokio::test]
async fn guest_auth_headers_are_replaced_by_the_credential() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile", "http-fetch"], vec![bearer(&up, "")]).await;
    let headers = json!([
        ["Authorization", "Bearer forged"],
        ["Cookie", "s=1"],
        ["Proxy-Authorization", "x"],
        ["X-Trace", "t1"]
    ]);
    let seen = guest_callout(
        &host,
        json!({"credential": "api", "method": "GET", "path": "/x", "headers": headers}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["ok"]["status"], 200, "{seen}");
    let inv = call_crm(
        &host,
        "http-fetch",
        "get",
        json!({"path": "/y", "authorization": "Bearer forged"}),
    )
    .await;
    output(&inv);
    for req in up.seen() {
        assert_eq!(req.headers["authorization"], "Bearer tok-policy");
        assert!(!req.headers.contains_key("cookie") && !req.headers.contains_key("proxy-authorization"));
    }
    assert_eq!(up.seen()[0].headers["x-trace"], "t1");
    assert!(
        inv.callouts[0]
            .stripped_headers
            .contains(&"authorization".to_string())
    );
}

/// Paths that would leave the base URL are refused before any request.
#[tokio::test]
async fn path_escapes_are_refused_on_both_paths() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile", "http-fetch"], vec![bearer(&up, "")]).await;
    for path in [
        "/../admin",
        "/a/%2e%2e/%2e%2e/admin",
        "//evil.example/x",
        "http://evil.example/x",
    ] {
        let seen = guest_callout(
            &host,
            json!({"credential": "api", "method": "GET", "path": path}),
            &[("api", "crm")],
        )
        .await;
        assert_eq!(seen["err"]["kind"], "denied", "{path}: {seen}");
    }
    let inv = call_crm(
        &host,
        "http-fetch",
        "get",
        json!({"url": "https://api/../../admin"}),
    )
    .await;
    assert!(
        inv.output.is_err() || up.seen().iter().all(|r| r.path.starts_with("/api")),
        "{:?}",
        inv.output
    );
    assert!(
        up.seen().iter().all(|r| r.path.starts_with("/api")),
        "{:?}",
        up.seen()
    );
}

/// An unbound slot and a raw address get typed errors and send nothing.
#[tokio::test]
async fn unbound_slots_and_raw_addresses_are_denied() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile", "http-fetch"], vec![bearer(&up, "")]).await;
    let seen = guest_callout(
        &host,
        json!({"credential": "other", "method": "GET", "path": "/x"}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["err"]["kind"], "unbound-slot", "{seen}");
    let raw = format!("{}/api/x", up.url());
    let inv = call_crm(&host, "http-fetch", "get", json!({"url": raw})).await;
    let err = crate::util::error(&inv);
    assert_eq!(err.code(), "denied", "{err}");
    assert!(
        inv.callouts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("is not a credential slot"),
        "{:?}",
        inv.callouts
    );
    let inv = call_crm(&host, "http-fetch", "get", json!({"url": "https://other/x"})).await;
    assert_eq!(crate::util::error(&inv).code(), "denied");
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

/// API keys in the query string are added by the host and never recorded.
#[tokio::test]
async fn query_api_key_is_injected_and_kept_out_of_records() {
    let up = Upstream::start().await;
    let key = secret_ref("k-123-secret");
    let cred = credential(
        "crm",
        &format!(
            "base_url = \"{}\"\nauth = {{ type = \"api_key\", name = \"api_key\", value = \"{key}\", in = \"query\" }}",
            up.url()
        ),
    );
    let host = TestHost::new(&["hostile"], vec![cred]).await;
    // A route that does not echo the request: what the guest sees is what the
    // host hands it.
    let inv = call_crm(
        &host,
        "hostile",
        "callout",
        json!({"credential": "api", "method": "GET", "path": "/status/200?a=1"}),
    )
    .await;
    let out = output(&inv);
    assert_eq!(out["ok"]["status"], 200, "{out}");
    assert_eq!(up.seen()[0].query.as_deref(), Some("a=1&api_key=k-123-secret"));
    assert!(
        !out.to_string().contains("k-123-secret"),
        "the guest saw the key: {out}"
    );
    assert!(!format!("{:?}", inv.callouts).contains("k-123-secret"));
}

/// Basic auth and secret custom headers are built by the host.
#[tokio::test]
async fn basic_and_header_auth_are_injected() {
    let up = Upstream::start().await;
    let basic = credential(
        "basic",
        &format!(
            "base_url = \"{}\"\nauth = {{ type = \"basic\", username = \"svc\", password = \"{}\" }}",
            up.url(),
            secret_ref("pw")
        ),
    );
    let hdrs = credential(
        "hdrs",
        &format!(
            "base_url = \"{}\"\nheaders = {{ \"x-tenant\" = \"acme\" }}\nauth = {{ type = \"headers\", headers = {{ \"x-api-token\" = \"{}\" }} }}",
            up.url(),
            secret_ref("tkn")
        ),
    );
    let host = TestHost::new(&["hostile"], vec![basic, hdrs]).await;
    let req =
        json!({"credential": "api", "method": "GET", "path": "/", "headers": [["X-Api-Token", "guess"]]});
    guest_callout(&host, req.clone(), &[("api", "basic")]).await;
    guest_callout(&host, req, &[("api", "hdrs")]).await;
    let seen = up.seen();
    assert_eq!(seen[0].headers["authorization"], "Basic c3ZjOnB3");
    assert_eq!(seen[1].headers["x-api-token"], "tkn");
    assert_eq!(seen[1].headers["x-tenant"], "acme");
}

/// A redirect to another origin is handed to the guest, never followed with
/// credentials; one inside the base URL is followed.
#[tokio::test]
async fn redirects_leave_the_origin_only_without_credentials() {
    let up = Upstream::start().await;
    let elsewhere = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![bearer(&up, "")]).await;
    let away = format!("/redirect?to={}/steal", elsewhere.url());
    let seen = guest_callout(
        &host,
        json!({"credential": "api", "method": "GET", "path": away}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["ok"]["status"], 302, "{seen}");
    assert!(elsewhere.seen().is_empty());
    let inside = "/redirect?to=/api/landed".to_string();
    let seen = guest_callout(
        &host,
        json!({"credential": "api", "method": "GET", "path": inside}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["ok"]["status"], 200, "{seen}");
    let last = up.seen().pop().unwrap();
    assert_eq!(
        (last.path.as_str(), last.headers["authorization"].as_str()),
        ("/api/landed", "Bearer tok-policy")
    );
}

/// Slow upstreams hit the credential's timeout; guests cannot extend it.
#[tokio::test]
async fn callout_timeouts_are_clamped_to_the_credential() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![bearer(&up, "timeout_ms = 300")]).await;
    let started = std::time::Instant::now();
    let req = json!({"credential": "api", "method": "GET", "path": "/slow/5000", "timeout_ms": 60000});
    let seen = guest_callout(&host, req, &[("api", "crm")]).await;
    assert_eq!(seen["err"]["kind"], "timeout", "{seen}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

/// Responses over the credential's size limit are refused.
#[tokio::test]
async fn oversized_responses_are_refused() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![bearer(&up, "max_response_bytes = 1000")]).await;
    let seen = guest_callout(
        &host,
        json!({"credential": "api", "method": "GET", "path": "/big/5000"}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["err"]["kind"], "too-large", "{seen}");
    let seen = guest_callout(
        &host,
        json!({"credential": "api", "method": "GET", "path": "/big/900"}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["ok"]["status"], 200, "{seen}");
}

/// The per-invocation callout budget stops request floods.
#[tokio::test]
async fn callout_budget_is_enforced_per_invocation() {
    let up = Upstream::start().await;
    let host = TestHost::with_config(&["hostile"], vec![bearer(&up, "")], |c| {
        c.plugin_limits.insert(
            "hostile".into(),
            plugboard::limits::LimitOverrides {
                max_callouts: Some(3),
                ..Default::default()
            },
        );
    })
    .await;
    let out = callout_loop(&host, 5).await;
    assert_eq!(out["statuses"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(out["errors"], json!(["budget-exhausted", "budget-exhausted"]));
    assert_eq!(up.seen().len(), 3);
    let again = callout_loop(&host, 1).await;
    assert_eq!(
        again["statuses"].as_array().unwrap().len(),
        1,
        "the budget is per invocation"
    );
}

/// A credential restricted to other plugins refuses this one.
#[tokio::test]
async fn credential_refuses_plugins_it_does_not_allow() {
    let up = Upstream::start().await;
    let host = TestHost::new(
        &["hostile"],
        vec![bearer(&up, "allowed_plugins = [\"rest-json\"]")],
    )
    .await;
    let seen = guest_callout(
        &host,
        json!({"credential": "api", "method": "GET", "path": "/"}),
        &[("api", "crm")],
    )
    .await;
    assert_eq!(seen["err"]["kind"], "denied");
    assert!(
        seen["err"]["detail"]
            .as_str()
            .unwrap()
            .contains("does not allow plugin `hostile`"),
        "{seen}"
    );
    assert!(up.seen().is_empty());
}

/// Binding a slot to a credential that does not exist fails before the plugin runs.
#[tokio::test]
async fn binding_to_an_unknown_credential_is_refused() {
    let host = TestHost::new(&["hostile"], vec![]).await;
    let inv = call(&host, "hostile", "callout", json!({}), &[("api", "nope")]).await;
    let e = crate::util::error(&inv);
    assert_eq!(e.code(), "invalid_binding");
    assert!(e.to_string().contains("`nope`"), "{e}");
}

/// Callouts reuse kept-alive connections of the credential's pool, within
/// an invocation and across invocations.
#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![bearer(&up, "")]).await;
    let out = callout_loop(&host, 3).await;
    assert_eq!(out["statuses"].as_array().unwrap().len(), 3, "{out}");
    callout_loop(&host, 1).await;
    let peers: std::collections::BTreeSet<_> = up.seen().iter().map(|s| s.peer).collect();
    assert_eq!(peers.len(), 1, "4 requests over {} connections", peers.len());
}
