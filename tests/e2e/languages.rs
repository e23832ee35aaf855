//! Plugins written in JavaScript (componentize-js) and Python
//! (componentize-py) against the same contract as the Rust ones: the same
//! operation gives the same answer in every language, and the host contains a
//! JavaScript or Python runtime as it contains Rust.

use std::time::{Duration, Instant};

use plugboard::credentials::NamedCredential;
use plugboard::limits::LimitOverrides;
use plugboard::sandbox::Invocation;
use plugboard_tests::{Seen, TestHost, Upstream, credential, secret_ref};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::util::{call, call_crm, error, output, process};

/// The bearer token behind the credential `crm`.
const TOKEN: &str = "tok-languages";
/// The same REST connector in Rust (`callout`), JavaScript (`fetch()`) and
/// Python (`callout`).
const REST: [&str; 3] = ["rest-json", "js-rest", "py-rest"];
/// The hostile fixtures in JavaScript and Python.
const HOSTILE: [&str; 2] = ["js-hostile", "py-hostile"];
/// One mebibyte.
const MIB: usize = 1 << 20;

/// One host at a time loads components: a JavaScript or Python component
/// takes seconds to compile, so the first host compiles it into the shared
/// cache and the others load it from there instead of compiling it again.
static LOADING: Mutex<()> = Mutex::const_new(());

/// A host with `plugins`, each under `limits`.
async fn host(plugins: &[&str], credentials: Vec<NamedCredential>, limits: LimitOverrides) -> TestHost {
    let _one_at_a_time = LOADING.lock().await;
    TestHost::with_config(plugins, credentials, |config| {
        for plugin in plugins {
            config.plugin_limits.insert((*plugin).into(), limits.clone());
        }
    })
    .await
}

/// Limits with this wall time and memory.
fn limits(timeout_ms: u64, memory_mib: u64) -> LimitOverrides {
    LimitOverrides {
        timeout_ms: Some(timeout_ms),
        memory_mib: Some(memory_mib),
        ..Default::default()
    }
}

/// The credential `crm`: `up` under `/api`, with a bearer token.
fn crm(up: &Upstream) -> NamedCredential {
    credential(
        "crm",
        &format!(
            "base_url = \"{}/api\"\nauth = {{ type = \"bearer\", token = \"{}\" }}",
            up.url(),
            secret_ref(TOKEN)
        ),
    )
}

/// What the caller sees: the output document, or `{"error": ...}`, without
/// the upstream's volatile `date` header.
fn outcome(inv: &Invocation) -> Value {
    let mut seen = match &inv.output {
        Ok(text) => serde_json::from_str(text).expect("output is JSON"),
        Err(e) => json!({"error": e.to_json()}),
    };
    if let Some(headers) = seen.get_mut("headers").and_then(Value::as_object_mut) {
        headers.remove("date");
    }
    seen
}

/// The outcome of `op` on `input` in each REST connector, checked to be the
/// same in all three; returns it.
async fn same_in_each_language(host: &TestHost, op: &str, input: Value) -> Value {
    let rust = outcome(&call_crm(host, REST[0], op, input.clone()).await);
    for plugin in &REST[1..] {
        let inv = call_crm(host, plugin, op, input.clone()).await;
        assert_eq!(outcome(&inv), rust, "{plugin} `{op}` on {input}");
        assert!(
            !format!("{:?} {:?}", inv.output, inv.logs).contains(TOKEN),
            "{plugin} saw the token"
        );
    }
    rust
}

/// Checks `plugin` still answers a normal call after a hostile one.
async fn still_serving(host: &TestHost, plugin: &str) {
    let out = output(&call(host, plugin, "echo", json!({"n": 1}), &[]).await);
    assert_eq!(
        out,
        json!({"run_id": "run-test-1", "input": {"n": 1}}),
        "{plugin}"
    );
}

/// rest-json, js-rest and py-rest return the same document for the same
/// call, send the upstream the same request, and never see the token.
#[tokio::test]
async fn same_operation_gives_same_output_in_rust_js_and_python() {
    let up = Upstream::start().await;
    let host = host(&REST, vec![crm(&up)], LimitOverrides::default()).await;
    let get = json!({"path": "/v1/customers/7", "query": {"expand": "orders", "page": 2, "q": "a b/é"},
                     "headers": {"X-Trace": "t-1"}});
    let out = same_in_each_language(&host, "get", get).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"]["path"], "/api/v1/customers/7");
    let post =
        json!({"path": "/v1/orders", "body": {"sku": "A-1", "qty": 2, "note": "née", "lines": [1.5, null]}});
    let out = same_in_each_language(&host, "post", post).await;
    assert_eq!(
        out["body"]["body"],
        r#"{"lines":[1.5,null],"note":"née","qty":2,"sku":"A-1"}"#
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 2 * REST.len());
    for request in &seen {
        assert_eq!(
            request.headers["authorization"],
            format!("Bearer {TOKEN}"),
            "{request:?}"
        );
    }
    for requests in seen.chunks(REST.len()) {
        let described: Vec<Value> = requests.iter().map(request_json).collect();
        assert!(described.iter().all(|r| *r == described[0]), "{described:#?}");
    }
}

/// The parts of a request the connector decides: method, target, body and
/// the headers it sets.
fn request_json(seen: &Seen) -> Value {
    let header = |name: &str| seen.headers.get(name).cloned();
    json!({
        "method": seen.method, "path": seen.path, "query": seen.query,
        "body": String::from_utf8_lossy(&seen.body),
        "accept": header("accept"), "content-type": header("content-type"),
        "idempotency-key": header("idempotency-key"), "x-trace": header("x-trace"),
    })
}

/// Upstream failures and bad input give the same plugin-error (code,
/// message, retryability, details) in every language.
#[tokio::test]
async fn same_failure_gives_same_error_in_rust_js_and_python() {
    let up = Upstream::start().await;
    let host = host(&REST, vec![crm(&up)], LimitOverrides::default()).await;
    let cases = [
        ("get", json!({"path": "/status/503"}), "upstream_status"),
        ("get", json!({"path": "/status/404"}), "upstream_status"),
        (
            "post",
            json!({"path": "/status/429", "body": [1]}),
            "upstream_status",
        ),
        // A redirect leaving the base URL reaches the plugin unfollowed.
        (
            "get",
            json!({"path": "/redirect?to=http://elsewhere.invalid/x"}),
            "upstream_status",
        ),
        ("get", json!({"path": "v1"}), "invalid_input"),
        ("get", json!({"query": {"a": 1}}), "invalid_input"),
        ("get", json!({"path": "/x", "body": {}}), "invalid_input"),
        ("get", json!({"path": "/x", "query": {"a": [1]}}), "invalid_input"),
        ("get", json!({"path": "/x", "extra": 1}), "invalid_input"),
    ];
    for (op, input, code) in cases {
        let out = same_in_each_language(&host, op, input.clone()).await;
        assert_eq!(out["error"]["code"], code, "{input}: {out}");
    }
}

/// py-field-map gives what the Rust field-map gives (output or error) for
/// the same configuration and input.
#[tokio::test]
async fn python_field_map_matches_rust_field_map() {
    let host = host(&["field-map", "py-field-map"], vec![], LimitOverrides::default()).await;
    let input = json!({
        "customer": {"name": " Ada ", "mail": "ADA@X.ORG", "id": "42", "tags": ["a", "b"]},
        "x": null
    });
    let configs = [
        json!({"mappings": [
            {"from": "/customer/name", "to": "/name", "transform": "trim"},
            {"from": "/customer/mail", "to": "/contact/email", "transform": "lowercase"},
            {"from": "/customer/name", "to": "/shout", "transform": "uppercase"},
            {"from": "/missing", "to": "/region", "default": "eu"},
            {"from": "/missing", "to": "/none", "default": null},
            {"from": "/customer/tags/1", "to": "/tags/-"},
            {"from": "/customer/id", "to": "/id", "transform": "to_number"}
        ]}),
        json!({"mappings": [{"from": "/customer/mail", "to": "/mail"}], "keep_unmapped": true}),
        json!({"mappings": [
            {"from": "/customer/id", "to": "/id", "required": true},
            {"from": "/id", "to": "/id", "required": true}
        ]}),
        json!({"mappings": [{"from": "/customer/tags", "to": "/tags", "transform": "trim"}]}),
        json!({"mappings": [{"from": "/customer/name", "to": "/n"}, {"from": "/x", "to": "/n/deeper"}]}),
        json!({"mappings": [{"from": "customer", "to": "/c"}]}),
        json!({"mappings": [{"from": "/a", "to": "/b", "transform": "reverse"}]}),
    ];
    for config in configs {
        let rust = outcome(&process(&host, "field-map", input.clone(), config.clone()).await);
        let python = outcome(&process(&host, "py-field-map", input.clone(), config.clone()).await);
        // Configuration errors word serde's messages differently: compare codes.
        if rust["error"]["code"] == "invalid_config" {
            assert_eq!(python["error"]["code"], "invalid_config", "{config}: {python}");
        } else {
            assert_eq!(python, rust, "{config}");
        }
    }
}

/// JavaScript's fetch() goes through the callout policy: a raw IP address
/// and an unbound slot are refused before anything is sent.
#[tokio::test]
async fn js_fetch_to_a_raw_ip_or_an_unbound_slot_is_refused() {
    let up = Upstream::start().await;
    let host = host(&["js-hostile"], vec![crm(&up)], LimitOverrides::default()).await;
    for url in [format!("http://{}/x", up.addr), "https://other/x".to_string()] {
        let inv = call(
            &host,
            "js-hostile",
            "fetch",
            json!({"url": url}),
            &[("api", "crm")],
        )
        .await;
        let out = output(&inv);
        assert!(out["err"].is_string(), "{url}: {out}");
        assert!(inv.callouts[0].error.is_some(), "{url}: {:?}", inv.callouts);
    }
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    still_serving(&host, "js-hostile").await;
}

/// An `Authorization` header set in fetch() is replaced by the credential's.
#[tokio::test]
async fn js_fetch_authorization_header_is_replaced_by_the_credential() {
    let up = Upstream::start().await;
    let host = host(&["js-hostile"], vec![crm(&up)], LimitOverrides::default()).await;
    let input = json!({"url": "https://api/x", "headers": {"Authorization": "Bearer forged"}});
    let inv = call(&host, "js-hostile", "fetch", input, &[("api", "crm")]).await;
    assert_eq!(output(&inv), json!({"ok": {"status": 200}}));
    assert_eq!(up.seen()[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert!(
        inv.callouts[0]
            .stripped_headers
            .contains(&"authorization".to_string())
    );
}

/// An infinite loop in JavaScript or Python is stopped at the wall-time limit.
#[tokio::test]
async fn js_and_python_infinite_loops_time_out() {
    let host = host(&HOSTILE, vec![], limits(500, 64)).await;
    for plugin in HOSTILE {
        let started = Instant::now();
        let inv = call(&host, plugin, "spin", json!({}), &[]).await;
        assert_eq!(error(&inv).code(), "timeout", "{plugin}: {}", error(&inv));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{plugin} took {:?}",
            started.elapsed()
        );
        still_serving(&host, plugin).await;
    }
}

/// Allocating without bound in JavaScript or Python hits the memory limit.
#[tokio::test]
async fn js_and_python_memory_growth_hits_the_memory_limit() {
    let host = host(&HOSTILE, vec![], limits(10_000, 32)).await;
    for plugin in HOSTILE {
        let inv = call(&host, plugin, "grow", json!({}), &[]).await;
        let e = error(&inv);
        assert_eq!(e.code(), "memory_limit_exceeded", "{plugin}: {e}");
        assert!(e.to_string().contains("32 MiB"), "{plugin}: {e}");
        assert!(
            inv.peak_memory_bytes <= 32 * MIB,
            "{plugin}: {}",
            inv.peak_memory_bytes
        );
        still_serving(&host, plugin).await;
    }
}

/// Both runtimes start and answer a simple call in well under the 32 MiB
/// the memory test allows (and the 64 MiB default).
#[tokio::test]
async fn js_and_python_runtimes_fit_well_within_the_memory_limit() {
    let host = host(&HOSTILE, vec![], limits(10_000, 32)).await;
    for plugin in HOSTILE {
        let inv = call(&host, plugin, "echo", json!({}), &[]).await;
        output(&inv);
        assert!(
            inv.peak_memory_bytes < 16 * MIB,
            "{plugin}: {} bytes",
            inv.peak_memory_bytes
        );
    }
}

/// Python's `open` and `os.listdir` find no file system, and `os.environ`
/// is empty.
#[tokio::test]
async fn python_cannot_read_files_or_the_environment() {
    let host = host(&["py-hostile"], vec![], LimitOverrides::default()).await;
    let out = output(
        &call(
            &host,
            "py-hostile",
            "read-file",
            json!({"path": "/etc/passwd"}),
            &[],
        )
        .await,
    );
    for key in ["file", "root"] {
        assert!(out[key].as_str().unwrap().starts_with("err:"), "{key}: {out}");
    }
    let out = output(&call(&host, "py-hostile", "read-env", json!({}), &[]).await);
    assert_eq!(out, json!({"vars": {}}));
    still_serving(&host, "py-hostile").await;
}

/// JavaScript sees no environment either.
#[tokio::test]
async fn javascript_sees_no_environment() {
    let host = host(&["js-hostile"], vec![], LimitOverrides::default()).await;
    let out = output(&call(&host, "js-hostile", "env", json!({}), &[]).await);
    assert_eq!(out, json!({"env": {}}));
    still_serving(&host, "js-hostile").await;
}

/// A Python callout to a slot the invocation did not bind gets
/// `unbound-slot`, and nothing reaches the upstream.
#[tokio::test]
async fn python_callout_to_an_unbound_slot_is_refused() {
    let up = Upstream::start().await;
    let host = host(&["py-hostile"], vec![crm(&up)], LimitOverrides::default()).await;
    let input = json!({"credential": "other", "method": "GET", "path": "/x"});
    let out = output(&call(&host, "py-hostile", "callout", input, &[("api", "crm")]).await);
    assert_eq!(out["err"]["kind"], "unbound-slot", "{out}");
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    still_serving(&host, "py-hostile").await;
}
