//! Callers cannot see or take each other's work: idempotency keys belong to
//! the token that sent them and to the input they were first sent with,
//! invokers see only the outcome of their own runs, and one integration's
//! synchronous invocations cannot take the whole instance pool.
//!
//! Each test runs a real `plugboard serve` with invoker tokens made by the
//! CLI, and a real upstream on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use plugboard_tests::Upstream;
use serde_json::{Value, json};

use crate::serve::{
    Reply, Server, define_rest_json as define, invoker_token, request as send, rest_json_server as server,
};

/// An invoker token for every integration.
fn invoker(server: &Server, name: &str) -> String {
    invoker_token(server, name, None)
}

fn run_id(reply: &Reply) -> String {
    reply.1["plugboard-run-id"].to_str().unwrap().to_string()
}

fn replayed(reply: &Reply) -> bool {
    reply.1.get("idempotent-replayed").is_some_and(|v| v == "true")
}

/// Sync and async keys: another token sending your key text gets its own
/// run (so it can neither read your reply nor pre-claim your key), the same
/// token gets its first reply back, and the same token reusing a key with
/// another input is refused with 422 and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_belong_to_the_caller_and_its_input() {
    let up = Upstream::start().await;
    let server = server(&up, "").await;
    define(&server, "charge", json!({})).await;
    define(&server, "export", json!({"mode": "async"})).await;
    let (ada, bob) = (invoker(&server, "ada"), invoker(&server, "bob"));
    let input = json!({"path": "/charges", "body": {"amount": 5}});
    let other = json!({"path": "/charges", "body": {"amount": 500}});

    // Sync: Bob claims the key first; Ada's request with it still runs.
    let sync = "/v1/integrations/charge/invoke";
    let key = [("idempotency-key", "charge-7")];
    let bobs = send(&server, "POST", sync, &bob, &key, Some(input.clone())).await;
    assert_eq!(bobs.0, 200, "{:?}", bobs.2);
    let adas = send(&server, "POST", sync, &ada, &key, Some(input.clone())).await;
    assert_eq!(adas.0, 200, "{:?}", adas.2);
    assert!(!replayed(&adas), "Ada got Bob's reply");
    assert_ne!(run_id(&adas), run_id(&bobs));
    assert_eq!(up.seen().len(), 2, "each caller's request ran once");
    // Ada's repeat is hers.
    let again = send(&server, "POST", sync, &ada, &key, Some(input.clone())).await;
    assert!(replayed(&again));
    assert_eq!(run_id(&again), run_id(&adas));
    // Ada's key with another input: refused, nothing runs.
    let changed = send(&server, "POST", sync, &ada, &key, Some(other.clone())).await;
    assert_eq!(
        (changed.0, &changed.2["error"]["code"]),
        (422, &json!("idempotency_key_reused")),
        "{:?}",
        changed.2
    );
    assert_eq!(changed.2["error"]["run_id"], json!(run_id(&adas)));
    assert_eq!(up.seen().len(), 2, "a reused key ran the integration");

    // Async: the same rules.
    let queue = "/v1/integrations/export/invoke";
    let key = [("idempotency-key", "export-1")];
    let bobs = send(&server, "POST", queue, &bob, &key, Some(input.clone())).await;
    let adas = send(&server, "POST", queue, &ada, &key, Some(input.clone())).await;
    assert_eq!((bobs.0, adas.0), (202, 202), "{:?} {:?}", bobs.2, adas.2);
    assert_ne!(bobs.2["run_id"], adas.2["run_id"]);
    assert_eq!(adas.2["replayed"], false);
    let again = send(&server, "POST", queue, &ada, &key, Some(input.clone())).await;
    assert_eq!(
        (&again.2["run_id"], &again.2["replayed"]),
        (&adas.2["run_id"], &json!(true))
    );
    let changed = send(&server, "POST", queue, &ada, &key, Some(other)).await;
    assert_eq!(
        (changed.0, &changed.2["error"]["code"]),
        (422, &json!("idempotency_key_reused")),
        "{:?}",
        changed.2
    );
}

/// One rule for sync and async runs: the invoker that started a run sees
/// its status, output and error, never the steps' logs or callout records;
/// another invoker's run is not found; admins see everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invokers_see_the_outcome_of_their_own_runs_only() {
    let up = Upstream::start().await;
    let server = server(&up, "").await;
    define(&server, "lookup", json!({"save_payloads": true})).await;
    define(&server, "export", json!({"mode": "async"})).await;
    let (ada, bob) = (invoker(&server, "ada"), invoker(&server, "bob"));
    let input = json!({"path": "/orders", "body": {"sku": "a-1"}});

    let sync = send(
        &server,
        "POST",
        "/v1/integrations/lookup/invoke",
        &ada,
        &[],
        Some(input.clone()),
    )
    .await;
    assert_eq!(sync.0, 200, "{:?}", sync.2);
    let queued = send(
        &server,
        "POST",
        "/v1/integrations/export/invoke",
        &ada,
        &[],
        Some(input),
    )
    .await;
    assert_eq!(queued.0, 202, "{:?}", queued.2);
    let async_id = queued.2["run_id"].as_str().unwrap().to_string();
    // Let the async run finish, so it has attempts with steps to hide.
    let wait = format!("/v1/runs/{async_id}?wait=10s");
    let (s, full) = server.admin("GET", &wait, None).await;
    assert_eq!((s, &full["status"]), (200, &json!("succeeded")), "{full}");
    assert!(
        full["attempts"][0]["steps"].is_array(),
        "admins see the steps: {full}"
    );

    for (id, mode) in [(run_id(&sync), "sync"), (async_id.clone(), "async")] {
        let path = format!("/v1/runs/{id}");
        let (s, _, mine) = send(&server, "GET", &path, &ada, &[], None).await;
        assert_eq!(s, 200, "{mine}");
        assert_eq!(
            (&mine["status"], &mine["mode"]),
            (&json!("succeeded"), &json!(mode)),
            "{mine}"
        );
        assert!(mine["output"].is_object(), "the invoker sees its output: {mine}");
        let text = mine.to_string();
        for hidden in ["steps", "attempts", "callouts", "logs", "request", "response"] {
            assert!(mine.get(hidden).is_none(), "an invoker sees `{hidden}`: {mine}");
            let field = format!("\"{hidden}\":");
            assert!(!text.contains(&field), "an invoker sees `{hidden}`: {mine}");
        }
        let (s, _, theirs) = send(&server, "GET", &path, &bob, &[], None).await;
        assert_eq!(s, 404, "another invoker reads the run: {theirs}");
        let (s, full) = server.admin("GET", &path, None).await;
        assert_eq!(s, 200);
        assert!(full.to_string().contains("steps"), "admins see the steps: {full}");
    }
    // Cancelling follows the same rule.
    let cancel = format!("/v1/runs/{async_id}/cancel");
    assert_eq!(send(&server, "POST", &cancel, &bob, &[], None).await.0, 404);
    let (s, _, v) = send(&server, "POST", &cancel, &ada, &[], None).await;
    assert_eq!(s, 409, "a finished run cannot be cancelled: {v}");
}

/// A slow integration holds at most its `sync.concurrency` (by default a
/// quarter of `[sandbox] max_instances`) invocations; more are answered 503
/// `integration_busy` with `Retry-After` at once, and other integrations
/// keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_integration_cannot_take_the_whole_pool() {
    let up = Upstream::start().await;
    let server = Arc::new(server(&up, "[sandbox]\nmax_instances = 8").await);
    define(&server, "slow", json!({})).await;
    define(&server, "bounded", json!({"sync": {"concurrency": 3}})).await;
    define(&server, "fast", json!({})).await;
    let token = server.admin.clone();

    for (name, bound) in [("slow", 2), ("bounded", 3)] {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (server, token) = (server.clone(), token.clone());
            let path = format!("/v1/integrations/{name}/invoke");
            tasks.spawn(async move {
                let input = json!({"path": "/slow/1500", "body": {}});
                send(&server, "POST", &path, &token, &[], Some(input)).await
            });
        }
        // While they run, another integration answers at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let input = json!({"path": "/orders", "body": {}});
        let other = send(
            &server,
            "POST",
            "/v1/integrations/fast/invoke",
            &token,
            &[],
            Some(input),
        )
        .await;
        assert_eq!(other.0, 200, "{:?}", other.2);
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );

        let replies = tasks.join_all().await;
        let ok = replies.iter().filter(|r| r.0 == 200).count();
        let busy: Vec<&Reply> = replies.iter().filter(|r| r.0 == 503).collect();
        assert_eq!(
            (ok, busy.len()),
            (bound, 6 - bound),
            "{name}: {:?}",
            replies.iter().map(|r| (r.0, &r.2)).collect::<Vec<_>>()
        );
        for r in busy {
            assert_eq!(r.2["error"]["code"], "integration_busy", "{:?}", r.2);
            assert!(
                r.2["error"]["message"].as_str().unwrap().contains(name),
                "{:?}",
                r.2
            );
            assert_eq!(r.1["retry-after"], "1");
        }
    }
    // Once they are done, the integration takes invocations again.
    let input = json!({"path": "/orders", "body": {}});
    let again = send(
        &server,
        "POST",
        "/v1/integrations/slow/invoke",
        &token,
        &[],
        Some(input),
    )
    .await;
    assert_eq!(again.0, 200, "{:?}", again.2);

    // Out-of-range bounds are refused when saved, naming the field.
    let (s, v) = server
        .admin(
            "POST",
            "/v1/integrations",
            Some(json!({
                "name": "zero",
                "connector": {"plugin": "rest-json", "operation": "post"},
                "bindings": {"api": "crm"},
                "sync": {"concurrency": 0},
            })),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("sync.concurrency"), "{v}");
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// No token needed.
    Public,
    /// Any valid token.
    AnyToken,
    /// A token granted the integration in the path.
    Invoke,
    /// Admins, and the token that started the run (others get 404).
    RunOwner,
    /// Admin tokens only.
    Admin,
}

/// Every route of the API and who may call it. A route missing here fails
/// the walk, so a new handler is classified when it is added.
const ROUTES: &[(&str, &str, Access)] = &[
    ("get", "/healthz", Access::Public),
    ("get", "/readyz", Access::Public),
    ("get", "/v1/oauth/callback", Access::Public),
    ("get", "/v1/openapi.json", Access::AnyToken),
    ("post", "/v1/integrations/{name}/invoke", Access::Invoke),
    ("get", "/v1/runs/{id}", Access::RunOwner),
    ("post", "/v1/runs/{id}/cancel", Access::RunOwner),
    ("post", "/v1/runs/{id}/retry", Access::Admin),
    ("post", "/v1/runs/{id}/resolve", Access::Admin),
    ("get", "/v1/runs", Access::Admin),
    ("get", "/v1/integrations", Access::Admin),
    ("post", "/v1/integrations", Access::Admin),
    ("get", "/v1/integrations/{name}", Access::Admin),
    ("put", "/v1/integrations/{name}", Access::Admin),
    ("delete", "/v1/integrations/{name}", Access::Admin),
    ("post", "/v1/integrations/{name}/activate", Access::Admin),
    ("post", "/v1/integrations/{name}/deactivate", Access::Admin),
    ("get", "/v1/integrations/{name}/dead-letters", Access::Admin),
    (
        "post",
        "/v1/integrations/{name}/dead-letters/retry",
        Access::Admin,
    ),
    (
        "post",
        "/v1/integrations/{name}/dead-letters/resolve",
        Access::Admin,
    ),
    ("get", "/v1/integrations/{name}/queue", Access::Admin),
    ("get", "/v1/plugins", Access::Admin),
    ("get", "/v1/plugins/{name}", Access::Admin),
    ("get", "/v1/credentials", Access::Admin),
    ("get", "/v1/credentials/{name}", Access::Admin),
    ("put", "/v1/credentials/{name}", Access::Admin),
    ("delete", "/v1/credentials/{name}", Access::Admin),
    ("post", "/v1/credentials/{name}/test", Access::Admin),
    ("post", "/v1/credentials/{name}/connect", Access::Admin),
    ("post", "/v1/credentials/{name}/reconnect", Access::Admin),
];

/// Walks every route of `/v1/openapi.json` with no token, an invoker token
/// for the path's integration, an invoker token for another integration and
/// an admin token, and checks each answer against [`ROUTES`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_kind_of_token_as_its_table_says() {
    let up = Upstream::start().await;
    let server = server(&up, "").await;
    define(&server, "one", json!({})).await;
    define(&server, "two", json!({})).await;
    let (granted, other) = (
        invoker_token(&server, "for-one", Some("one")),
        invoker_token(&server, "for-two", Some("two")),
    );
    let admin = server.admin.clone();
    let input = json!({"path": "/orders", "body": {}});
    let run = send(
        &server,
        "POST",
        "/v1/integrations/one/invoke",
        &admin,
        &[],
        Some(input),
    )
    .await;
    assert_eq!(run.0, 200, "{:?}", run.2);
    let run = run_id(&run);

    let (s, doc) = server.admin("GET", "/v1/openapi.json", None).await;
    assert_eq!(s, 200);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    let mut listed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    listed.sort();
    assert_eq!(
        documented, listed,
        "every documented route needs a row in ROUTES, and only those"
    );

    // Admins last: their calls may change things (delete, deactivate).
    let who: [(&str, Option<&str>); 4] = [
        ("no token", None),
        ("invoker of the path's integration", Some(&granted)),
        ("invoker of another integration", Some(&other)),
        ("admin", Some(&admin)),
    ];
    let mut wrong = Vec::new();
    for (label, token) in who {
        for (method, template, access) in ROUTES {
            let name = match template {
                p if p.starts_with("/v1/credentials") => "crm",
                p if p.starts_with("/v1/plugins") => "rest-json",
                _ => "one",
            };
            let path = template.replace("{name}", name).replace("{id}", &run);
            let body = matches!(*method, "post" | "put").then(|| json!({}));
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
            let mut req = http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(format!("{}{path}", server.url));
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let text = body.map(|b| b.to_string()).unwrap_or_default();
            let status = client
                .request(req.body(Full::new(Bytes::from(text))).unwrap())
                .await
                .unwrap()
                .status()
                .as_u16();
            let refused = status == 401 || status == 403;
            let ok = match (access, label) {
                (Access::Public, _) => !refused,
                (_, "no token") => status == 401,
                (Access::AnyToken, _) => !refused,
                (Access::Invoke, "invoker of another integration") => status == 403,
                (Access::Invoke, _) => !refused,
                (Access::RunOwner, "admin") => !refused,
                // Neither invoker started the run: it is not found for them.
                (Access::RunOwner, _) => status == 404,
                (Access::Admin, "admin") => !refused,
                (Access::Admin, _) => status == 403,
            };
            if !ok {
                wrong.push(format!("{method} {path} with {label}: {status} ({access:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "answers that break the table:\n{}",
        wrong.join("\n")
    );
}

/// What the host keeps in memory follows changes made by another process on
/// the same store within a second: a token revoked with `plugboard tokens
/// revoke` is refused, and an integration switched off with `plugboard
/// integrations deactivate` stops taking invocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_by_another_process_take_effect_within_a_second() {
    let up = Upstream::start().await;
    let server = server(&up, "").await;
    define(&server, "lookup", json!({})).await;
    let token = invoker(&server, "short-lived");
    let path = "/v1/integrations/lookup/invoke";
    let input = json!({"path": "/orders", "body": {}});
    // Warm what the host remembers.
    for _ in 0..3 {
        let reply = send(&server, "POST", path, &token, &[], Some(input.clone())).await;
        assert_eq!(reply.0, 200, "{:?}", reply.2);
    }

    async fn refused_within(server: &Server, token: &str, input: &Value, status: u16) -> Duration {
        let since = Instant::now();
        loop {
            let reply = send(
                server,
                "POST",
                "/v1/integrations/lookup/invoke",
                token,
                &[],
                Some(input.clone()),
            )
            .await;
            if reply.0 == status {
                return since.elapsed();
            }
            assert_eq!(reply.0, 200, "{:?}", reply.2);
            assert!(since.elapsed() < Duration::from_secs(3), "still not {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let admin = server.admin.clone();
    let out = server.cli(&["integrations", "deactivate", "lookup"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = refused_within(&server, &admin, &input, 409).await;
    assert!(took <= Duration::from_secs(1), "deactivation took {took:?}");
    let out = server.cli(&["integrations", "activate", "lookup"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let out = server.cli(&["tokens", "revoke", "short-lived"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = refused_within(&server, &token, &input, 401).await;
    assert!(took <= Duration::from_secs(1), "revocation took {took:?}");
}
