//! Queue benchmark: how fast the real `plugboard serve` process acknowledges
//! async runs (each stored durably in SQLite before the `202`), and how fast
//! its engine then works a backlog off.
//!
//! One server, three integrations, each the same rest-json `post` to an
//! upstream in this process that answers at once:
//! 1. **Sync baseline**: `QUEUE_CLIENTS` clients (default 16), each on its
//!    own kept-alive connection, invoke the sync integration back to back for
//!    `QUEUE_SECONDS` (default 5) after a one-second warm-up; `200`s count.
//! 2. **Durable enqueue**: the same clients and duration against the async
//!    integration; `202`s count. The engine executes the runs meanwhile, as
//!    it would in production, so the two compete for the cores and the store.
//!    The backlog left is then drained, and that drain is timed as well.
//! 3. **Drain**: `QUEUE_DRAIN_RUNS` (default 2,000) runs enqueued into a
//!    second async integration by the same clients while the engine works
//!    on them; then runs finished per second until its queue is empty
//!    (polling `GET /v1/integrations/{name}/queue` every 50 ms).
//!
//! The async integrations have `async.concurrency = 16`, so the host's
//! `[runs] max_parallel` (default 16) is the bound. Latencies are from
//! sending the request to reading the whole answer. CPU is the server
//! process's CPU time over wall time, in cores (this machine's cores are
//! shared with the clients and the upstream).
//!
//! Run with `cargo bench -p plugboard-tests --bench queue` after
//! `cargo build --release` and `bash scripts/build-plugins.sh target/plugins`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

mod common;

use common::{Server, client, cpu_seconds, env_or, ms, send};

const SYNC: &str = "sync-baseline";
const ENQUEUE: &str = "async-enqueue";
const DRAIN: &str = "async-drain";
/// The credential's base path plus the path in the input.
const UPSTREAM_PATH: &str = "/api/v1/customers";
const BODY: &str = r#"{"path": "/v1/customers", "body": {"name": "Ada Lovelace"}}"#;
const WARM_UP: Duration = Duration::from_secs(1);
/// Bound on start-up, readiness and every drain.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

struct Settings {
    clients: usize,
    duration: Duration,
    drain_runs: u64,
}

fn settings() -> Settings {
    Settings {
        clients: env_or("QUEUE_CLIENTS", 16) as usize,
        duration: Duration::from_secs(env_or("QUEUE_SECONDS", 5)),
        drain_runs: env_or("QUEUE_DRAIN_RUNS", 2000),
    }
}

/// The external system: answers `POST UPSTREAM_PATH` at once, 404
/// elsewhere, and counts the calls. Returns its base URL.
async fn start_upstream(calls: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = calls.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let calls = calls.clone();
                async move {
                    let expected = req.method() == Method::POST && req.uri().path() == UPSTREAM_PATH;
                    let _ = req.into_body().collect().await;
                    calls.fetch_add(1, Ordering::Relaxed);
                    let (status, body) = match expected {
                        true => (StatusCode::OK, r#"{"id": 42}"#),
                        false => (StatusCode::NOT_FOUND, r#"{"error": "wrong path"}"#),
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    url
}

/// What this bench asks of the server besides the shared calls.
trait QueueServer {
    fn invoke_uri(&self, name: &str) -> String;
    async fn counts(&self, name: &str) -> Counts;
}

impl QueueServer for Server {
    fn invoke_uri(&self, name: &str) -> String {
        format!("{}/v1/integrations/{name}/invoke", self.url)
    }

    /// The integration's runs counted by status.
    async fn counts(&self, name: &str) -> Counts {
        let v = self
            .admin(Method::GET, &format!("/v1/integrations/{name}/queue"), None, 200)
            .await;
        let count = |s: &str| v["counts"][s].as_u64().unwrap_or(0);
        Counts {
            pending: ["queued", "running", "retrying", "on_hold"]
                .map(count)
                .iter()
                .sum(),
            succeeded: count("succeeded"),
            failed: count("failed") + count("cancelled"),
        }
    }
}

/// Creates and activates the three integrations; checks one of each.
async fn install(server: &Server) {
    for (name, mode) in [(SYNC, "sync"), (ENQUEUE, "async"), (DRAIN, "async")] {
        let mut def = json!({
            "name": name, "mode": mode,
            "connector": {"plugin": "rest-json", "operation": "post"},
            "bindings": {"api": "crm"},
        });
        if mode == "async" {
            // No 429s: the benchmark measures the store, not the bound.
            def["async"] = json!({"concurrency": 16, "max_pending": 10_000_000});
        }
        server
            .admin(Method::POST, "/v1/integrations", Some(def), 201)
            .await;
        let path = format!("/v1/integrations/{name}/activate");
        server.admin(Method::POST, &path, None, 200).await;
    }
    let body = Some(Bytes::from_static(BODY.as_bytes()));
    let sync = send(
        &client(),
        Method::POST,
        &server.invoke_uri(SYNC),
        &server.admin,
        body,
    )
    .await;
    assert!(
        matches!(sync, Ok((StatusCode::OK, _))),
        "the sync invoke failed: {sync:?}"
    );
    let run = invoke_once(server, DRAIN).await;
    let path = format!("/v1/runs/{run}?wait=10s");
    let done = server.admin(Method::GET, &path, None, 200).await;
    assert_eq!(done["status"], "succeeded", "the first async run: {done}");
}

/// One async invoke; returns its run id.
async fn invoke_once(server: &Server, name: &str) -> String {
    let body = Some(Bytes::from_static(BODY.as_bytes()));
    let (status, bytes) = send(
        &client(),
        Method::POST,
        &server.invoke_uri(name),
        &server.admin,
        body,
    )
    .await
    .expect("an async invoke");
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the async invoke answered {status}: {v}"
    );
    v["run_id"].as_str().expect("a run id").to_string()
}

/// A queue's runs by status.
#[derive(Debug, Clone, Copy)]
struct Counts {
    pending: u64,
    succeeded: u64,
    failed: u64,
}

/// One client's counts and latencies.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, t: Tally) {
        (self.ok, self.errors) = (self.ok + t.ok, self.errors + t.errors);
        self.latencies.extend(t.latencies);
        self.first_error = self.first_error.take().or(t.first_error);
    }
}

/// What ends a client's loop.
#[derive(Clone)]
enum Until {
    Time(Instant),
    /// A shared count of requests left to send.
    Count(Arc<AtomicU64>),
}

impl Until {
    fn another(&self) -> bool {
        match self {
            Until::Time(t) => Instant::now() < *t,
            Until::Count(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// One client: invokes back to back on its own kept-alive connection;
/// answers with status `want` count.
async fn client_loop(uri: Arc<str>, token: Arc<str>, want: StatusCode, until: Until) -> Tally {
    let (client, mut tally) = (client(), Tally::default());
    while until.another() {
        let start = Instant::now();
        let body = Some(Bytes::from_static(BODY.as_bytes()));
        match send(&client, Method::POST, &uri, &token, body).await {
            Ok((status, _)) if status == want => {
                tally.ok += 1;
                tally.latencies.push(start.elapsed());
            }
            outcome => {
                tally.errors += 1;
                let error =
                    outcome.map_or_else(|e| e, |(s, b)| format!("{s}: {}", String::from_utf8_lossy(&b)));
                tally.first_error.get_or_insert(error);
            }
        }
    }
    tally
}

/// Runs `clients` client loops and merges their tallies.
async fn drive(uri: &str, token: &str, want: StatusCode, clients: usize, until: Until) -> Tally {
    let (uri, token): (Arc<str>, Arc<str>) = (uri.into(), token.into());
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client_loop(uri.clone(), token.clone(), want, until.clone())))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.expect("client task"));
    }
    total
}

/// What a timed invoke phase measured.
struct Rate {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    server_cores: f64,
}

/// Warm-up, then `settings.duration` of invokes of `name` answering `want`.
async fn rate(server: &Server, name: &str, want: StatusCode, settings: &Settings) -> Rate {
    let (uri, pid) = (server.invoke_uri(name), server.child.id());
    let until = |d| Until::Time(Instant::now() + d);
    drive(&uri, &server.admin, want, settings.clients, until(WARM_UP)).await;
    let (cpu, start) = (cpu_seconds(pid), Instant::now());
    let mut tally = drive(
        &uri,
        &server.admin,
        want,
        settings.clients,
        until(settings.duration),
    )
    .await;
    let wall = start.elapsed().as_secs_f64();
    assert!(
        tally.ok > 0,
        "no invoke of `{name}` succeeded: {:?}",
        tally.first_error
    );
    tally.latencies.sort();
    let pick = |q: usize| tally.latencies[(tally.latencies.len() * q / 100).min(tally.latencies.len() - 1)];
    Rate {
        per_sec: tally.ok as f64 / wall,
        p50: pick(50),
        p99: pick(99),
        ok: tally.ok,
        errors: tally.errors,
        server_cores: (cpu_seconds(pid) - cpu) / wall,
        first_error: tally.first_error,
    }
}

/// What a drain measured.
struct Drain {
    /// Runs that reached a final status while it was timed.
    runs: u64,
    secs: f64,
    /// Of those, failed or cancelled.
    failed: u64,
    server_cores: f64,
}

impl Drain {
    fn between(from: Counts, to: Counts, secs: f64, cpu_secs: f64) -> Drain {
        Drain {
            runs: to.succeeded + to.failed - from.succeeded - from.failed,
            secs,
            failed: to.failed - from.failed,
            server_cores: cpu_secs / secs,
        }
    }
}

/// Polls `name`'s queue every 50 ms until nothing is pending; returns the
/// counts then.
async fn wait_empty(server: &Server, name: &str) -> Counts {
    let start = Instant::now();
    loop {
        let now = server.counts(name).await;
        if now.pending == 0 {
            return now;
        }
        assert!(
            start.elapsed() < SETUP_TIMEOUT,
            "`{name}` did not drain in time: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Times `name`'s queue from now, when it holds `from`, until it is empty.
async fn drain(server: &Server, name: &str, from: Counts) -> Drain {
    let pid = server.child.id();
    let (start, cpu) = (Instant::now(), cpu_seconds(pid));
    let to = wait_empty(server, name).await;
    Drain::between(from, to, start.elapsed().as_secs_f64(), cpu_seconds(pid) - cpu)
}

/// The drain phase's figures.
struct Fill {
    /// The enqueue of `drain_runs` runs.
    enqueue: Tally,
    enqueue_secs: f64,
    /// Runs finished while they were being enqueued.
    during: Drain,
    /// From the last `202` until the queue was empty.
    after: Drain,
    /// From the first invoke until the queue was empty.
    whole: Drain,
}

/// Enqueues `settings.drain_runs` runs of DRAIN with the engine working on
/// them as they arrive, then times the rest of the drain.
async fn fill_and_drain(server: &Server, settings: &Settings) -> Fill {
    let (pid, uri) = (server.child.id(), server.invoke_uri(DRAIN));
    let (before, cpu, start) = (server.counts(DRAIN).await, cpu_seconds(pid), Instant::now());
    let left = Until::Count(Arc::new(AtomicU64::new(settings.drain_runs)));
    let enqueue = drive(&uri, &server.admin, StatusCode::ACCEPTED, settings.clients, left).await;
    let enqueue_secs = start.elapsed().as_secs_f64();
    let (filled, cpu_filled) = (server.counts(DRAIN).await, cpu_seconds(pid));
    let filled_secs = start.elapsed().as_secs_f64();
    let end = wait_empty(server, DRAIN).await;
    let (secs, cpu_all) = (start.elapsed().as_secs_f64(), cpu_seconds(pid) - cpu);
    Fill {
        enqueue,
        enqueue_secs,
        during: Drain::between(before, filled, filled_secs, cpu_filled - cpu),
        after: Drain::between(filled, end, secs - filled_secs, cpu_all - (cpu_filled - cpu)),
        whole: Drain::between(before, end, secs, cpu_all),
    }
}

fn rate_row(name: &str, r: &Rate) {
    println!(
        "| {name} | {:.0} | {} | {} | {} | {} | {:.2} |",
        r.per_sec,
        ms(r.p50),
        ms(r.p99),
        r.ok,
        r.errors,
        r.server_cores
    );
}

fn drain_row(name: &str, d: &Drain) {
    println!(
        "| {name} | {} | {:.2} s | {:.0} | {} | {:.2} |",
        d.runs,
        d.secs,
        d.runs as f64 / d.secs,
        d.failed,
        d.server_cores
    );
}

fn print_rates(settings: &Settings, sync: &Rate, enqueue: &Rate) {
    let secs = settings.duration.as_secs();
    println!(
        "\n## queue: {} clients, {secs} s per invoke phase\n",
        settings.clients
    );
    println!("| invokes | answered/s | p50 | p99 | ok | errors | CPU server (cores) |");
    println!("|---|---|---|---|---|---|---|");
    rate_row("sync rest-json post (baseline; 200 = done)", sync);
    rate_row("async durable enqueue (202 = stored)", enqueue);
    println!(
        "\nasync / sync answered/s: {:.2}x",
        enqueue.per_sec / sync.per_sec
    );
    for (name, r) in [("sync", sync), ("async", enqueue)] {
        if let Some(e) = &r.first_error {
            println!("{name}: first error: {e}");
        }
    }
}

fn print_drains(backlog: &Drain, fill: &Fill, upstream_calls: u64) {
    println!("\n| drain | runs finished | time | runs finished/s | failed | CPU server (cores) |");
    println!("|---|---|---|---|---|---|");
    drain_row("backlog left by the enqueue phase", backlog);
    let n = fill.enqueue.ok;
    drain_row(&format!("{n} runs: while they were enqueued"), &fill.during);
    drain_row(&format!("{n} runs: after the last 202"), &fill.after);
    drain_row(&format!("{n} runs: first invoke to empty queue"), &fill.whole);
    println!(
        "\nenqueuing the {n} runs took {:.2} s ({:.0}/s, {} errors{}); upstream calls in all: {upstream_calls}",
        fill.enqueue_secs,
        n as f64 / fill.enqueue_secs,
        fill.enqueue.errors,
        fill.enqueue
            .first_error
            .as_ref()
            .map_or(String::new(), |e| format!(", first: {e}")),
    );
}

fn main() {
    let settings = settings();
    // Two workers: clients and upstream share the machine with the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let calls = Arc::new(AtomicU64::new(0));
        let server = Server::start(
            &start_upstream(calls.clone()).await,
            &["rest-json"],
            "QUEUE_CRM_TOKEN",
            SETUP_TIMEOUT,
        )
        .await;
        install(&server).await;
        let sync = rate(&server, SYNC, StatusCode::OK, &settings).await;
        let enqueue = rate(&server, ENQUEUE, StatusCode::ACCEPTED, &settings).await;
        let enqueued = server.counts(ENQUEUE).await;
        let backlog = drain(&server, ENQUEUE, enqueued).await;
        let fill = fill_and_drain(&server, &settings).await;
        print_rates(&settings, &sync, &enqueue);
        println!(
            "meanwhile the engine finished {} of the {} async runs (warm-up included)",
            enqueued.succeeded + enqueued.failed,
            enqueued.succeeded + enqueued.failed + enqueued.pending
        );
        print_drains(&backlog, &fill, calls.load(Ordering::Relaxed));
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}
