//! The example plugins, through the sandbox, against a loopback upstream.

use plugboard_tests::{TestHost, Upstream, credential, secret_ref};
use serde_json::json;

use crate::util::{call_crm, error, output, process};

async fn rest_host(up: &Upstream) -> TestHost {
    let cred = credential(
        "crm",
        &format!(
            "base_url = \"{}/api\"\nauth = {{ type = \"bearer\", token = \"{}\" }}",
            up.url(),
            secret_ref("tok-examples-1")
        ),
    );
    TestHost::new(&["rest-json", "http-fetch", "field-map", "validate"], vec![cred]).await
}

/// rest-json reaches the upstream under the credential's base URL with the
/// host's bearer token, and returns the parsed response.
#[tokio::test]
async fn rest_json_get_returns_upstream_json_with_auth_added_by_the_host() {
    let up = Upstream::start().await;
    let host = rest_host(&up).await;
    let inv = call_crm(
        &host,
        "rest-json",
        "get",
        json!({"path": "/v1/customers/7", "query": {"expand": "orders"}}),
    )
    .await;
    let out = output(&inv);
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"]["path"], "/api/v1/customers/7");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["authorization"], "Bearer tok-examples-1");
    assert_eq!(seen[0].query.as_deref(), Some("expand=orders"));
    assert!(!inv.output.as_ref().unwrap().contains("tok-examples-1"));
    assert_eq!(inv.callouts.len(), 1);
    assert_eq!(inv.callouts[0].status, Some(200));
    assert!(!format!("{:?}", inv.callouts).contains("tok-examples-1"));
}

/// A POST carries the body and the run id as idempotency key upstream.
#[tokio::test]
async fn rest_json_post_sends_body_and_idempotency_key() {
    let up = Upstream::start().await;
    let host = rest_host(&up).await;
    let inv = call_crm(
        &host,
        "rest-json",
        "post",
        json!({"path": "/v1/orders", "body": {"sku": "A-1", "qty": 2}}),
    )
    .await;
    assert_eq!(output(&inv)["status"], 200);
    let seen = &up.seen()[0];
    assert_eq!(seen.method, "POST");
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body, json!({"sku": "A-1", "qty": 2}));
    assert_eq!(seen.headers["idempotency-key"], "run-test-1");
}

/// Upstream errors become plugin errors with the right retryability.
#[tokio::test]
async fn upstream_5xx_is_a_retryable_plugin_error_and_404_is_not() {
    let up = Upstream::start().await;
    let host = rest_host(&up).await;
    let inv = call_crm(&host, "rest-json", "get", json!({"path": "/status/503"})).await;
    let e = error(&inv);
    assert_eq!(e.code(), "upstream_status");
    assert!(e.retryable());
    let inv = call_crm(&host, "rest-json", "get", json!({"path": "/status/404"})).await;
    assert!(!error(&inv).retryable());
    assert!(error(&inv).to_string().contains("404"), "{}", error(&inv));
}

/// http-fetch uses its own wasi:http client; the same policy adds the auth.
#[tokio::test]
async fn http_fetch_reaches_the_upstream_through_the_same_policy() {
    let up = Upstream::start().await;
    let host = rest_host(&up).await;
    let inv = call_crm(&host, "http-fetch", "get", json!({"path": "/v1/ping"})).await;
    let out = output(&inv);
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"]["path"], "/api/v1/ping");
    assert_eq!(up.seen()[0].headers["authorization"], "Bearer tok-examples-1");
    assert_eq!(inv.callouts[0].slot, "api");
}

/// field-map builds the output document from JSON pointers and config.
#[tokio::test]
async fn field_map_maps_fields_with_defaults_and_transforms() {
    let host = TestHost::new(&["field-map"], vec![]).await;
    let config = json!({"mappings": [
        {"from": "/customer/name", "to": "/name", "transform": "trim"},
        {"from": "/customer/mail", "to": "/contact/email", "transform": "lowercase"},
        {"from": "/missing", "to": "/region", "default": "eu"}
    ]});
    let inv = process(
        &host,
        "field-map",
        json!({"customer": {"name": " Ada ", "mail": "ADA@X.ORG"}}),
        config,
    )
    .await;
    assert_eq!(
        output(&inv),
        json!({"name": "Ada", "contact": {"email": "ada@x.org"}, "region": "eu"})
    );
}

/// A required field that is missing is a clear, non-retryable error.
#[tokio::test]
async fn field_map_reports_a_missing_required_field() {
    let host = TestHost::new(&["field-map"], vec![]).await;
    let config = json!({"mappings": [{"from": "/id", "to": "/id", "required": true}]});
    let inv = process(&host, "field-map", json!({}), config).await;
    let e = error(&inv);
    assert_eq!(e.code(), "missing_field");
    assert!(e.to_string().contains("/id"), "{e}");
}

/// The validate processor passes valid input and lists every violation.
#[tokio::test]
async fn validate_passes_good_input_and_lists_violations() {
    let host = TestHost::new(&["validate"], vec![]).await;
    let schema = json!({"schema": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}});
    let good = json!({"id": 7, "email": "a@b.c"});
    assert_eq!(
        output(&process(&host, "validate", good.clone(), schema.clone()).await),
        good
    );
    let inv = process(&host, "validate", json!({"id": "seven", "email": 3}), schema).await;
    let e = error(&inv);
    assert_eq!(e.code(), "invalid_input");
    assert_eq!(
        e.to_json()["details"].as_array().map(Vec::len),
        Some(2),
        "{}",
        e.to_json()
    );
}

/// A required slot left unbound is refused before the plugin runs.
#[tokio::test]
async fn unbound_required_slot_is_refused_before_the_call() {
    let up = Upstream::start().await;
    let host = rest_host(&up).await;
    let inv = crate::util::call(&host, "rest-json", "get", json!({"path": "/x"}), &[]).await;
    let e = error(&inv);
    assert_eq!(e.code(), "invalid_binding");
    assert!(e.to_string().contains("slot `api`"), "{e}");
    assert!(up.seen().is_empty() && inv.logs.is_empty());
}

/// Plugins that export `config-check` judge a configuration before any run;
/// plugins that do not accept any.
#[tokio::test]
async fn config_check_runs_only_for_plugins_that_offer_it() {
    let host = TestHost::new(&["validate", "field-map", "rest-json"], vec![]).await;
    let bad_schema = check_config(&host, "validate", json!({"schema": {"type": 12}})).await;
    assert_eq!(
        error(&bad_schema).code(),
        "invalid_config",
        "{:?}",
        bad_schema.output
    );
    let missing = check_config(&host, "validate", json!({})).await;
    assert!(missing.output.is_err(), "a missing schema is refused");
    let good = check_config(&host, "validate", json!({"schema": {"type": "object"}})).await;
    assert!(good.output.is_ok());
    let mapping = json!({"mappings": [{"from": "/a", "to": "/b"}]});
    assert!(check_config(&host, "field-map", mapping).await.output.is_ok());
    assert!(!host.plugin("rest-json").checks_config);
    assert!(
        check_config(&host, "rest-json", json!({"anything": 1}))
            .await
            .output
            .is_ok()
    );
}

async fn check_config(
    host: &TestHost,
    plugin: &str,
    config: serde_json::Value,
) -> plugboard::sandbox::Invocation {
    let plugin = host.plugin(plugin);
    let serde_json::Value::Object(config) = config else {
        panic!("config must be an object")
    };
    host.registry
        .sandbox()
        .check_config(&plugin, std::sync::Arc::new(config))
        .await
}
