//! What the server benchmarks share: the HTTP client, a `plugboard serve`
//! process on a temp folder, and CPU accounting. Each bench uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use plugboard_tests::{plugin_file, repo_root};
use serde_json::Value;

/// A pooled plain-HTTP client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Bound on one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A positive integer from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name}={v:?} is not a positive integer")),
        Err(_) => default,
    }
}

/// A new client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request with a JSON body; returns the status and the body.
pub async fn send(
    client: &HttpClient,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Bytes>,
) -> Result<(StatusCode, Bytes), String> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| format!("{e:?}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")))
}

/// A running `plugboard serve` on its own temp folder; killed on drop.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token it printed.
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the release binary on a temp folder holding `plugins` and a
    /// config whose credential `crm` points at `upstream` under `/api` (its
    /// token from `token_env`, set to a fixed value); waits until ready.
    pub async fn start(upstream: &str, plugins: &[&str], token_env: &str, setup: Duration) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("plugins.d")).expect("plugin folder");
        for p in plugins {
            std::fs::copy(plugin_file(p), dir.path().join(format!("plugins.d/{p}.wasm")))
                .expect("copy plugin");
        }
        let config = format!(
            "data_dir = \"data\"\n[credentials.crm]\nbase_url = \"{upstream}/api\"\n\
             allow_http = true\nallowed_plugins = [\"rest-json\"]\n\
             auth = {{ type = \"bearer\", token = \"env:{token_env}\" }}\n"
        );
        std::fs::write(dir.path().join("plugboard.toml"), config).expect("write config");
        // `PLUGBOARD_BIN` measures another build (an earlier commit, say) in
        // the same conditions.
        let binary = std::env::var_os("PLUGBOARD_BIN").map_or_else(
            || repo_root().join("target/release/plugboard"),
            std::path::PathBuf::from,
        );
        let mut child = Command::new(&binary)
            .args(["--config", "plugboard.toml", "serve", "--listen", "127.0.0.1:0"])
            .env(token_env, "bench-secret")
            .env("PLUGBOARD_LOG", "warn")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (run `cargo build --release`)",
                    binary.display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let banner = tokio::task::spawn_blocking(|| read_banner(stdout));
        let (url, admin) = tokio::time::timeout(setup, banner)
            .await
            .expect("the server printed no address in time")
            .expect("reading the server's start-up lines");
        let server = Server {
            child,
            url,
            admin,
            _dir: dir,
        };
        server.wait_ready(setup).await;
        server
    }

    async fn wait_ready(&self, setup: Duration) {
        let (client, deadline) = (client(), Instant::now() + setup);
        while Instant::now() < deadline {
            let ready = send(&client, Method::GET, &format!("{}/readyz", self.url), "", None).await;
            if matches!(ready, Ok((StatusCode::OK, _))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server at {} was not ready within {setup:?}", self.url);
    }

    /// An admin API call that must answer `want`; returns the JSON body.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let uri = format!("{}{path}", self.url);
        let (status, bytes) = send(&client(), method.clone(), &uri, &self.admin, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status.as_u16(), want, "{method} {path} answered {status}: {text}");
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}

/// Reads the start-up lines: the listening address and the admin token
/// printed on a new store; then drains the rest in the background.
fn read_banner(stdout: std::process::ChildStdout) -> (String, String) {
    let mut lines = BufReader::new(stdout).lines();
    let mut token = None;
    for line in lines.by_ref() {
        let line = line.expect("server stdout");
        if let Some(t) = line.trim().strip_prefix("pb_") {
            token = Some(format!("pb_{t}"));
        }
        if let Some(url) = line.strip_prefix("plugboard listening on ") {
            std::thread::spawn(move || for _ in lines {});
            let token = token.expect("the server printed no admin token before listening");
            return (url.trim().to_string(), token);
        }
    }
    panic!("the server exited before listening");
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) the calling thread has used so far, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/thread-self/stat")
}

/// The user + system time of a `/proc/.../stat` file, in seconds.
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    // Fields after the `(command)`: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A duration in milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
