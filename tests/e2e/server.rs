//! `plugboard serve` as a real process on a loopback port: definitions,
//! activation, invocation, runs, tokens, errors and restarts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use plugboard_tests::Upstream;
use serde_json::{Value, json};

use crate::serve::Server;

fn definition(name: &str) -> Value {
    json!({
        "name": name,
        "connector": {"plugin": "rest-json", "operation": "post"},
        "input_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/name", "to": "/body/name", "required": true},
            {"from": "/nothing", "to": "/path", "default": "/v1/customers"}]}},
        "output_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/status", "to": "/upstream_status"}, {"from": "/body/path", "to": "/path"}]}},
        "bindings": {"api": "crm"},
        "save_payloads": true
    })
}

async fn active(server: &Server, name: &str) {
    assert_eq!(
        server
            .admin("POST", "/v1/integrations", Some(definition(name)))
            .await
            .0,
        201
    );
    let (s, v) = server
        .admin("POST", &format!("/v1/integrations/{name}/activate"), None)
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Define, activate, invoke and read the run back with its steps and callouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn define_activate_invoke_and_read_the_run_back() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    active(&server, "create-customer").await;
    let (status, run, out) = server
        .call(
            "POST",
            "/v1/integrations/create-customer/invoke",
            Some(&server.admin),
            Some(r#"{"name": "Ada"}"#),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out, json!({"upstream_status": 200, "path": "/v1/customers"}));
    assert_eq!(up.seen()[0].headers["authorization"], "Bearer srv-token-1");
    let run = run.expect("run id header");
    let (s, record) = server.admin("GET", &format!("/v1/runs/{run}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["version"], 1);
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["input_processor", "connector", "output_processor"]);
    assert_eq!(record["steps"][1]["callouts"][0]["status"], 200);
    assert_eq!(record["request"], r#"{"name": "Ada"}"#);
    assert!(
        !record.to_string().contains("srv-token-1"),
        "the secret leaked into the run"
    );
    let (_, list) = server
        .admin("GET", "/v1/runs?integration=create-customer", None)
        .await;
    assert_eq!(list["runs"][0]["id"], run.as_str());
}

/// Every error status comes from a real cause, with a structured body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_name_their_cause() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    active(&server, "cc").await;
    let t = Some(server.admin.as_str());
    let invoke = "/v1/integrations/cc/invoke";
    let cases: Vec<(&str, Option<&str>, u16, &str)> = vec![
        (invoke, Some("{not json"), 400, "invalid_json"),
        ("/v1/integrations/nope/invoke", Some("{}"), 404, "not_found"),
        (invoke, Some("{}"), 422, "missing_field"),
        (
            invoke,
            Some(r#"{"name": "x", "nothing": "/status/503"}"#),
            502,
            "upstream_status",
        ),
    ];
    for (path, body, want, code) in cases {
        let (s, _, v) = server.call("POST", path, t, body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap_or("")),
            (want, code),
            "{path} {body:?}: {v}"
        );
    }
    let (s, run, v) = server.call("POST", invoke, t, Some("{}")).await;
    assert_eq!(v["error"]["step"], "input_processor");
    assert_eq!(s, 422);
    assert!(run.is_some(), "failed runs carry their id");
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}{invoke}", server.url))
        .header("authorization", format!("Bearer {}", server.admin))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 415);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(9 << 20));
    assert_eq!(server.call("POST", invoke, t, Some(&big)).await.0, 413);
    assert_eq!(
        server
            .admin("POST", "/v1/integrations/cc/deactivate", None)
            .await
            .0,
        200
    );
    assert_eq!(server.call("POST", invoke, t, Some("{}")).await.0, 409);
    assert_eq!(server.call("POST", invoke, None, Some("{}")).await.0, 401);
    assert_eq!(
        server.call("POST", invoke, Some("pb_wrong"), Some("{}")).await.0,
        401
    );
}

/// A step that runs out of time answers 504 with the step named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_is_a_gateway_timeout() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    let mut def = definition("slow");
    def["limits"] = json!({"timeout_ms": 500});
    assert_eq!(server.admin("POST", "/v1/integrations", Some(def)).await.0, 201);
    assert_eq!(
        server
            .admin("POST", "/v1/integrations/slow/activate", None)
            .await
            .0,
        200
    );
    let body = Some(r#"{"name": "x", "nothing": "/slow/3000"}"#);
    let (s, _, v) = server
        .call("POST", "/v1/integrations/slow/invoke", Some(&server.admin), body)
        .await;
    assert_eq!((s, v["error"]["step"].as_str()), (504, Some("connector")), "{v}");
}

/// Activation refuses with every problem listed and stores nothing half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_lists_every_problem() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    let bad = json!({"name": "bad", "connector": {"plugin": "rest-json", "operation": "fly"},
        "input_processor": {"plugin": "missing"}, "bindings": {"nope": "ghost"}});
    assert_eq!(server.admin("POST", "/v1/integrations", Some(bad)).await.0, 201);
    let (s, v) = server.admin("POST", "/v1/integrations/bad/activate", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("activation_refused")),
        "{v}"
    );
    let problems = v["error"]["problems"].to_string();
    for p in [
        "`missing` is not loaded",
        "no operation `fly`",
        "`api` of connector `rest-json` is not bound",
        "no credential slot `nope`",
        "`ghost`, which does not exist",
    ] {
        assert!(problems.contains(p), "{p} missing from {problems}");
    }
    assert_eq!(
        server.admin("GET", "/v1/integrations/bad", None).await.1["status"],
        "draft"
    );
    let unknown = json!({"name": "u", "connector": {"plugin": "rest-json", "operation": "get"}, "colour": 1});
    let (s, v) = server.admin("POST", "/v1/integrations", Some(unknown)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{v}"
    );
    let path = json!({"name": "../x", "connector": {"plugin": "rest-json", "operation": "get"}});
    assert_eq!(server.admin("POST", "/v1/integrations", Some(path)).await.0, 422);
    assert_eq!(
        server.admin("GET", "/v1/integrations", None).await.1["integrations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Invoker tokens invoke only what they are allowed; admin routes need admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoker_tokens_are_limited() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    active(&server, "one").await;
    active(&server, "two").await;
    let token = crate::serve::invoker_token(&server, "ci", Some("one"));
    let body = Some(r#"{"name": "Ada"}"#);
    assert_eq!(
        server
            .call("POST", "/v1/integrations/one/invoke", Some(&token), body)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call("POST", "/v1/integrations/two/invoke", Some(&token), body)
            .await
            .0,
        403
    );
    assert_eq!(
        server.call("GET", "/v1/integrations", Some(&token), None).await.0,
        403
    );
    assert_eq!(server.call("GET", "/v1/runs", Some(&token), None).await.0, 403);
}

/// A restart keeps integrations, tokens and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_integrations_tokens_and_runs() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    active(&server, "keep").await;
    let (_, run, _) = server
        .call(
            "POST",
            "/v1/integrations/keep/invoke",
            Some(&server.admin),
            Some(r#"{"name": "A"}"#),
        )
        .await;
    let (dir, admin) = server.stop();
    let server = Server::spawn(dir, Some(admin)).await;
    assert_eq!(
        server.admin("GET", "/v1/integrations/keep", None).await.1["status"],
        "active"
    );
    let (s, v) = server
        .admin("GET", &format!("/v1/runs/{}", run.unwrap()), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("succeeded")));
}

/// Editing an active integration makes a new version; runs say which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_make_versions_and_runs_record_them() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    active(&server, "ver").await;
    let mut def = definition("ver");
    def["save_payloads"] = json!(false);
    let (s, v) = server
        .admin("PUT", "/v1/integrations/ver", Some(def.clone()))
        .await;
    assert_eq!(
        (s, v["version"].as_u64(), v["changed"].as_bool()),
        (200, Some(2), Some(true)),
        "{v}"
    );
    assert_eq!(
        server.admin("PUT", "/v1/integrations/ver", Some(def)).await.1["changed"],
        false
    );
    let (_, run, _) = server
        .call(
            "POST",
            "/v1/integrations/ver/invoke",
            Some(&server.admin),
            Some(r#"{"name": "A"}"#),
        )
        .await;
    let (_, record) = server
        .admin("GET", &format!("/v1/runs/{}", run.unwrap()), None)
        .await;
    assert_eq!(
        (record["version"].as_u64(), &record["request"]),
        (Some(2), &Value::Null)
    );
    let (_, v) = server.admin("GET", "/v1/integrations/ver", None).await;
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);
}

/// Removing a plugin an active integration uses degrades it with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_plugin_degrades_the_integration() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    active(&server, "deg").await;
    std::fs::remove_file(server.dir.path().join("plugins.d/rest-json.wasm")).unwrap();
    let mut degraded = Value::Null;
    for _ in 0..100 {
        degraded = server.admin("GET", "/v1/integrations/deg", None).await.1;
        if degraded["degraded"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(degraded["degraded"], true, "{degraded}");
    let (s, _, v) = server
        .call(
            "POST",
            "/v1/integrations/deg/invoke",
            Some(&server.admin),
            Some("{}"),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("integration_degraded")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`rest-json` is not loaded")
    );
}

/// `plugboard apply` creates, then finds nothing to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    let file = r#"
[[integration]]
name = "applied"
status = "active"
connector = { plugin = "rest-json", operation = "get" }
bindings = { api = "crm" }
"#;
    std::fs::write(server.dir.path().join("integrations.toml"), file).unwrap();
    let apply = |dir: &Path| {
        let out = Command::new(plugboard_tests::plugboard_binary())
            .args(["--config", "plugboard.toml", "apply", "-f", "integrations.toml"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(
        apply(server.dir.path()).trim(),
        "applied: created (version 1), activated (was draft)"
    );
    assert_eq!(apply(server.dir.path()).trim(), "applied: unchanged");
    let body = Some(r#"{"path": "/ping"}"#);
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/integrations/applied/invoke",
                Some(&server.admin),
                body
            )
            .await
            .0,
        200
    );
}

/// The OpenAPI document lists every route the server answers, and every
/// route it lists exists (none falls through to "no such endpoint").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    let (s, doc) = server.admin("GET", "/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|m| *m != "parameters") {
            operations.push((
                method.to_uppercase(),
                path.replace("{name}", "x").replace("{id}", "x"),
            ));
        }
    }
    assert_eq!(operations.len(), 30, "{operations:?}");
    for (method, path) in &operations {
        let body = (method == "POST" || method == "PUT").then_some("{}");
        let (status, _, v) = server.call(method, path, Some(&server.admin), body).await;
        assert_ne!(status, 405, "{method} {path}");
        assert_ne!(
            v["error"]["message"], "no such endpoint",
            "{method} {path} is documented but not served"
        );
    }
    let (_, _, v) = server.call("GET", "/v1/nowhere", Some(&server.admin), None).await;
    assert_eq!(v["error"]["message"], "no such endpoint");
    for documented in [
        "/v1/integrations/{name}/invoke",
        "/v1/runs/{id}",
        "/v1/credentials/{name}",
        "/v1/oauth/callback",
        "/v1/runs/{id}/cancel",
        "/v1/integrations/{name}/dead-letters",
        "/healthz",
        "/v1/openapi.json",
    ] {
        assert!(doc["paths"].get(documented).is_some(), "{documented} missing");
    }
}

/// A processor that checks its configuration makes activation refuse a
/// typo in it, naming the step and the offending key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_refuses_a_configuration_the_processor_rejects() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    let mut typo = definition("typo");
    typo["input_processor"]["config"] = json!({"mapings": []});
    assert_eq!(server.admin("POST", "/v1/integrations", Some(typo)).await.0, 201);
    let (s, v) = server.admin("POST", "/v1/integrations/typo/activate", None).await;
    assert_eq!(s, 409, "{v}");
    let problems = v["error"]["problems"].to_string();
    assert!(
        problems.contains("input processor `field-map` refuses its config"),
        "{problems}"
    );
    assert!(
        problems.contains("mapings"),
        "names the offending key: {problems}"
    );
    assert_eq!(
        server.admin("GET", "/v1/integrations/typo", None).await.1["status"],
        "draft"
    );
    let (_, plugin) = server.admin("GET", "/v1/plugins/field-map", None).await;
    assert_eq!(plugin["plugin"]["checks_config"], true);
}

/// SIGTERM lets a request in flight finish and stores its run before exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let up = Upstream::start().await;
    let server = std::sync::Arc::new(Server::start(&up).await);
    active(&server, "inflight").await;
    let s = server.clone();
    let call = tokio::spawn(async move {
        let body = Some(r#"{"name": "x", "nothing": "/slow/1500"}"#);
        s.call("POST", "/v1/integrations/inflight/invoke", Some(&s.admin), body)
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let (status, run, out) = call.await.unwrap();
    assert_eq!(status, 200, "{out}");
    let server = std::sync::Arc::into_inner(server).expect("the call task is done");
    let (dir, admin) = server.stop();
    let server = Server::spawn(dir, Some(admin)).await;
    let (s, v) = server
        .admin("GET", &format!("/v1/runs/{}", run.unwrap()), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("succeeded")), "{v}");
}
