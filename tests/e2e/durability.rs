//! Async runs survive a crash: the real host killed with SIGKILL while
//! hundreds of acknowledged runs are queued and running, then started again
//! on the same folder.
//!
//! The promise under test is the one a `202 Accepted` makes: the run is
//! stored, it reaches a final status whatever happens to the process, and a
//! connector call is repeated only where the run's attempts list says an
//! attempt was interrupted (at-least-once, visibly). The upstream counts the
//! calls per run by the `idempotency-key` header rest-json sets to the run id.
//! A graceful stop (SIGTERM) keeps the same promise and ends in bounded time.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use plugboard_tests::{Upstream, secret_ref};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::serve::{Server, install_plugins};

const INTEGRATION: &str = "durable";
/// Runs acknowledged before the kill.
const RUNS: usize = 300;
/// The integration's `async.concurrency`: at most this many run at the kill.
const CONCURRENCY: usize = 8;
/// Each connector call waits this long at the upstream, so the queue drains
/// at a few hundred runs a second at most and the kill finds it busy.
const UPSTREAM_PATH: &str = "/slow/40";
/// Succeeded runs to wait for before the kill.
const SUCCEEDED_BEFORE_KILL: u64 = 20;
/// Why an attempt cut short by a dead host is interrupted.
const LEASE_EXPIRED: &str = "lease expired";
/// Why an attempt still running at the end of a graceful stop is interrupted.
const HOST_SHUT_DOWN: &str = "host shut down";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A folder whose config has a one-second lease (so runs of a dead host are
/// picked up again quickly) and the credential `crm` pointing at `up`.
fn server_folder(up: &Upstream) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["rest-json"]);
    let config = format!(
        "data_dir = \"data\"\n[runs]\nlease_ms = 1000\n[credentials.crm]\nallow_http = true\n\
         allowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\n\
         auth = {{ type = \"bearer\", token = \"{}\" }}\n",
        up.url(),
        secret_ref("durable-token")
    );
    std::fs::write(dir.path().join("plugboard.toml"), config).unwrap();
    dir
}

/// No processors: the caller's input is rest-json's, so each run's request
/// body carries the caller's `n`.
async fn define(server: &Server, concurrency: usize) {
    let definition = json!({
        "name": INTEGRATION,
        "mode": "async",
        "async": {"concurrency": concurrency},
        "connector": {"plugin": "rest-json", "operation": "post"},
        "bindings": {"api": "crm"},
    });
    let (s, v) = server.admin("POST", "/v1/integrations", Some(definition)).await;
    assert_eq!(s, 201, "{v}");
    let path = format!("/v1/integrations/{INTEGRATION}/activate");
    let (s, v) = server.admin("POST", &path, None).await;
    assert_eq!(s, 200, "{v}");
}

/// One invoke calling the upstream at `path`; returns the run id of its 202.
async fn invoke(client: HttpClient, url: String, token: String, path: &str, n: usize) -> String {
    let body = json!({"path": path, "body": {"n": n}}).to_string();
    let req = http::Request::post(format!("{url}/v1/integrations/{INTEGRATION}/invoke"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!((status, &v["status"]), (202, &json!("queued")), "invoke {n}: {v}");
    v["run_id"].as_str().expect("a run id").to_string()
}

/// Fires `runs` invokes calling the upstream at `path` at once; returns the
/// acknowledged run id of each `n`.
async fn enqueue_all(server: &Server, runs: usize, path: &'static str) -> BTreeMap<usize, String> {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut tasks = JoinSet::new();
    for n in 0..runs {
        let (url, token) = (server.url.clone(), server.admin.clone());
        let client = client.clone();
        tasks.spawn(async move { (n, invoke(client, url, token, path, n).await) });
    }
    let mut acked = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (n, id) = done.unwrap();
        acked.insert(n, id);
    }
    acked
}

/// The integration's runs counted by status.
async fn counts(server: &Server) -> BTreeMap<String, u64> {
    let (s, v) = server
        .admin("GET", &format!("/v1/integrations/{INTEGRATION}/queue"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    serde_json::from_value(v["counts"].clone()).unwrap()
}

fn pending(counts: &BTreeMap<String, u64>) -> u64 {
    ["queued", "running", "retrying", "on_hold"]
        .iter()
        .map(|s| count(counts, s))
        .sum()
}

fn count(counts: &BTreeMap<String, u64>, status: &str) -> u64 {
    counts.get(status).copied().unwrap_or(0)
}

/// Waits until some runs have succeeded; returns the counts just before the kill.
async fn wait_for_progress(server: &Server) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = counts(server).await;
        if c["succeeded"] >= SUCCEEDED_BEFORE_KILL || Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGKILL: no shutdown path runs, the leases are left to expire.
fn kill_hard(mut server: Server) -> (tempfile::TempDir, String) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "the server was not killed: {status}");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    (dir, std::mem::take(&mut server.admin))
}

/// Waits until no run of the integration is pending.
async fn wait_until_final(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(server).await;
        if pending(&c) == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "runs still pending after 60 s: {c:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every async run of the integration, paging through the listing.
async fn listed_ids(server: &Server) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut path = format!("/v1/runs?mode=async&integration={INTEGRATION}&limit=500");
    loop {
        let (s, v) = server.admin("GET", &path, None).await;
        assert_eq!(s, 200, "{v}");
        let page: Vec<String> = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let Some(last) = page.last().cloned() else {
            return ids;
        };
        ids.extend(page);
        path = format!("/v1/runs?mode=async&integration={INTEGRATION}&limit=500&before={last}");
    }
}

/// Calls the upstream got per run id (the `idempotency-key` header), after
/// checking each call's body names the run's own `n`.
fn upstream_calls(up: &Upstream, acked: &BTreeMap<usize, String>) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for seen in up.seen() {
        let id = seen
            .headers
            .get("idempotency-key")
            .expect("rest-json sends the run id")
            .clone();
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        let n = usize::try_from(body["n"].as_u64().unwrap()).unwrap();
        assert_eq!(
            acked.get(&n),
            Some(&id),
            "the call for `n = {n}` came from run `{id}`"
        );
        *calls.entry(id).or_default() += 1;
    }
    calls
}

/// A run read back after the restart: its status and interrupted attempts,
/// each of which must give one of `reasons`.
async fn final_run(server: &Server, id: &str, reasons: &[&str]) -> (Value, usize) {
    let (s, run) = server.admin("GET", &format!("/v1/runs/{id}"), None).await;
    assert_eq!(s, 200, "run {id}: {run}");
    let attempts = run["attempts"].as_array().unwrap();
    let interrupted: Vec<&Value> = attempts
        .iter()
        .filter(|a| a["outcome"] == "interrupted")
        .collect();
    for a in &interrupted {
        let why = a["error"]["message"].as_str().unwrap_or("");
        assert!(
            reasons.iter().any(|r| why.contains(r)),
            "interrupted for another reason: {run}"
        );
    }
    let interrupted = interrupted.len();
    assert_eq!(
        attempts.len(),
        run["attempt_count"].as_u64().unwrap() as usize,
        "{run}"
    );
    (run, interrupted)
}

/// Checks every run succeeded and called the upstream once, or more only
/// after an interrupted attempt (interrupted for one of `reasons`); returns
/// how many runs were interrupted and how many called the upstream twice.
async fn check_each_run(
    server: &Server,
    ids: &BTreeSet<String>,
    calls: &BTreeMap<String, usize>,
    reasons: &[&str],
) -> (usize, usize) {
    let (mut interrupted_runs, mut repeated) = (0, 0);
    for id in ids {
        let (run, interrupted) = final_run(server, id, reasons).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert!(
            interrupted <= 1,
            "one stop, yet {interrupted} interruptions: {run}"
        );
        let n = calls.get(id).copied().unwrap_or(0);
        assert!(n >= 1, "run {id} succeeded without calling the upstream: {run}");
        assert!(
            n <= 1 + interrupted,
            "run {id} called the upstream {n} times: {run}"
        );
        interrupted_runs += interrupted;
        repeated += usize::from(n > 1);
    }
    (interrupted_runs, repeated)
}

/// SIGKILL while hundreds of acknowledged async runs are queued and running:
/// after a restart every one of them succeeds, none is lost, no other run
/// appears, and an upstream call is repeated only for a run whose attempts
/// show the interrupted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_runs_survive_sigkill_and_run_at_least_once() {
    let up = Upstream::start().await;
    let server = Server::spawn(server_folder(&up), None).await;
    define(&server, CONCURRENCY).await;
    let acked = enqueue_all(&server, RUNS, UPSTREAM_PATH).await;
    let at_kill = wait_for_progress(&server).await;
    let (dir, admin) = kill_hard(server);
    assert!(
        at_kill["queued"] > 0 && at_kill["succeeded"] < RUNS as u64,
        "the kill found no work left: {at_kill:?}"
    );
    let server = Server::spawn(dir, Some(admin)).await;
    wait_until_final(&server).await;

    let ids: BTreeSet<String> = acked.values().cloned().collect();
    assert_eq!(ids.len(), RUNS, "every acknowledged run has its own id");
    assert_eq!(listed_ids(&server).await, ids, "lost or unknown runs");
    let calls = upstream_calls(&up, &acked);
    let (interrupted_runs, repeated) = check_each_run(&server, &ids, &calls, &[LEASE_EXPIRED]).await;
    assert!(
        interrupted_runs <= CONCURRENCY,
        "{interrupted_runs} runs interrupted, but at most {CONCURRENCY} ran at the kill ({at_kill:?})"
    );
    eprintln!("at the kill: {at_kill:?}; interrupted runs: {interrupted_runs}, called twice: {repeated}");
}

// ---- Graceful stop -------------------------------------------------------

/// Runs acknowledged before the graceful stop.
const STOP_RUNS: usize = 40;
/// The integration's `async.concurrency` in the graceful-stop test.
const STOP_CONCURRENCY: usize = 4;
/// Each call takes this long, so the queue needs a few seconds to drain and
/// the stop finds attempts running and runs queued.
const STOP_UPSTREAM_PATH: &str = "/slow/300";
/// The engine gives running attempts 10 s after SIGTERM, then re-queues
/// the rest: the process must be gone well within this.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Waits until the first runs have succeeded and more are running;
/// returns the counts just before the stop.
async fn wait_until_busy(server: &Server) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = counts(server).await;
        if count(&c, "succeeded") >= STOP_CONCURRENCY as u64 && count(&c, "running") > 0 {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "the runs never got going: {c:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGTERM, then waits up to `within` for a successful exit (failing, and
/// killing the process, when it takes longer); returns the folder, the
/// admin token and how long the exit took.
async fn terminate(mut server: Server, within: Duration) -> (tempfile::TempDir, String, Duration) {
    let pid = server.child.id().to_string();
    let asked = Instant::now();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        // Dropping the server kills the process.
        assert!(
            asked.elapsed() < within,
            "still running {within:?} after SIGTERM:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = asked.elapsed();
    let log = server.log();
    assert!(status.success(), "exited with {status} after SIGTERM:\n{log}");
    assert!(log.contains("every run is stored"), "{log}");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    (dir, std::mem::take(&mut server.admin), took)
}

/// SIGTERM while acknowledged async runs are running and queued: the host
/// exits within the engine's grace period, and after a restart on the same
/// folder every run succeeds, none is lost, and an upstream call is repeated
/// only for a run whose attempts show the one the stop interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_async_runs_in_flight_exits_promptly_and_loses_none() {
    let up = Upstream::start().await;
    let server = Server::spawn(server_folder(&up), None).await;
    define(&server, STOP_CONCURRENCY).await;
    let acked = enqueue_all(&server, STOP_RUNS, STOP_UPSTREAM_PATH).await;
    let at_stop = wait_until_busy(&server).await;
    let (dir, admin, took) = terminate(server, STOP_WITHIN).await;
    assert!(
        count(&at_stop, "queued") > 0,
        "the stop found no queued run left: {at_stop:?}"
    );
    let server = Server::spawn(dir, Some(admin)).await;
    wait_until_final(&server).await;

    let ids: BTreeSet<String> = acked.values().cloned().collect();
    assert_eq!(ids.len(), STOP_RUNS, "every acknowledged run has its own id");
    assert_eq!(listed_ids(&server).await, ids, "lost or unknown runs");
    let calls = upstream_calls(&up, &acked);
    let reasons = [HOST_SHUT_DOWN, LEASE_EXPIRED];
    let (interrupted_runs, repeated) = check_each_run(&server, &ids, &calls, &reasons).await;
    assert!(
        interrupted_runs <= STOP_CONCURRENCY,
        "{interrupted_runs} runs interrupted, but at most {STOP_CONCURRENCY} ran at the stop ({at_stop:?})"
    );
    eprintln!(
        "at the stop: {at_stop:?}; exit took {took:?}; interrupted runs: {interrupted_runs}, called twice: {repeated}"
    );
}
