//! `plugboard serve` as a real process on a loopback port, for the test
//! modules that drive the server over HTTP.
//!
//! Each server runs in its own temp folder (config, `plugins.d`, `data`), so
//! a test can stop it and start it again on the same folder. Its stdout and
//! stderr go to `serve.log` in that folder (appended across restarts), so a
//! test can read what the host logged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use plugboard_tests::{Upstream, plugin_file, secret_ref};
use serde_json::Value;

/// Environment variables the host reads that must come from the test, not
/// from whoever runs it.
const HOST_ENV: [&str; 6] = [
    "PLUGBOARD_SECRET_KEY",
    "PLUGBOARD_SECRET_KEY_FILE",
    "PLUGBOARD_PUBLIC_URL",
    "PLUGBOARD_LISTEN",
    "PLUGBOARD_CONFIG",
    "PLUGBOARD_LOG",
];

/// How to start the process: extra environment variables and arguments.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    env: Vec<(String, String)>,
    args: Vec<String>,
    listen: Option<String>,
}

impl Launch {
    /// Sets an environment variable of the process (`PLUGBOARD_SECRET_KEY`, ...).
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Adds arguments after `serve` (`--public-url URL`, ...).
    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Listens on this address instead of `127.0.0.1:0`.
    pub fn listen(mut self, addr: &str) -> Launch {
        self.listen = Some(addr.into());
        self
    }
}

/// A running `plugboard serve` on its own folders.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// An admin token.
    pub admin: String,
    /// The folder it runs in (its working directory).
    pub dir: tempfile::TempDir,
    launch: Launch,
}

/// A start that ended before the server listened.
pub struct Exited {
    /// The folder, to start again on.
    pub dir: tempfile::TempDir,
    /// How the process ended.
    pub status: ExitStatus,
    /// What it wrote to stdout and stderr.
    pub output: String,
}

impl Server {
    /// Starts a server whose credential `crm` (from the config file) points at `up`.
    pub async fn start(up: &Upstream) -> Server {
        let dir = tempfile::tempdir().unwrap();
        install_plugins(dir.path(), &["rest-json", "field-map"]);
        let config = format!(
            "data_dir = \"data\"\n[credentials.crm]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n",
            up.url(),
            secret_ref("srv-token-1")
        );
        std::fs::write(dir.path().join("plugboard.toml"), config).unwrap();
        Server::spawn(dir, None).await
    }

    /// Starts a server on `dir` (which holds `plugboard.toml`); `admin` is
    /// the token a previous start printed.
    pub async fn spawn(dir: tempfile::TempDir, admin: Option<String>) -> Server {
        Server::spawn_with(dir, admin, Launch::default()).await
    }

    /// Like [`Server::spawn`], with extra environment and arguments.
    pub async fn spawn_with(dir: tempfile::TempDir, admin: Option<String>, launch: Launch) -> Server {
        match Server::try_spawn(dir, admin, launch).await {
            Ok(server) => server,
            Err(e) => panic!("the server exited before listening ({}):\n{}", e.status, e.output),
        }
    }

    /// Starts a server, or returns how it ended when it exits before listening.
    pub async fn try_spawn(
        dir: tempfile::TempDir,
        admin: Option<String>,
        launch: Launch,
    ) -> Result<Server, Exited> {
        let log = log_path(dir.path());
        let start = std::fs::metadata(&log).map_or(0, |m| m.len());
        let out = OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let listen = launch.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into());
        let mut command = Command::new(plugboard_tests::plugboard_binary());
        command
            .args(["--config", "plugboard.toml", "serve", "--listen", &listen])
            .args(&launch.args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(out.try_clone().unwrap()));
        clean_env(&mut command, &launch.env);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let banner = tokio::task::spawn_blocking(move || read_banner(stdout, out))
            .await
            .unwrap();
        let Some((url, token)) = banner else {
            let status = child.wait().unwrap();
            let output = read_from(&log, start);
            return Err(Exited { dir, status, output });
        };
        let server = Server {
            child,
            url,
            admin: admin.or(token).expect("an admin token"),
            dir,
            launch,
        };
        server.wait_ready().await;
        Ok(server)
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.call("GET", "/readyz", None, None).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server never became ready");
    }

    /// Sends a request; returns status, run id header and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let run = resp
            .headers()
            .get("plugboard-run-id")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, run, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Sends a request with the admin token; returns status and JSON body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let (s, _, v) = self
            .call(method, path, Some(&self.admin.clone()), text.as_deref())
            .await;
        (s, v)
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> (tempfile::TempDir, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, std::mem::take(&mut self.admin))
    }

    /// Stops the server and starts it again on the same folder, the same
    /// way it was started.
    pub async fn restart(self) -> Server {
        let launch = self.launch.clone();
        let (dir, admin) = self.stop();
        Server::spawn_with(dir, Some(admin), launch).await
    }

    /// Everything the process (and earlier starts on this folder) wrote.
    pub fn log(&self) -> String {
        read_from(&log_path(self.dir.path()), 0)
    }

    /// Runs another `plugboard` command on this server's folder.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        plugboard_in(self.dir.path(), args, env)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies built plugins into `dir/plugins.d`.
pub fn install_plugins(dir: &Path, plugins: &[&str]) {
    std::fs::create_dir_all(dir.join("plugins.d")).unwrap();
    for p in plugins {
        std::fs::copy(plugin_file(p), dir.join(format!("plugins.d/{p}.wasm"))).unwrap();
    }
}

/// The file a server on `dir` writes its stdout and stderr to.
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("serve.log")
}

/// Runs `plugboard --config plugboard.toml ARGS` in `dir` with only the
/// host environment variables given here.
pub fn plugboard_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(plugboard_tests::plugboard_binary());
    command
        .args(["--config", "plugboard.toml"])
        .args(args)
        .current_dir(dir);
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    clean_env(&mut command, &env);
    command.output().unwrap()
}

fn clean_env(command: &mut Command, env: &[(String, String)]) {
    for name in HOST_ENV {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap().min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Reads the startup lines: the listening address and, on a new store, the
/// admin token; copies every line to `log`. `None` when the process exits
/// before listening.
fn read_banner(stdout: std::process::ChildStdout, mut log: File) -> Option<(String, Option<String>)> {
    let mut lines = BufReader::new(stdout).lines();
    let mut token = None;
    while let Some(Ok(line)) = lines.next() {
        writeln!(log, "{line}").unwrap();
        if let Some(t) = line.trim().strip_prefix("pb_") {
            token = Some(format!("pb_{t}"));
        }
        if let Some(url) = line.strip_prefix("plugboard listening on ") {
            // Keep draining stdout into the log, so the process never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                }
            });
            return Some((url.trim().to_string(), token));
        }
    }
    None
}

/// POSTs `body` as JSON to `base` + `path` with a bearer token; returns the
/// status, or 0 when no answer came. For tests that send from many tasks.
pub async fn post_json(base: &str, path: &str, token: &str, body: &str) -> u16 {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

/// A reply: status, headers, JSON body (`Null` when the body is not JSON).
pub type Reply = (u16, http::HeaderMap, Value);

/// Sends `method path` with a bearer `token`, extra `headers` and an
/// optional JSON `body`.
pub async fn request(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url))
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = client
        .request(req.body(Full::new(Bytes::from(text))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates and activates an integration from its definition.
pub async fn activate(server: &Server, definition: Value) {
    let name = definition["name"].as_str().unwrap().to_string();
    let (s, v) = server.admin("POST", "/v1/integrations", Some(definition)).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = server
        .admin("POST", &format!("/v1/integrations/{name}/activate"), None)
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Creates and activates `name`: rest-json `post` bound to `crm`, the input
/// passed through; `extra` adds fields such as `mode`, `async` or `sync`.
pub async fn define_rest_json(server: &Server, name: &str, extra: Value) {
    let mut definition = serde_json::json!({
        "name": name,
        "connector": {"plugin": "rest-json", "operation": "post"},
        "bindings": {"api": "crm"},
    });
    for (k, v) in extra.as_object().unwrap() {
        definition[k] = v.clone();
    }
    activate(server, definition).await;
}

/// A server with rest-json whose credential `crm` (bearer) points at `up`;
/// `extra` is config text placed before the credential's table (top-level
/// settings, or whole tables such as `[runs]`).
pub async fn rest_json_server(up: &Upstream, extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["rest-json"]);
    let config = format!(
        "data_dir = \"data\"\n{extra}\n[credentials.crm]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n",
        up.url(),
        secret_ref("srv-token")
    );
    std::fs::write(dir.path().join("plugboard.toml"), config).unwrap();
    Server::spawn(dir, None).await
}

/// An invoker token made with `plugboard tokens create NAME`, limited to
/// `integration` when given; returns its secret.
pub fn invoker_token(server: &Server, name: &str, integration: Option<&str>) -> String {
    let mut args = vec!["tokens", "create", name];
    if let Some(i) = integration {
        args.extend(["--integration", i]);
    }
    let out = server.cli(&args, &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .find(|w| w.starts_with("pb_"))
        .expect("the secret is printed")
        .to_string()
}
