//! Load benchmark: throughput and latency of the real `plugboard serve`
//! process under concurrent clients, next to a plain hyper reverse proxy and
//! `wasmtime serve` measured in the same run against the same upstream.
//!
//! Every phase sends the same `POST` with the same small JSON body and a
//! bearer token from `LOAD_CLIENTS` concurrent clients (default 16), each on
//! its own kept-alive connection, for `LOAD_SECONDS` (default 10) after a
//! one-second warm-up that is not counted:
//! 1. **Plugboard**: `target/release/plugboard serve` on a temp folder, with
//!    one active integration: field-map -> rest-json `post` (one callout to the
//!    upstream) -> field-map, `save_payloads = false`.
//! 2. **Baseline**: a hyper server in this process forwarding each request
//!    with a pooled hyper-util client to the same upstream path, returning the
//!    upstream's answer. It does what Plugboard does minus the plugins, the
//!    policy, the token check and the run record: the ratios are the price of
//!    those.
//! 3. **Peer**: `wasmtime serve` (wasmtime-cli at the host's wasmtime
//!    version, installed into `.tools/wasmtime` by `scripts/bench-tools.sh`)
//!    running `plugins/bench/wasi-http-peer`, one wasi:http component doing
//!    the same work: parse, map, one bearer-authenticated POST to the same
//!    upstream, map, answer. It is what a user would write without a host
//!    such as Plugboard; the phase is skipped with a note when the tool is
//!    missing.
//!
//! Besides the phases, the bench runs the same three plugin calls in this
//! process on one thread for 3 s (`pipeline::run` against the same upstream,
//! no HTTP server, no token, no run record) and takes that thread's CPU time
//! per run: *host overhead* is the server's CPU per request minus that.
//! The server runs as a separate process (not `Host` in-process) so its CPU
//! time is its own and not mixed with the clients'.
//!
//! The upstream is a minimal hyper server in this process; it answers 404 to
//! any other path, so a wrong route shows up as errors, not speed.
//! `requests/s` counts 2xx answers only; p50/p99 are over those; `errors` is
//! any other status, a transport failure or a request over 5 s. CPU is
//! CPU time over wall time, in cores, for the server process and for this
//! process (clients, upstream and, in the baseline, the proxy): a sum near
//! the machine's core count means the run was CPU-bound, and everything
//! shares those cores. The server logs each request at `info` as it does by
//! default (to /dev/null here); set `PLUGBOARD_LOG=warn` to leave that out.
//!
//! Run with `cargo bench -p plugboard-tests --bench load` after
//! `cargo build --release`, `bash scripts/build-plugins.sh target/plugins` and
//! `bash scripts/bench-tools.sh` (or `make bench`).

use std::convert::Infallible;
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

mod common;

use common::{HttpClient, Server, client, cpu_seconds, env_or, ms, send, thread_cpu_seconds};
use plugboard::config::Config;
use plugboard::integrations::definition::Definition;
use plugboard::integrations::pipeline::{self, RunContext};
use plugboard::integrations::validate;
use plugboard_tests::{credential, plugin_file, repo_root, secret_ref};

const INTEGRATION: &str = "load";
/// The credential's base path plus the path the input processor sets.
const UPSTREAM_PATH: &str = "/api/v1/customers";
const UPSTREAM_REPLY: &str = r#"{"id": 42, "status": "created"}"#;
const BODY: &str = r#"{"name": "Ada Lovelace", "email": "ada@example.com"}"#;
const WARM_UP: Duration = Duration::from_secs(1);
/// Bound on every setup step: start-up (compiles two plugins), readiness, exit.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

struct Settings {
    clients: usize,
    duration: Duration,
}

fn settings() -> Settings {
    Settings {
        clients: env_or("LOAD_CLIENTS", 16) as usize,
        duration: Duration::from_secs(env_or("LOAD_SECONDS", 10)),
    }
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// Serves HTTP/1.1 on `listener`, answering every request with `handle`.
fn spawn_server<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            let service = hyper::service::service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    (listener, format!("http://{addr}"))
}

/// The external system: reads the body, answers `UPSTREAM_REPLY` on
/// `POST UPSTREAM_PATH` and 404 elsewhere. Returns its base URL.
async fn start_upstream() -> String {
    let (listener, url) = bind().await;
    spawn_server(listener, |req: Request<Incoming>| async move {
        let expected = req.method() == Method::POST && req.uri().path() == UPSTREAM_PATH;
        let _ = req.into_body().collect().await;
        match expected {
            true => respond(StatusCode::OK, Bytes::from_static(UPSTREAM_REPLY.as_bytes())),
            false => respond(
                StatusCode::NOT_FOUND,
                Bytes::from_static(br#"{"error": "wrong path"}"#),
            ),
        }
    });
    url
}

/// The baseline: forwards every request's body to the upstream path on a
/// pooled client and returns the upstream's status and body. Returns its URL.
async fn start_proxy(upstream: &str) -> String {
    let (listener, url) = bind().await;
    let target: Uri = format!("{upstream}{UPSTREAM_PATH}")
        .parse()
        .expect("upstream URI");
    let pool = client();
    spawn_server(listener, move |req: Request<Incoming>| {
        forward(pool.clone(), target.clone(), req)
    });
    url
}

/// The proxy's handler: the request body to `target`, the answer back.
async fn forward(pool: HttpClient, target: Uri, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let bad_gateway = |e: String| respond(StatusCode::BAD_GATEWAY, Bytes::from(e));
    let Ok(body) = req.into_body().collect().await else {
        return respond(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let request = Request::post(target)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.to_bytes()))
        .expect("request");
    let answer = match pool.request(request).await {
        Ok(answer) => answer,
        Err(e) => return bad_gateway(e.to_string()),
    };
    let status = answer.status();
    match answer.into_body().collect().await {
        Ok(b) => respond(status, b.to_bytes()),
        Err(e) => bad_gateway(e.to_string()),
    }
}

fn definition() -> Value {
    json!({
        "name": INTEGRATION,
        "connector": {"plugin": "rest-json", "operation": "post"},
        "input_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/name", "to": "/body/name", "required": true},
            {"from": "/email", "to": "/body/email"},
            {"from": "/nothing", "to": "/path", "default": "/v1/customers"}]}},
        "output_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/body/id", "to": "/id"}, {"from": "/status", "to": "/upstream_status"}]}},
        "bindings": {"api": "crm"},
        "save_payloads": false
    })
}

/// Creates and activates the integration, then checks one invocation.
async fn install_integration(server: &Server) -> String {
    server
        .admin(Method::POST, "/v1/integrations", Some(definition()), 201)
        .await;
    let path = format!("/v1/integrations/{INTEGRATION}/activate");
    server.admin(Method::POST, &path, None, 200).await;
    let invoke = format!("{}/v1/integrations/{INTEGRATION}/invoke", server.url);
    let body = Some(Bytes::from_static(BODY.as_bytes()));
    let (status, out) = send(&client(), Method::POST, &invoke, &server.admin, body)
        .await
        .unwrap_or_else(|e| panic!("the first invocation failed: {e}"));
    let out: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert_eq!(
        status,
        StatusCode::OK,
        "the first invocation answered {status}: {out}"
    );
    assert_eq!(
        out,
        json!({"id": 42, "upstream_status": 200}),
        "unexpected output"
    );
    invoke
}

/// One client's counts and latencies.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

/// One client: requests back to back on its own kept-alive connection
/// until `until`; a request started before `until` may end up to 5 s later.
async fn client_loop(uri: Arc<str>, token: Arc<str>, until: Instant) -> Tally {
    let (client, mut tally) = (client(), Tally::default());
    while Instant::now() < until {
        let start = Instant::now();
        let body = Some(Bytes::from_static(BODY.as_bytes()));
        match send(&client, Method::POST, &uri, &token, body).await {
            Ok((status, _)) if status.is_success() => {
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

/// Runs `clients` client loops for `duration` and merges their tallies.
async fn drive(uri: &str, token: &str, clients: usize, duration: Duration) -> Tally {
    let (uri, token): (Arc<str>, Arc<str>) = (uri.into(), token.into());
    let until = Instant::now() + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client_loop(uri.clone(), token.clone(), until)))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.expect("client task");
        (total.ok, total.errors) = (total.ok + t.ok, total.errors + t.errors);
        total.latencies.extend(t.latencies);
        total.first_error = total.first_error.or(t.first_error);
    }
    total
}

/// What one phase measured.
struct Report {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    server_cores: Option<f64>,
    bench_cores: f64,
}

/// Warm-up, then the measured run, with CPU use of `server` (if any) and of
/// this process over the measured part.
async fn phase(uri: &str, token: &str, settings: &Settings, server: Option<u32>) -> Report {
    drive(uri, token, settings.clients, WARM_UP).await;
    let me = std::process::id();
    let cpu_before = (server.map(cpu_seconds), cpu_seconds(me));
    let start = Instant::now();
    let mut tally = drive(uri, token, settings.clients, settings.duration).await;
    let wall = start.elapsed().as_secs_f64();
    assert!(
        tally.ok > 0,
        "no request succeeded at {uri}: {:?}",
        tally.first_error
    );
    tally.latencies.sort();
    let pick = |q: usize| tally.latencies[(tally.latencies.len() * q / 100).min(tally.latencies.len() - 1)];
    Report {
        per_sec: tally.ok as f64 / wall,
        p50: pick(50),
        p99: pick(99),
        ok: tally.ok,
        errors: tally.errors,
        server_cores: server
            .zip(cpu_before.0)
            .map(|(pid, before)| (cpu_seconds(pid) - before) / wall),
        bench_cores: (cpu_seconds(me) - cpu_before.1) / wall,
        first_error: tally.first_error,
    }
}

/// A field of /proc/PID/status in MiB (`VmRSS`, `VmHWM`).
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: f64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a size in kB");
    kib / 1024.0
}

/// Sanity: the runs were recorded. Returns the latest run's status.
async fn latest_run(server: &Server) -> String {
    let path = format!("/v1/runs?integration={INTEGRATION}&limit=1");
    let runs = server.admin(Method::GET, &path, None, 200).await;
    let run = &runs["runs"][0];
    assert!(run.is_object(), "no run recorded for `{INTEGRATION}`: {runs}");
    run["status"].as_str().unwrap_or("?").to_string()
}

/// Sends SIGTERM and waits (bounded) for a clean exit.
async fn stop(mut server: Server) {
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run `kill`");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait().expect("wait for the server") {
            assert!(status.success(), "the server exited with {status} after SIGTERM");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not exit within 60 s of SIGTERM");
}

/// What was read from the server besides the load figures.
struct ServerFacts {
    /// Status of the latest recorded run.
    latest_run: String,
    /// RSS after start-up and the integration's first call, MiB.
    idle_mib: f64,
    /// Peak RSS (VmHWM) before stopping, MiB.
    peak_mib: f64,
}

/// Plugboard's phase, from start to a clean stop.
async fn plugboard_phase(upstream: &str, settings: &Settings) -> (Report, ServerFacts) {
    let server = Server::start(
        upstream,
        &["rest-json", "field-map"],
        "LOAD_CRM_TOKEN",
        SETUP_TIMEOUT,
    )
    .await;
    let pid = server.child.id();
    let invoke = install_integration(&server).await;
    let idle_mib = memory_mib(pid, "VmRSS");
    let report = phase(&invoke, &server.admin, settings, Some(pid)).await;
    let latest_run = latest_run(&server).await;
    let peak_mib = memory_mib(pid, "VmHWM");
    stop(server).await;
    let facts = ServerFacts {
        latest_run,
        idle_mib,
        peak_mib,
    };
    (report, facts)
}

/// The three plugin calls alone: the integration's pipeline run in this
/// process without the server (no HTTP, token check, admission or run
/// record), one run at a time on a thread of its own, for `duration`.
/// Returns that thread's CPU time per run; the upstream runs on the main
/// runtime's threads, so its work is not counted.
fn plugin_calls_alone(upstream: &str, duration: Duration) -> Duration {
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async move {
            let dir = tempfile::tempdir().expect("temp dir");
            for p in ["rest-json", "field-map"] {
                std::fs::copy(plugin_file(p), dir.path().join(format!("{p}.wasm"))).expect("copy plugin");
            }
            let toml = format!(
                "base_url = \"{upstream}/api\"\nallowed_plugins = [\"rest-json\"]\n\
                 auth = {{ type = \"bearer\", token = \"{}\" }}",
                secret_ref("bench-secret")
            );
            let mut config = Config {
                plugin_dir: dir.path().to_path_buf(),
                data_dir: repo_root().join("target/test-data"),
                ..Config::default()
            };
            config.credentials.insert("crm".into(), credential("crm", &toml));
            let registry = plugboard::host::open_registry(config).await.expect("registry");
            let def = Definition::from_json(definition()).expect("the definition parses");
            let plugins = validate::resolve(&def, &registry, registry.sandbox().policy())
                .unwrap_or_else(|p| panic!("the integration does not resolve: {p:?}"));
            let ctx = RunContext {
                run_id: "bench".into(),
                attempt: 1,
            };
            let once = || pipeline::run(registry.sandbox(), &def, &plugins, BODY.to_string(), &ctx);
            let warm = Instant::now() + WARM_UP;
            while Instant::now() < warm {
                once().await;
            }
            let (cpu, until, mut runs) = (thread_cpu_seconds(), Instant::now() + duration, 0u32);
            while Instant::now() < until {
                let result = once().await;
                let output = result
                    .output
                    .unwrap_or_else(|f| panic!("a pipeline run failed: {:?}", f.error));
                let output: Value = serde_json::from_str(&output).unwrap_or(Value::Null);
                assert_eq!(
                    output,
                    json!({"id": 42, "upstream_status": 200}),
                    "unexpected output"
                );
                runs += 1;
            }
            Duration::from_secs_f64((thread_cpu_seconds() - cpu) / f64::from(runs.max(1)))
        })
    })
    .join()
    .expect("the plugin-call thread")
}

/// The `wasmtime` binary of the host's wasmtime version that
/// `scripts/bench-tools.sh` installs, if it is there.
fn wasmtime_cli() -> Option<std::path::PathBuf> {
    let bin = repo_root().join(".tools/wasmtime/bin/wasmtime");
    bin.exists().then_some(bin)
}

/// `wasmtime serve` running the peer component (the same work in one
/// wasi:http component, `plugins/bench/wasi-http-peer`) on a free loopback
/// port; killed on drop.
struct Peer {
    child: std::process::Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_peer(wasmtime: &std::path::Path, upstream: &str) -> Peer {
    let component = repo_root().join("target/plugins-bench/wasi-http-peer.wasm");
    assert!(
        component.exists(),
        "{} is missing: run `bash scripts/build-plugins.sh target/plugins`",
        component.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(wasmtime)
        .arg("serve")
        .arg(format!("--addr=127.0.0.1:{port}"))
        .args(["-Scli", "--env"])
        .arg(format!("UPSTREAM_URL={upstream}{UPSTREAM_PATH}"))
        .args(["--env", "UPSTREAM_TOKEN=bench-secret"])
        .arg(&component)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", wasmtime.display()));
    let peer = Peer {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    };
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let body = || Some(Bytes::from_static(BODY.as_bytes()));
    loop {
        match send(&client(), Method::POST, &peer.url, "-", body()).await {
            Ok((status, out)) if status == StatusCode::OK => {
                let out: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
                assert_eq!(
                    out,
                    json!({"id": 42, "upstream_status": 200}),
                    "the peer's output"
                );
                return peer;
            }
            outcome if Instant::now() > deadline => panic!("`wasmtime serve` never answered: {outcome:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn row(name: &str, clients: usize, r: &Report) {
    let server = r.server_cores.map_or("-".to_string(), |c| format!("{c:.2}"));
    println!(
        "| {name} | {clients} | {:.0} | {} | {} | {} | {} | {server} | {:.2} |",
        r.per_sec,
        ms(r.p50),
        ms(r.p99),
        r.ok,
        r.errors,
        r.bench_cores
    );
}

/// Everything one run of the bench measured.
struct Results {
    plugboard: Report,
    baseline: Report,
    peer: Option<Report>,
    plugin_calls: Duration,
    facts: ServerFacts,
}

fn print_phases(settings: &Settings, r: &Results) {
    let secs = settings.duration.as_secs();
    println!("\n## load: {} clients, {secs} s per phase\n", settings.clients);
    println!(
        "| target | clients | requests/s | p50 | p99 | ok | errors | CPU server (cores) | CPU bench process (cores) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let n = settings.clients;
    row(
        "Plugboard: field-map -> rest-json post -> field-map",
        n,
        &r.plugboard,
    );
    row("baseline: hyper reverse proxy, same upstream", n, &r.baseline);
    if let Some(peer) = &r.peer {
        row(
            "peer: `wasmtime serve`, the same work in one wasi:http component",
            n,
            peer,
        );
    }
    let phases = [
        ("Plugboard", Some(&r.plugboard)),
        ("baseline", Some(&r.baseline)),
        ("peer", r.peer.as_ref()),
    ];
    for (name, report) in phases {
        if let Some(e) = report.and_then(|r| r.first_error.as_ref()) {
            println!("\n{name}: first error: {e}");
        }
    }
}

/// Server CPU time per answered request.
fn cpu_per_request(r: &Report) -> Option<Duration> {
    r.server_cores
        .map(|cores| Duration::from_secs_f64(cores / r.per_sec.max(f64::MIN_POSITIVE)))
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn print_summary(r: &Results) {
    let (plugboard, baseline) = (&r.plugboard, &r.baseline);
    let p50 = plugboard.p50.as_secs_f64() / baseline.p50.as_secs_f64();
    println!("\n| measure | value |\n|---|---|");
    println!(
        "| requests/s, Plugboard / baseline | {:.2}x |",
        plugboard.per_sec / baseline.per_sec
    );
    println!("| p50, Plugboard / baseline | {p50:.2}x |");
    match &r.peer {
        Some(peer) => println!(
            "| requests/s, Plugboard / `wasmtime serve` | {:.2}x |",
            plugboard.per_sec / peer.per_sec
        ),
        None => println!(
            "| requests/s, Plugboard / `wasmtime serve` | not measured: run `bash scripts/bench-tools.sh` (installs wasmtime-cli into .tools/wasmtime) |"
        ),
    }
    println!(
        "| the three plugin calls alone, CPU per run | {} |",
        us(r.plugin_calls)
    );
    if let Some(cpu) = cpu_per_request(plugboard) {
        println!("| Plugboard server CPU per request | {} |", us(cpu));
        let overhead = cpu.saturating_sub(r.plugin_calls);
        println!(
            "| host overhead per request (server CPU minus the plugin calls alone) | {} |",
            us(overhead)
        );
    }
    if let Some(cpu) = r.peer.as_ref().and_then(cpu_per_request) {
        println!("| `wasmtime serve` CPU per request | {} |", us(cpu));
    }
    let facts = &r.facts;
    println!("| server RSS after start-up | {:.1} MiB |", facts.idle_mib);
    println!("| server peak RSS (VmHWM) | {:.1} MiB |", facts.peak_mib);
    println!("| latest recorded run (`GET /v1/runs`) | {} |", facts.latest_run);
}

fn main() {
    let settings = settings();
    // Two workers: clients, upstream and proxy share the machine with the server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let upstream = start_upstream().await;
        let up = upstream.clone();
        let plugin_calls =
            tokio::task::spawn_blocking(move || plugin_calls_alone(&up, Duration::from_secs(3)))
                .await
                .expect("the plugin calls alone");
        let (plugboard, facts) = plugboard_phase(&upstream, &settings).await;
        let proxy = start_proxy(&upstream).await;
        let baseline = phase(&proxy, "baseline-token", &settings, None).await;
        let peer = match wasmtime_cli() {
            Some(bin) => {
                let peer = start_peer(&bin, &upstream).await;
                let pid = peer.child.id();
                Some(phase(&peer.url, "-", &settings, Some(pid)).await)
            }
            None => None,
        };
        let results = Results {
            plugboard,
            baseline,
            peer,
            plugin_calls,
            facts,
        };
        print_phases(&settings, &results);
        print_summary(&results);
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}
