//! Shared fixtures for Plugboard's end-to-end tests and benchmarks: a
//! recording HTTP server on loopback standing in for an external system, the
//! locations of the built plugins, and a host assembled on a temp folder.
//!
//! Nothing here stands in for a part of the host: the host under test is the
//! real library with the real engine, plugins and sockets.

pub mod oauth_server;
pub mod tls_server;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use plugboard::config::{Config, credential_from_raw};
use plugboard::plugins::Registry;

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Folder holding the built example plugins.
pub fn example_plugins() -> PathBuf {
    std::env::var_os("PLUGBOARD_EXAMPLE_PLUGINS")
        .map_or_else(|| repo_root().join("target/plugins"), PathBuf::from)
}

/// Folder holding the built test-only plugins.
pub fn testing_plugins() -> PathBuf {
    repo_root().join("target/plugins-testing")
}

/// Path of a built plugin, example or test-only; panics with the build
/// command when it is missing.
pub fn plugin_file(name: &str) -> PathBuf {
    let file = format!("{name}.wasm");
    for dir in [example_plugins(), testing_plugins()] {
        if dir.join(&file).exists() {
            return dir.join(&file);
        }
    }
    panic!(
        "plugin `{file}` is not built: run `make test` (or `bash scripts/build-plugins.sh target/plugins`)"
    );
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query.
    pub query: Option<String>,
    /// Headers, lowercase names.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Bytes,
    /// The client's address: the same one on several requests means the
    /// connection was kept alive and reused.
    pub peer: SocketAddr,
}

/// A loopback HTTP server that records every request and answers by path
/// (the routes match anywhere in the path, under any base path):
/// - `/status/{code}`: that status, JSON body `{"status": code}`; with the
///   query `?retry_after=N`, also a `Retry-After: N` header
/// - `/slow/{ms}`: waits, then 200
/// - `/big/{bytes}`: a body of that many bytes
/// - `/redirect?to={url}`: 302 to that URL
/// - `/reflect`: 200 reflecting everything it received, as a careless server
///   or a `TRACE`-answering proxy would: every header and the full URL in the
///   JSON body, the `Authorization` header and the URL back in response
///   headers, and a `Set-Cookie` session
/// - `/redirect-away`: 302 to another origin, carrying the request's whole
///   query (an API key placed there included)
/// - anything else: 200 with a JSON echo of the request
#[derive(Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let record = record.clone();
                let service = hyper::service::service_fn(move |req| {
                    let record = record.clone();
                    async move { Ok::<_, Infallible>(answer(req, peer, &record).await) }
                });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Upstream { addr, seen }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    peer: SocketAddr,
    record: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let seen = Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers,
        body,
        peer,
    };
    record.lock().expect("seen lock").push(seen.clone());
    let json = |status: u16, v: serde_json::Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())))
            .expect("response")
    };
    // Routes match anywhere in the path, so they work under a base path.
    let rest = |marker: &str| path.split_once(marker).map(|(_, r)| r.to_string());
    if let Some(code) = rest("/status/").and_then(|c| c.parse::<u16>().ok()) {
        let mut response = json(code, serde_json::json!({"status": code}));
        let retry_after = query.as_deref().and_then(|q| q.strip_prefix("retry_after="));
        if let Some(v) = retry_after.and_then(|v| v.parse().ok()) {
            response.headers_mut().insert("retry-after", v);
        }
        return response;
    }
    if let Some(ms) = rest("/slow/").and_then(|c| c.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return json(200, serde_json::json!({"slept_ms": ms}));
    }
    if let Some(n) = rest("/big/").and_then(|c| c.parse::<usize>().ok()) {
        return Response::new(Full::new(Bytes::from(vec![b'x'; n])));
    }
    if path.ends_with("/reflect") {
        let url = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let mut response = json(
            200,
            serde_json::json!({"method": seen.method, "url": url, "headers": seen.headers,
                "next": format!("http://127.0.0.1/next{url}")}),
        );
        let h = response.headers_mut();
        if let Some(v) = seen.headers.get("authorization").and_then(|v| v.parse().ok()) {
            h.insert("x-echo-authorization", v);
        }
        if let Ok(v) = url.parse() {
            h.insert("content-location", v);
        }
        h.insert(
            "set-cookie",
            "session=minted-from-the-credential; HttpOnly"
                .parse()
                .expect("cookie"),
        );
        return response;
    }
    if path.ends_with("/redirect-away") {
        let to = format!(
            "http://elsewhere.invalid/landing?{}",
            query.as_deref().unwrap_or("")
        );
        return Response::builder()
            .status(302)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .expect("response");
    }
    if path.ends_with("/redirect") {
        let to = query
            .as_deref()
            .and_then(|q| q.strip_prefix("to="))
            .unwrap_or("/");
        return Response::builder()
            .status(302)
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .expect("response");
    }
    json(
        200,
        serde_json::json!({
            "method": seen.method, "path": seen.path, "query": seen.query,
            "body": String::from_utf8_lossy(&seen.body),
        }),
    )
}

/// Builds a validated credential from TOML (`base_url = ...` etc.). The
/// loopback upstreams speak plain http, so `allow_http = true` is added, and
/// `allowed_plugins = ["*"]` unless the TOML lists plugins itself.
pub fn credential(name: &str, toml_text: &str) -> plugboard::credentials::NamedCredential {
    let mut text = format!("allow_http = true\n{toml_text}");
    if !toml_text.contains("allowed_plugins") {
        text = format!("allowed_plugins = [\"*\"]\n{text}");
    }
    let raw = toml::from_str(&text).expect("credential TOML parses");
    credential_from_raw(name, raw).unwrap_or_else(|e| panic!("credential `{name}`: {e:?}"))
}

/// The config of a host on a fresh temp plugin folder (deleted when the
/// returned folder drops) holding these plugins, with these credentials and
/// the shared data folder `target/test-data`, whose compile cache compiles
/// each plugin once per test run. A test that needs a store of its own sets
/// `data_dir` to a folder of its own.
pub fn test_config(
    plugins: &[&str],
    credentials: Vec<plugboard::credentials::NamedCredential>,
) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().expect("temp dir");
    for p in plugins {
        std::fs::copy(plugin_file(p), dir.path().join(format!("{p}.wasm"))).expect("copy plugin");
    }
    let mut config = Config {
        plugin_dir: dir.path().to_path_buf(),
        data_dir: repo_root().join("target/test-data"),
        credentials: credentials
            .into_iter()
            .map(|c| (c.name().to_string(), c))
            .collect(),
        ..Config::default()
    };
    // Small pools: many tests run side by side, each with its own engine.
    config.sandbox.max_instances = 16;
    (dir, config)
}

/// Plugins on their own temp folder, loaded by the library's
/// [`build_registry`](plugboard::host::build_registry) (the sandbox and
/// callout policy a served host has) over the shared compile cache, so each
/// plugin is compiled once per test run.
pub struct TestHost {
    /// The plugin folder (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The registry over it.
    pub registry: Arc<Registry>,
}

impl TestHost {
    /// A host with these plugins copied in and these credentials.
    pub async fn new(
        plugins: &[&str],
        credentials: Vec<plugboard::credentials::NamedCredential>,
    ) -> TestHost {
        TestHost::with_config(plugins, credentials, |_| {}).await
    }

    /// Like [`TestHost::new`], letting the test adjust the config first.
    pub async fn with_config(
        plugins: &[&str],
        credentials: Vec<plugboard::credentials::NamedCredential>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestHost {
        let (dir, mut config) = test_config(plugins, credentials);
        adjust(&mut config);
        let registry = plugboard::host::build_registry(config).expect("registry");
        registry.scan().await;
        TestHost { dir, registry }
    }

    /// The plugin named `name`; panics listing load errors when absent.
    pub fn plugin(&self, name: &str) -> Arc<plugboard::plugins::Plugin> {
        self.registry
            .get(name)
            .unwrap_or_else(|| panic!("plugin `{name}` not loaded: {:?}", self.registry.files()))
    }
}

/// Writes `value` to a fresh file and returns its `file:` reference, so tests
/// exercise secret references the way operators use them.
pub fn secret_ref(value: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("plugboard-test-secret-{}-{n}", std::process::id()));
    std::fs::write(&path, format!("{value}\n")).expect("write secret file");
    format!("file:{}", path.display())
}

/// The `plugboard` binary under test (`PLUGBOARD_BIN`, or the release
/// build); panics with the command that builds it when missing.
pub fn plugboard_binary() -> PathBuf {
    let bin = std::env::var_os("PLUGBOARD_BIN")
        .map_or_else(|| repo_root().join("target/release/plugboard"), PathBuf::from);
    assert!(
        bin.exists(),
        "`{}` is missing: run `make test`, which builds it",
        bin.display()
    );
    bin
}
