//! Async runs: the durable queue, its retry schedules, dead letters, holds,
//! idempotency, cancellation, result callbacks, backpressure and long polls.
//!
//! Most tests drive the engine of a host opened in-process by [`Host`] on a
//! file-backed store, given a [`ManualClock`] through
//! [`Host::with_engine_settings`], so hour-long retry schedules are checked
//! by moving the clock instead of sleeping. What only the HTTP layer does (sync
//! idempotency replies, signed callbacks, 429 on a full queue, long polls)
//! runs against a real `plugboard serve`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use plugboard::host::Host;
use plugboard::integrations::{Caller, Integrations};
use plugboard::plugins::Registry;
use plugboard::queue::engine::{AsyncRuns, EngineSettings, ManualClock};
use plugboard::store::{AsyncRunFilter, QueuedRun};
use plugboard_tests::{Upstream, credential, secret_ref, test_config};
use serde_json::{Value, json};

use crate::serve::Server;

/// How long a test waits for something that normally takes milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// How often the in-process dispatcher looks for due runs.
const POLL: Duration = Duration::from_millis(20);

/// An async-run engine in-process: a host opened through [`Host`] on a temp
/// data folder, with a plugin folder of its own, a credential `crm` pointing
/// at `up`, and an engine clock that moves only when told.
struct Engine {
    up: Upstream,
    integrations: Arc<Integrations>,
    runs: Arc<AsyncRuns>,
    registry: Arc<Registry>,
    clock: Arc<ManualClock>,
    caller: Caller,
    plugins: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Engine {
    /// An engine that does not execute anything until [`Engine::start`].
    async fn new() -> Engine {
        Engine::with_plugins(&["rest-json", "field-map"]).await
    }

    /// Like [`Engine::new`], with these plugins installed.
    async fn with_plugins(plugins: &[&str]) -> Engine {
        let up = Upstream::start().await;
        let toml = format!(
            "base_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}",
            up.url(),
            secret_ref("queue-token")
        );
        let (plugin_dir, mut config) = test_config(plugins, vec![credential("crm", &toml)]);
        let data = tempfile::tempdir().unwrap();
        config.data_dir = data.path().to_path_buf();
        let host = Host::open(config).unwrap();
        let clock = Arc::new(ManualClock::new());
        let settings = EngineSettings {
            poll: POLL,
            clock: clock.clone(),
            ..host.engine_settings().clone()
        };
        let host = host.with_engine_settings(settings);
        host.load_plugins().await;
        Engine {
            up,
            integrations: host.integrations().clone(),
            runs: host.queue().clone(),
            registry: host.registry().clone(),
            clock,
            caller: Caller {
                token_id: None,
                admin: true,
            },
            plugins: plugin_dir,
            _data: data,
        }
    }

    /// An engine already executing runs.
    async fn started() -> Engine {
        let engine = Engine::new().await;
        engine.start();
        engine
    }

    /// Starts the engine alone: no listener and no plugin watcher, so a
    /// test rescans the plugin folder itself when it changes it.
    fn start(&self) {
        // The tasks end with the test's runtime.
        drop(self.runs.start());
    }

    /// Creates and activates an async integration whose input goes
    /// straight to rest-json's `post` (`{"path", "query"?, "body"?}`).
    async fn integration(&self, name: &str, settings: Value) {
        self.define(json!({
            "name": name,
            "mode": "async",
            "connector": {"plugin": "rest-json", "operation": "post"},
            "bindings": {"api": "crm"},
            "async": settings,
        }))
        .await;
    }

    async fn define(&self, definition: Value) {
        let name = definition["name"].as_str().unwrap().to_string();
        let definition = plugboard::integrations::definition::Definition::from_json(definition).unwrap();
        self.integrations.create(definition).unwrap();
        self.integrations.activate(&name).await.unwrap();
    }

    async fn enqueue(&self, name: &str, input: Value) -> String {
        let accepted = self
            .runs
            .enqueue(name, input.to_string(), &self.caller, None, None)
            .await
            .unwrap();
        assert!(!accepted.replayed);
        accepted.run_id
    }

    fn run(&self, id: &str) -> QueuedRun {
        self.runs.store_run(id).unwrap().expect("the run exists")
    }

    /// The run as the API shows it.
    fn view(&self, id: &str) -> Value {
        self.runs.get(id).unwrap().expect("the run exists")
    }

    /// Polls the run until `done` holds.
    async fn until(&self, id: &str, what: &str, done: impl Fn(&QueuedRun) -> bool) -> QueuedRun {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let run = self.run(id);
            if done(&run) {
                return run;
            }
            assert!(Instant::now() < deadline, "run `{id}` never {what}: {run:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until attempt `n` is recorded and the run is not running.
    async fn attempted(&self, id: &str, n: u32) -> QueuedRun {
        self.until(id, &format!("finished attempt {n}"), |r| {
            r.attempt_count == n && r.status != "running"
        })
        .await
    }

    /// Moves the clock and wakes the dispatcher.
    fn advance(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
        self.runs.wake();
    }

    /// Lets the dispatcher look for due runs several times.
    async fn settle(&self) {
        tokio::time::sleep(POLL * 5).await;
    }

    fn now(&self) -> u64 {
        use plugboard::queue::engine::Clock;
        self.clock.now_ms()
    }

    /// Requests the upstream received whose path contains `part`.
    fn hits(&self, part: &str) -> usize {
        self.up.seen().iter().filter(|s| s.path.contains(part)).count()
    }

    fn dead_letters(&self, integration: &str) -> Vec<String> {
        let filter = AsyncRunFilter {
            integration: Some(integration.into()),
            dead_letters: true,
            ..AsyncRunFilter::default()
        };
        let runs = self.runs.list(&filter).unwrap();
        runs.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Follows a run through a waiting retry schedule against an upstream
    /// that keeps failing: before each retry the run is due exactly `delay`
    /// after the failed attempt, not a millisecond earlier; after the last
    /// it is failed and a dead letter.
    async fn follow_schedule(&self, integration: &str, id: &str, delays: &[u64]) {
        let mut run = self.attempted(id, 1).await;
        for (i, &delay) in delays.iter().enumerate() {
            let tried = i as u32 + 1;
            assert_eq!(run.status, "retrying", "after attempt {tried}: {run:#?}");
            let view = self.view(id);
            assert_eq!(
                view["next_attempt_at_ms"],
                self.now() + delay,
                "retry {tried}: {view}"
            );
            let last = &view["attempts"][i];
            assert_eq!(last["outcome"], "retrying");
            assert_eq!(last["next_attempt_at_ms"], self.now() + delay);
            assert_eq!(last["error"]["retryable"], true, "{last}");
            self.advance(delay - 1);
            self.settle().await;
            assert_eq!(self.run(id).attempt_count, tried, "retry {tried} ran early");
            self.advance(1);
            run = self.attempted(id, tried + 1).await;
        }
        assert_eq!(run.status, "failed", "{run:#?}");
        let attempts = delays.len() + 1;
        assert_eq!(run.attempts.len(), attempts);
        assert!(run.attempts[attempts - 1]["gave_up"].is_string(), "{run:#?}");
        assert_eq!(self.hits("/status/503"), attempts);
        assert_eq!(self.dead_letters(integration), [id]);
    }
}

fn failing() -> Value {
    json!({"path": "/status/503", "body": {"order": 1}})
}

/// An acknowledged run executes once in the background and reads back with
/// its output, its one attempt and that attempt's steps; the connector is
/// handed the run id (rest-json sends it as the upstream's idempotency key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_run_executes_and_reads_back_with_its_attempt() {
    let e = Engine::started().await;
    e.define(json!({
        "name": "create-customer",
        "mode": "async",
        "connector": {"plugin": "rest-json", "operation": "post"},
        "input_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/name", "to": "/body/name", "required": true},
            {"from": "/nothing", "to": "/path", "default": "/v1/customers"}]}},
        "output_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/status", "to": "/upstream_status"}, {"from": "/body/path", "to": "/path"}]}},
        "bindings": {"api": "crm"},
    }))
    .await;
    let id = e.enqueue("create-customer", json!({"name": "Ada"})).await;
    let view = e.runs.wait(&id, PATIENCE).await.unwrap().unwrap();
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(
        view["output"],
        json!({"upstream_status": 200, "path": "/v1/customers"})
    );
    assert_eq!(view["attempt_count"], 1);
    let attempts = view["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{view}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["outcome"], "succeeded");
    let steps: Vec<&str> = attempts[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["input_processor", "connector", "output_processor"]);
    assert_eq!(attempts[0]["steps"][1]["callouts"][0]["status"], 200);
    let seen = e.up.seen();
    assert_eq!(seen.len(), 1, "executed once");
    assert_eq!(seen[0].path, "/v1/customers");
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent, json!({"name": "Ada"}));
    assert_eq!(
        seen[0].headers["idempotency-key"], id,
        "the connector got the run id"
    );
    assert_eq!(seen[0].headers["authorization"], "Bearer queue-token");
}

/// `immediate` tries again at once, `retries` times, then fails for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_policy_retries_at_once_then_fails() {
    let e = Engine::started().await;
    e.integration("orders", json!({"retry": {"policy": "immediate", "retries": 3}}))
        .await;
    let started = e.now();
    let id = e.enqueue("orders", failing()).await;
    let run = e.until(&id, "failed", |r| r.status == "failed").await;
    assert_eq!(run.attempt_count, 4);
    assert_eq!(e.hits("/status/503"), 4);
    for attempt in &run.attempts[..3] {
        assert_eq!(attempt["outcome"], "retrying", "{attempt}");
        assert_eq!(attempt["next_attempt_at_ms"], started, "no wait: {attempt}");
    }
    assert_eq!(run.attempts[3]["outcome"], "failed");
    assert_eq!(run.error.as_ref().unwrap()["code"], "upstream_status");
    assert_eq!(e.dead_letters("orders"), [id]);
}

/// `fixed` waits its interval (here an hour) before every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_policy_waits_its_interval_before_each_retry() {
    let e = Engine::started().await;
    let retry = json!({"policy": "fixed", "retries": 2, "interval_ms": 3_600_000});
    e.integration("orders", json!({"retry": retry})).await;
    let id = e.enqueue("orders", failing()).await;
    e.follow_schedule("orders", &id, &[3_600_000, 3_600_000]).await;
}

/// `staggered` waits each listed delay in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staggered_policy_waits_each_listed_delay() {
    let e = Engine::started().await;
    let retry = json!({"policy": "staggered", "delays_ms": [60_000, 600_000, 7_200_000]});
    e.integration("orders", json!({"retry": retry})).await;
    let id = e.enqueue("orders", failing()).await;
    e.follow_schedule("orders", &id, &[60_000, 600_000, 7_200_000])
        .await;
}

/// `exponential` without jitter doubles its wait up to the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_policy_doubles_up_to_its_cap() {
    let e = Engine::started().await;
    let retry = json!({"policy": "exponential", "retries": 4, "initial_ms": 1000, "multiplier": 2.0,
        "max_ms": 5000, "jitter": false});
    e.integration("orders", json!({"retry": retry})).await;
    let id = e.enqueue("orders", failing()).await;
    e.follow_schedule("orders", &id, &[1000, 2000, 4000, 5000]).await;
}

/// An upstream's `Retry-After` on a 503 or a 429 holds the retry back at
/// least that long, even when the policy would retry after a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_holds_the_retry_back() {
    let e = Engine::started().await;
    let retry = json!({"policy": "fixed", "retries": 2, "interval_ms": 1000});
    e.integration("orders", json!({"retry": retry})).await;
    for status in [503, 429] {
        let path = format!("/status/{status}");
        let input = json!({"path": path, "query": {"retry_after": "120"}, "body": {}});
        let id = e.enqueue("orders", input).await;
        let run = e.attempted(&id, 1).await;
        assert_eq!(run.status, "retrying", "{status}: {run:#?}");
        assert_eq!(run.next_at_ms, e.now() + 120_000, "{status}");
        let callout = &run.attempts[0]["steps"][0]["callouts"][0];
        assert_eq!(callout["retry_after_ms"], 120_000, "{callout}");
        e.advance(119_999);
        e.settle().await;
        assert_eq!(
            e.run(&id).attempt_count,
            1,
            "{status}: retried before Retry-After"
        );
        e.advance(1);
        e.attempted(&id, 2).await;
        assert_eq!(e.hits(&path), 2);
        assert_eq!(e.runs.cancel(&id).unwrap()["status"], "cancelled");
    }
}

/// A failure that retrying cannot fix (the upstream refuses the request, or
/// the input processor refuses the input) fails at the first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_failures_fail_at_once() {
    let e = Engine::started().await;
    let retry = json!({"retry": {"policy": "immediate", "retries": 3}});
    e.integration("orders", retry.clone()).await;
    let id = e
        .enqueue("orders", json!({"path": "/status/400", "body": {}}))
        .await;
    let run = e.until(&id, "failed", |r| r.status == "failed").await;
    assert_eq!(run.attempt_count, 1, "{run:#?}");
    let error = run.error.unwrap();
    assert_eq!(
        (&error["code"], &error["step"], &error["retryable"]),
        (&json!("upstream_status"), &json!("connector"), &json!(false))
    );
    assert_eq!(e.hits("/status/400"), 1);

    e.define(json!({
        "name": "customers",
        "mode": "async",
        "connector": {"plugin": "rest-json", "operation": "post"},
        "input_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/name", "to": "/body/name", "required": true},
            {"from": "/nothing", "to": "/path", "default": "/v1/customers"}]}},
        "bindings": {"api": "crm"},
        "async": retry,
    }))
    .await;
    let id = e.enqueue("customers", json!({"no_name": true})).await;
    let run = e.until(&id, "failed", |r| r.status == "failed").await;
    assert_eq!(run.attempt_count, 1, "{run:#?}");
    assert_eq!(run.error.unwrap()["step"], "input_processor");
    assert_eq!(e.hits("/v1/customers"), 0);
    assert_eq!(e.dead_letters("customers"), [id]);
}

/// Retrying a dead letter gives it a fresh retry budget and keeps its
/// attempts; resolving one takes it off the dead-letter list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_retried_afresh_or_resolved() {
    let e = Engine::started().await;
    let retry = json!({"policy": "fixed", "retries": 1, "interval_ms": 60_000});
    e.integration("orders", json!({"retry": retry})).await;
    let id = e.enqueue("orders", failing()).await;
    e.follow_schedule("orders", &id, &[60_000]).await;

    assert_eq!(e.runs.retry(std::slice::from_ref(&id)).unwrap(), [id.as_str()]);
    assert!(e.dead_letters("orders").is_empty());
    // The budget spent before is not counted: the third attempt retries
    // on the policy's schedule instead of failing.
    let run = e.attempted(&id, 3).await;
    assert_eq!(run.status, "retrying", "{run:#?}");
    assert_eq!(run.next_at_ms, e.now() + 60_000);
    e.advance(60_000);
    let run = e.attempted(&id, 4).await;
    assert_eq!(run.status, "failed");
    let outcomes: Vec<String> = run
        .attempts
        .iter()
        .map(|a| {
            a["outcome"]
                .as_str()
                .map_or_else(|| "manual retry".to_string(), str::to_string)
        })
        .collect();
    assert_eq!(
        outcomes,
        ["retrying", "failed", "manual retry", "retrying", "failed"]
    );
    assert!(run.attempts[2]["manual_retry_at_ms"].is_u64(), "{run:#?}");
    assert_eq!(e.hits("/status/503"), 4);
    assert_eq!(e.dead_letters("orders"), [id.as_str()]);

    assert_eq!(e.runs.resolve(std::slice::from_ref(&id)).unwrap(), [id.as_str()]);
    assert!(e.dead_letters("orders").is_empty());
    let run = e.run(&id);
    assert_eq!(run.status, "failed");
    assert_eq!(run.resolved_at_ms, Some(e.now()));
    assert!(e.runs.resolve(std::slice::from_ref(&id)).unwrap().is_empty());
}

/// Deactivating an async integration puts its queued runs on hold, where
/// nothing executes them; activating releases them oldest first, their due
/// times spaced by `1 / release_per_second`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_holds_runs_and_activation_releases_them_spaced() {
    let e = Engine::new().await;
    e.integration("orders", json!({"release_per_second": 2.0})).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            e.enqueue("orders", json!({"path": format!("/orders/{n}"), "body": {}}))
                .await,
        );
        e.advance(1);
    }
    e.integrations.deactivate("orders").unwrap();
    e.start();
    e.settle().await;
    for id in &ids {
        assert_eq!(e.view(id)["status"], "on-hold");
    }
    assert_eq!(e.hits("/orders/"), 0, "held runs executed");
    let refused = e.runs.enqueue("orders", "{}".into(), &e.caller, None, None).await;
    assert!(refused.is_err(), "an inactive integration took a run");

    e.integrations.activate("orders").await.unwrap();
    let due: Vec<u64> = ids.iter().map(|id| e.run(id).next_at_ms).collect();
    for id in &ids {
        assert_eq!(e.view(id)["status"], "queued");
    }
    assert_eq!([due[1] - due[0], due[2] - due[1]], [500, 500], "{due:?}");
    // Activation stamps due times by the system clock; bring the engine's
    // clock to the first one.
    e.advance(due[0].saturating_sub(e.now()));
    for (n, id) in ids.iter().enumerate() {
        if n > 0 {
            e.settle().await;
            assert_eq!(e.run(id).status, "queued", "run {n} released early");
            e.advance(500);
        }
        e.until(id, "succeeded", |r| r.status == "succeeded").await;
        assert_eq!(e.hits("/orders/"), n + 1);
    }
}

/// A retry is handed the run's id and its own attempt number: when the first
/// attempt fails retryably (the connector's plugin is gone, so the
/// integration is degraded), the second one's connector, hostile's
/// `echo-context`, reports the same run id and attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_handed_the_run_id_and_its_attempt_number() {
    let e = Engine::with_plugins(&["hostile"]).await;
    let retry = json!({"policy": "fixed", "retries": 2, "interval_ms": 60_000});
    e.define(json!({
        "name": "context",
        "mode": "async",
        "connector": {"plugin": "hostile", "operation": "echo-context"},
        "async": {"retry": retry},
    }))
    .await;
    let id = e.enqueue("context", json!({})).await;
    let file = e.plugins.path().join("hostile.wasm");
    let wasm = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(e.registry.scan().await.removed, ["hostile"]);
    e.start();
    let run = e.attempted(&id, 1).await;
    assert_eq!(run.status, "retrying", "{run:#?}");
    let first = &run.attempts[0];
    assert_eq!(
        (
            &first["attempt"],
            &first["error"]["code"],
            &first["error"]["retryable"]
        ),
        (&json!(1), &json!("integration_degraded"), &json!(true)),
        "{first}"
    );

    std::fs::write(&file, wasm).unwrap();
    assert_eq!(e.registry.scan().await.added, ["hostile"]);
    e.advance(60_000);
    let run = e.until(&id, "succeeded", |r| r.status == "succeeded").await;
    assert_eq!(run.attempt_count, 2, "{run:#?}");
    assert_eq!(run.attempts[1]["attempt"], 2, "{run:#?}");
    let output = &e.view(&id)["output"];
    assert_eq!(
        (&output["run_id"], &output["attempt"], &output["integration"]),
        (&json!(id), &json!(2), &json!("context")),
        "{output}"
    );
}

/// Twenty concurrent enqueues with one idempotency key make one run, which
/// reaches the upstream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_makes_one_run_under_concurrency() {
    let e = Arc::new(Engine::started().await);
    e.integration("orders", json!({})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let e = e.clone();
        tasks.spawn(async move {
            let input = json!({"path": "/orders", "body": {"n": 1}}).to_string();
            e.runs
                .enqueue("orders", input, &e.caller, None, Some("order-42".into()))
                .await
                .unwrap()
        });
    }
    let accepted = tasks.join_all().await;
    let ids: BTreeSet<&str> = accepted.iter().map(|a| a.run_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "{accepted:?}");
    assert_eq!(accepted.iter().filter(|a| !a.replayed).count(), 1);
    let id = ids.first().unwrap().to_string();
    e.until(&id, "succeeded", |r| r.status == "succeeded").await;
    e.settle().await;
    assert_eq!(e.hits("/orders"), 1);
    let filter = AsyncRunFilter {
        integration: Some("orders".into()),
        ..AsyncRunFilter::default()
    };
    assert_eq!(e.runs.list(&filter).unwrap().len(), 1);
}

/// A queued run is cancelled at once; a running one is stopped mid-call and
/// ends cancelled quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_queued_and_running_runs() {
    let e = Engine::started().await;
    e.integration("orders", json!({"concurrency": 1})).await;
    let slow = e
        .enqueue("orders", json!({"path": "/slow/5000", "body": {}}))
        .await;
    let deadline = Instant::now() + PATIENCE;
    while e.hits("/slow/") == 0 {
        assert!(Instant::now() < deadline, "the slow run never called out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let queued = e.enqueue("orders", json!({"path": "/orders", "body": {}})).await;
    e.settle().await;
    assert_eq!(e.run(&queued).status, "queued", "concurrency 1 holds it back");
    let view = e.runs.cancel(&queued).unwrap();
    assert_eq!(view["status"], "cancelled", "{view}");

    let asked = Instant::now();
    let view = e.runs.cancel(&slow).unwrap();
    assert_eq!(
        (&view["status"], &view["cancel_requested"]),
        (&json!("running"), &json!(true))
    );
    let view = e.runs.wait(&slow, PATIENCE).await.unwrap().unwrap();
    assert_eq!(view["status"], "cancelled", "{view}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(view["attempts"][0]["outcome"], "cancelled");
    assert!(e.runs.cancel(&slow).is_err(), "a final run cannot be cancelled");
    e.settle().await;
    assert_eq!(e.hits("/orders"), 0, "the cancelled queued run executed");
}

// ---- Through a real `plugboard serve` -------------------------------------

/// A server whose credential `crm` points at `up`, with `runs` as its
/// `[runs]` table.
async fn server_with(up: &Upstream, runs: &str) -> Server {
    crate::serve::rest_json_server(up, &format!("[runs]\n{runs}")).await
}

use crate::serve::define_rest_json as define;

/// POSTs `body` with the admin token and `headers`; returns the status, the
/// response headers and the JSON body.
async fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: Value) -> crate::serve::Reply {
    crate::serve::request(server, "POST", path, &server.admin, headers, Some(body)).await
}

/// Ten concurrent requests with one `Idempotency-Key` to a sync integration
/// run it once: all get the first reply and run id, nine marked replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_idempotency_key_runs_once_under_concurrency() {
    let up = Upstream::start().await;
    let server = Arc::new(server_with(&up, "").await);
    define(&server, "charge", json!({})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let server = server.clone();
        tasks.spawn(async move {
            let input = json!({"path": "/slow/300", "body": {"amount": 5}});
            post(
                &server,
                "/v1/integrations/charge/invoke",
                &[("idempotency-key", "charge-7")],
                input,
            )
            .await
        });
    }
    let replies = tasks.join_all().await;
    assert_eq!(up.seen().len(), 1, "the upstream was called more than once");
    let (_, first_headers, first_body) = &replies[0];
    assert_eq!(first_body["status"], 200, "{first_body}");
    let run_id = first_headers["plugboard-run-id"].clone();
    let mut replayed = 0;
    for (status, headers, body) in &replies {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body, first_body);
        assert_eq!(headers["plugboard-run-id"], run_id);
        if headers.get("idempotent-replayed").is_some_and(|v| v == "true") {
            replayed += 1;
        }
    }
    assert_eq!(replayed, 9);
}

/// A callback receiver on loopback that answers 500 to the first `fail`
/// deliveries and 200 after, recording each: (signature, body, answer).
#[derive(Clone)]
struct Receiver {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<(String, Bytes, u16)>>>,
}

impl Receiver {
    async fn start(fail: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(String, Bytes, u16)>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = record.clone();
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let signature = req
                                .headers()
                                .get("plugboard-signature")
                                .map(|v| v.to_str().unwrap_or("").to_string())
                                .unwrap_or_default();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut seen = record.lock().unwrap();
                            let status = if seen.len() < fail { 500 } else { 200 };
                            seen.push((signature, body, status));
                            let resp = hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()));
                            Ok::<_, Infallible>(resp.unwrap())
                        }
                    });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Receiver { addr, seen }
    }

    fn seen(&self) -> Vec<(String, Bytes, u16)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A run's result is delivered, signed, to its callback URL until the
/// receiver accepts it (after two refusals), carrying the final status and
/// output; a URL outside the allowed prefixes is refused at invoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_and_redelivered_until_accepted() {
    let up = Upstream::start().await;
    let receiver = Receiver::start(2).await;
    let secret = "whsec-queue-test";
    let hooks = format!("http://{}/hooks/", receiver.addr);
    let runs = format!(
        "callback_secret = \"{}\"\ncallback_urls = [\"{hooks}\"]\n",
        secret_ref(secret)
    );
    let server = server_with(&up, &runs).await;
    define(&server, "orders", json!({"mode": "async"})).await;
    let invoke = "/v1/integrations/orders/invoke";
    let input = json!({"path": "/orders", "body": {"sku": "a-1"}});

    // Outside the prefix, by plain path or by whole-segment tricks.
    for outside in [
        format!("http://{}/admin/hooks/", receiver.addr),
        format!("http://{}/hooks-admin/x", receiver.addr),
        format!("{hooks}..%2fadmin"),
        format!("{hooks}%2e%2e/admin"),
    ] {
        let (s, _, v) = post(
            &server,
            invoke,
            &[("plugboard-callback-url", &outside)],
            input.clone(),
        )
        .await;
        assert_eq!(
            (s, &v["error"]["code"]),
            (400, &json!("invalid_callback")),
            "{outside}: {v}"
        );
    }

    let url = format!("{hooks}orders");
    let (s, headers, v) = post(&server, invoke, &[("plugboard-callback-url", &url)], input).await;
    assert_eq!(s, 202, "{v}");
    let id = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"].to_str().unwrap(), format!("/v1/runs/{id}"));

    let deadline = Instant::now() + PATIENCE;
    while receiver.seen().len() < 3 {
        assert!(Instant::now() < deadline, "deliveries: {:?}", receiver.seen());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = receiver.seen();
    let answers: Vec<u16> = seen.iter().map(|(_, _, s)| *s).collect();
    assert_eq!(answers, [500, 500, 200]);
    let (signature, body, _) = &seen[2];
    let tolerance = Duration::from_secs(300);
    plugboard::queue::callback::verify(secret, signature, body, SystemTime::now(), tolerance)
        .unwrap_or_else(|e| panic!("{e}: {signature}"));
    let tampered = [body.as_ref(), b" "].concat();
    assert!(
        plugboard::queue::callback::verify(secret, signature, &tampered, SystemTime::now(), tolerance)
            .is_err()
    );
    let result: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(result["run_id"], id.as_str());
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["output"]["status"], 200, "{result}");
    assert_eq!(result["output"]["body"]["path"], "/orders", "{result}");

    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, run) = server.admin("GET", &format!("/v1/runs/{id}"), None).await;
        if run["callback"]["state"] == "delivered" {
            assert_eq!(run["callback"]["attempts"], 3, "{run}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "callback never recorded delivered: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.seen().len(), 3, "delivered again after a 200");
}

/// With `max_pending` runs not finished, invoke answers 429 `queue_full`
/// with a `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let up = Upstream::start().await;
    let server = server_with(&up, "").await;
    define(
        &server,
        "orders",
        json!({"mode": "async", "async": {"max_pending": 3}}),
    )
    .await;
    let invoke = "/v1/integrations/orders/invoke";
    let input = json!({"path": "/slow/3000", "body": {}});
    for n in 0..3 {
        let (s, _, v) = post(&server, invoke, &[], input.clone()).await;
        assert_eq!(s, 202, "invoke {n}: {v}");
    }
    let (s, headers, v) = post(&server, invoke, &[], input).await;
    assert_eq!((s, &v["error"]["code"]), (429, &json!("queue_full")), "{v}");
    let retry_after = headers.get("retry-after").expect("a Retry-After header");
    assert!(retry_after.to_str().unwrap().parse::<u64>().unwrap() >= 1);
}

/// `GET /v1/runs/{id}?wait=10s` answers as soon as the run finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_when_the_run_finishes() {
    let up = Upstream::start().await;
    let server = server_with(&up, "").await;
    define(&server, "orders", json!({"mode": "async"})).await;
    let input = json!({"path": "/slow/600", "body": {}});
    let (s, _, v) = post(&server, "/v1/integrations/orders/invoke", &[], input).await;
    assert_eq!(s, 202, "{v}");
    let id = v["run_id"].as_str().unwrap();
    let asked = Instant::now();
    let (s, run) = server
        .admin("GET", &format!("/v1/runs/{id}?wait=10s"), None)
        .await;
    let took = asked.elapsed();
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(took < Duration::from_secs(4), "the long poll took {took:?}");
}
