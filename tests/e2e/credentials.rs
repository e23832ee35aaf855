//! Named credentials as managed objects, through the real `plugboard serve`:
//! the credentials API with write-only secrets, deletion and governance,
//! secrets sealed at rest under the operator's key (and that key's
//! mismatch, absence and rotation), `plugboard apply` beside a running
//! server, the OAuth consent flow and the connection test.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use plugboard_tests::Upstream;
use plugboard_tests::oauth_server::{OAuthServer, OAuthServerConfig};
use serde_json::{Value, json};

use crate::serve::{Launch, Server, install_plugins, plugboard_in};

/// A new operator key, from `plugboard credentials generate-key`.
pub(crate) fn generate_key() -> String {
    let out = Command::new(plugboard_tests::plugboard_binary())
        .args(["credentials", "generate-key"])
        .env_remove("PLUGBOARD_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starting with `PLUGBOARD_SECRET_KEY` set to `key`.
pub(crate) fn with_key(key: &str) -> Launch {
    Launch::default().env("PLUGBOARD_SECRET_KEY", key)
}

/// A server with the `rest-json` plugin, `config` as the rest of its config
/// file (after `data_dir`), started as `launch` says.
pub(crate) async fn serve(config: &str, launch: Launch) -> Server {
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["rest-json"]);
    std::fs::write(
        dir.path().join("plugboard.toml"),
        format!("data_dir = \"data\"\n{config}"),
    )
    .unwrap();
    Server::spawn_with(dir, None, launch).await
}

/// A bearer credential for `rest-json` on a plain-http loopback upstream.
pub(crate) fn bearer(base_url: &str, token: Option<&str>) -> Value {
    let mut auth = json!({"type": "bearer"});
    if let Some(t) = token {
        auth["token"] = json!(t);
    }
    json!({"base_url": base_url, "allow_http": true, "allowed_plugins": ["rest-json"], "auth": auth})
}

/// An integration that runs `rest-json` `get` with its `api` slot bound to `credential`.
pub(crate) fn rest_json(name: &str, credential: &str) -> Value {
    json!({
        "name": name,
        "connector": {"plugin": "rest-json", "operation": "get"},
        "bindings": {"api": credential}
    })
}

pub(crate) async fn put_credential(server: &Server, name: &str, body: Value) -> (u16, Value) {
    server
        .admin("PUT", &format!("/v1/credentials/{name}"), Some(body))
        .await
}

pub(crate) async fn get_credential(server: &Server, name: &str) -> (u16, Value) {
    server
        .admin("GET", &format!("/v1/credentials/{name}"), None)
        .await
}

pub(crate) use crate::serve::activate;

/// Invokes a `rest-json` integration that GETs `path`; returns status and body.
pub(crate) async fn invoke(server: &Server, name: &str, path: &str) -> (u16, Value) {
    let body = json!({ "path": path }).to_string();
    let (s, _, v) = server
        .call(
            "POST",
            &format!("/v1/integrations/{name}/invoke"),
            Some(&server.admin),
            Some(&body),
        )
        .await;
    (s, v)
}

/// The `authorization` header of the last request `up` received.
fn last_authorization(up: &Upstream) -> String {
    let seen = up.seen();
    let last = seen.last().expect("the upstream was called");
    last.headers.get("authorization").cloned().unwrap_or_default()
}

/// A GET that does not follow redirects, sending `cookie` as a browser
/// would: status, `location`, `set-cookie` and the body as text.
async fn browse(url: &str, cookie: Option<&str>) -> (u16, Option<String>, Option<String>, String) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = http::Request::get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (location, set_cookie) = (header("location"), header("set-cookie"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        set_cookie,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A GET that does not follow redirects: status and `location`.
async fn get_no_redirect(url: &str) -> (u16, Option<String>) {
    let (status, location, _, _) = browse(url, None).await;
    (status, location)
}

/// A consent flow started from a browser: the callback URL the provider
/// sent it back to, and the cookie (`name=value`) `/connect` gave it.
struct Started {
    callback: String,
    cookie: String,
}

/// Starts the consent flow of `name` with `/connect` (or `/reconnect`), as a
/// browser holding the admin token would, and lets the provider approve.
async fn start_consent(server: &Server, name: &str, route: &str, expect_redirect: &str) -> Started {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/v1/credentials/{name}/{route}", server.url))
        .header("authorization", format!("Bearer {}", server.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["redirect_url"], expect_redirect, "{v}");
    let set_cookie = set_cookie.expect("`/connect` sets the consent cookie");
    let path = url::Url::parse(expect_redirect).unwrap().path().to_string();
    for attribute in ["HttpOnly", "SameSite=Lax", "Max-Age=600", &format!("Path={path}")] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let authorize = v["authorize_url"].as_str().unwrap();
    let (s, location) = get_no_redirect(authorize).await;
    assert_eq!(s, 302, "the provider approves at once");
    let callback = location.expect("a redirect to the callback");
    assert!(callback.starts_with(expect_redirect), "{callback}");
    Started { callback, cookie }
}

/// Runs the consent flow of `name` from `/connect` (or `/reconnect`) to the
/// callback, the way a browser would, carrying the cookie.
async fn consent(server: &Server, name: &str, route: &str, expect_redirect: &str) {
    let started = start_consent(server, name, route, expect_redirect).await;
    let (s, _, cleared, page) = browse(&started.callback, Some(&started.cookie)).await;
    assert_eq!(s, 200, "the callback completes the flow: {page}");
    assert!(
        cleared.is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is cleared"
    );
}

/// Reads the store's files (database, WAL, shared memory) as bytes.
fn store_bytes(server: &Server) -> Vec<u8> {
    let mut out = Vec::new();
    for file in ["plugboard.db", "plugboard.db-wal", "plugboard.db-shm"] {
        if let Ok(bytes) = std::fs::read(server.dir.path().join("data").join(file)) {
            out.extend(bytes);
        }
    }
    assert!(!out.is_empty(), "no store files under data/");
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Secrets go in through PUT and never come out; an edit that moves the
/// base URL clears them, and callouts say which one is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_write_only_and_cleared_when_the_base_url_moves() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let server = serve("", with_key(&generate_key())).await;
    let token = "crud-token-3f9c1e7a";
    let (s, v) = put_credential(&server, "crm", bearer(&first.url(), Some(token))).await;
    assert_eq!(s, 201, "{v}");
    assert!(!v.to_string().contains(token), "{v}");
    let (s, v) = get_credential(&server, "crm").await;
    assert_eq!(
        (s, &v["secrets"]["token"], &v["source"]),
        (200, &json!("set"), &json!("store")),
        "{v}"
    );
    assert!(!v.to_string().contains(token), "the view leaks the token: {v}");
    activate(&server, rest_json("crud", "crm")).await;
    let (s, v) = invoke(&server, "crud", "/customers").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(last_authorization(&first), format!("Bearer {token}"));

    let (s, v) = put_credential(&server, "crm", bearer(&second.url(), None)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cleared_secrets"], json!(["token"]), "{v}");
    assert_eq!(v["secrets"]["token"], "missing", "{v}");
    let (s, v) = invoke(&server, "crud", "/customers").await;
    assert_ne!(s, 200, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("credential `crm` is not ready: its secret `token` is not set"),
        "{text}"
    );
    assert!(second.seen().is_empty(), "nothing went out without the token");

    let (s, v) = put_credential(&server, "crm", bearer(&second.url(), Some(token))).await;
    assert_eq!(
        (s, &v["cleared_secrets"], &v["secrets"]["token"]),
        (200, &json!([]), &json!("set")),
        "{v}"
    );
    let (s, v) = invoke(&server, "crud", "/customers").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(last_authorization(&second), format!("Bearer {token}"));
}

/// A credential an integration binds cannot be deleted; one from the
/// config file cannot be changed through the API at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_use_or_from_the_config_file_are_not_deleted() {
    let up = Upstream::start().await;
    let config = format!(
        "[credentials.from-file]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\n",
        up.url()
    );
    let server = serve(&config, with_key(&generate_key())).await;
    let (s, v) = put_credential(&server, "crm", bearer(&up.url(), Some("in-use-token"))).await;
    assert_eq!(s, 201, "{v}");
    activate(&server, rest_json("uses-crm", "crm")).await;
    let (s, v) = server.admin("DELETE", "/v1/credentials/crm", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("credential_in_use")),
        "{v}"
    );
    assert_eq!(v["error"]["used_by"], json!(["uses-crm"]), "{v}");
    assert_eq!(get_credential(&server, "crm").await.0, 200);

    let (s, _) = server.admin("DELETE", "/v1/integrations/uses-crm", None).await;
    assert_eq!(s, 204);
    let (s, v) = server.admin("DELETE", "/v1/credentials/crm", None).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = get_credential(&server, "crm").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");

    let (s, v) = get_credential(&server, "from-file").await;
    assert_eq!((s, v["source"].as_str()), (200, Some("config")), "{v}");
    let (s, v) = put_credential(&server, "from-file", bearer(&up.url(), Some("x-token"))).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("config file"),
        "{v}"
    );
    let (s, v) = server.admin("DELETE", "/v1/credentials/from-file", None).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(get_credential(&server, "from-file").await.0, 200);
}

/// `allowed_plugins` is enforced at activation; `enabled = false` stops
/// callouts at once, and switching it back on works on the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_governance_limits_plugins_and_switches_callouts_off() {
    let up = Upstream::start().await;
    let server = serve("", with_key(&generate_key())).await;
    let mut fetch_only = bearer(&up.url(), Some("fetch-token"));
    fetch_only["allowed_plugins"] = json!(["http-fetch"]);
    assert_eq!(put_credential(&server, "fetch-only", fetch_only).await.0, 201);
    let (s, v) = server
        .admin(
            "POST",
            "/v1/integrations",
            Some(rest_json("wrong-plugin", "fetch-only")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = server
        .admin("POST", "/v1/integrations/wrong-plugin/activate", None)
        .await;
    assert_eq!(s, 409, "{v}");
    let problems = v["error"]["problems"].to_string();
    assert!(
        problems.contains("credential `fetch-only` does not allow plugin `rest-json`"),
        "{problems}"
    );

    let token = "toggle-token";
    assert_eq!(
        put_credential(&server, "toggle", bearer(&up.url(), Some(token)))
            .await
            .0,
        201
    );
    activate(&server, rest_json("toggled", "toggle")).await;
    assert_eq!(invoke(&server, "toggled", "/a").await.0, 200);
    let calls = up.seen().len();
    let mut off = bearer(&up.url(), None);
    off["enabled"] = json!(false);
    let (s, v) = put_credential(&server, "toggle", off).await;
    assert_eq!(
        (s, &v["cleared_secrets"], &v["enabled"]),
        (200, &json!([]), &json!(false)),
        "{v}"
    );
    let started = Instant::now();
    let (s, v) = invoke(&server, "toggled", "/b").await;
    assert_ne!(s, 200, "{v}");
    assert!(
        v.to_string()
            .contains("credential `toggle` is disabled for callouts"),
        "{v}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "refused fast");
    assert_eq!(up.seen().len(), calls, "nothing went out");
    let mut on = bearer(&up.url(), None);
    on["enabled"] = json!(true);
    assert_eq!(put_credential(&server, "toggle", on).await.0, 200);
    let (s, v) = invoke(&server, "toggled", "/c").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(last_authorization(&up), format!("Bearer {token}"));
}

/// Every kind of secret, once used, is found nowhere in the store's files,
/// the host's logs or the API's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_in_the_store_and_absent_from_logs() {
    let up = Upstream::start().await;
    let oauth_secret = "sealed-oauth-client-secret-4c1e";
    let idp = OAuthServer::start(OAuthServerConfig {
        client_secret: Some(oauth_secret.into()),
        ..Default::default()
    })
    .await;
    let launch = with_key(&generate_key()).env("PLUGBOARD_LOG", "debug,cranelift=info,wasmtime=info");
    let server = serve("", launch).await;
    let (bearer_token, password, api_key, signing_key) = (
        "sealed-bearer-token-9a1f",
        "sealed-basic-password-2b7d",
        "sealed-api-key-5e3c",
        "sealed-template-key-8d2a",
    );
    let base = |auth: Value| json!({"base_url": up.url(), "allow_http": true, "allowed_plugins": ["rest-json"], "auth": auth});
    let credentials = [
        (
            "seal-bearer",
            base(json!({"type": "bearer", "token": bearer_token})),
        ),
        (
            "seal-basic",
            base(json!({"type": "basic", "username": "svc", "password": password})),
        ),
        (
            "seal-api-key",
            base(json!({"type": "api_key", "name": "x-api-key", "value": api_key})),
        ),
        (
            "seal-signed",
            base(json!({"type": "template",
                "headers": {"x-signature": "{{ hmac_sha256(secrets.signing_key, request.method ~ request.path) }}"},
                "secrets": {"signing_key": signing_key}})),
        ),
        (
            "seal-oauth",
            json!({"base_url": format!("{}/api", idp.base_url()), "allow_http": true,
                "allowed_plugins": ["rest-json"],
                "auth": {"type": "oauth2", "grant": "client_credentials",
                    "token_url": format!("{}/token", idp.base_url()),
                    "client_id": "plugboard", "client_secret": oauth_secret}}),
        ),
    ];
    for (name, body) in credentials {
        let (s, v) = put_credential(&server, name, body).await;
        assert_eq!(s, 201, "{name}: {v}");
        activate(&server, rest_json(&format!("use-{name}"), name)).await;
        let (s, v) = invoke(&server, &format!("use-{name}"), "/check").await;
        assert_eq!(s, 200, "{name}: {v}");
    }
    let headers: Vec<_> = up.seen().into_iter().map(|s| s.headers).collect();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("svc:{password}"));
    assert_eq!(headers[0]["authorization"], format!("Bearer {bearer_token}"));
    assert_eq!(headers[1]["authorization"], format!("Basic {basic}"));
    assert_eq!(headers[2]["x-api-key"], api_key);
    let signature = &headers[3]["x-signature"];
    assert!(
        signature.len() == 64 && signature.chars().all(|c| c.is_ascii_hexdigit()),
        "{signature}"
    );
    assert_eq!(idp.token_requests_for("client_credentials"), 1);

    let secrets = [
        bearer_token,
        password,
        api_key,
        signing_key,
        oauth_secret,
        basic.as_str(),
    ];
    let (s, list) = server.admin("GET", "/v1/credentials", None).await;
    assert_eq!(
        (s, list["credentials"].as_array().map(Vec::len)),
        (200, Some(5)),
        "{list}"
    );
    let mut files = store_bytes(&server);
    let server = server.restart().await;
    files.extend(store_bytes(&server));
    let (s, v) = invoke(&server, "use-seal-bearer", "/again").await;
    assert_eq!(s, 200, "sealed secrets open again after a restart: {v}");
    let log = server.log();
    for name in [
        "seal-bearer",
        "seal-basic",
        "seal-api-key",
        "seal-signed",
        "seal-oauth",
    ] {
        assert!(contains(&files, name), "the store holds credential `{name}`");
    }
    assert!(
        log.contains("plugboard listening on"),
        "the log was captured: {log}"
    );
    for secret in secrets {
        assert!(!contains(&files, secret), "`{secret}` is in the store in clear");
        assert!(!log.contains(secret), "`{secret}` is in the log");
        assert!(!list.to_string().contains(secret), "`{secret}` is in the list");
    }
}

/// The store opens only with the key its secrets were sealed with; after
/// `rotate-key` it opens with the new key and the secrets still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_key_must_match_and_can_be_rotated() {
    let up = Upstream::start().await;
    let (key_a, key_b) = (generate_key(), generate_key());
    let server = serve("", with_key(&key_a)).await;
    std::fs::write(server.dir.path().join("new.key"), format!("{key_b}\n")).unwrap();
    let token = "rotated-token-61d0";
    assert_eq!(
        put_credential(&server, "crm", bearer(&up.url(), Some(token)))
            .await
            .0,
        201
    );
    activate(&server, rest_json("keyed", "crm")).await;
    assert_eq!(invoke(&server, "keyed", "/one").await.0, 200);
    let (dir, admin) = server.stop();

    let Err(wrong) = Server::try_spawn(dir, Some(admin.clone()), with_key(&key_b)).await else {
        panic!("the server started with the wrong key");
    };
    assert!(!wrong.status.success());
    assert!(
        wrong
            .output
            .contains("is not the one this store's secrets are sealed with"),
        "{}",
        wrong.output
    );
    let Err(keyless) = Server::try_spawn(wrong.dir, Some(admin.clone()), Launch::default()).await else {
        panic!("the server started without a key");
    };
    assert!(!keyless.status.success());
    assert!(
        keyless
            .output
            .contains("holds sealed secrets but no secret key was given"),
        "{}",
        keyless.output
    );

    let out = plugboard_in(
        keyless.dir.path(),
        &["credentials", "rotate-key", "--new-key-file", "new.key"],
        &[("PLUGBOARD_SECRET_KEY", &key_a)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("re-sealed 1 secret "),
        "{out:?}"
    );
    let Err(old) = Server::try_spawn(keyless.dir, Some(admin.clone()), with_key(&key_a)).await else {
        panic!("the old key still opens the store");
    };
    let server = Server::spawn_with(old.dir, Some(admin), with_key(&key_b)).await;
    let (s, v) = invoke(&server, "keyed", "/two").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(last_authorization(&up), format!("Bearer {token}"));

    let keyless = serve("", Launch::default()).await;
    let (s, v) = put_credential(&keyless, "crm", bearer(&up.url(), Some(token))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("no_secret_key")),
        "{v}"
    );
    assert!(!v.to_string().contains(token));
    let (s, v) = put_credential(&keyless, "open", bearer(&up.url(), None)).await;
    assert_eq!(s, 201, "a credential without secrets needs no key: {v}");
}

/// `plugboard apply` beside a running server: the server picks the new
/// credential up and invokes the integration bound to it within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_a_credential_the_running_server_uses() {
    let up = Upstream::start().await;
    let key = generate_key();
    let server = serve("", with_key(&key)).await;
    let file = format!(
        r#"
[[credential]]
name = "applied-crm"
base_url = "{}"
allow_http = true
allowed_plugins = ["rest-json"]
auth = {{ type = "bearer", token = "env:APPLIED_CRM_TOKEN" }}

[[integration]]
name = "applied"
status = "active"
connector = {{ plugin = "rest-json", operation = "get" }}
bindings = {{ api = "applied-crm" }}
"#,
        up.url()
    );
    std::fs::write(server.dir.path().join("apply.toml"), file).unwrap();
    let token = "applied-token-0b5e";
    let apply = || {
        let out = server.cli(
            &["apply", "-f", "apply.toml"],
            &[("PLUGBOARD_SECRET_KEY", &key), ("APPLIED_CRM_TOKEN", token)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = apply();
    assert!(first.contains("credential applied-crm: created"), "{first}");
    assert!(
        first.contains("applied: created (version 1), activated (was draft)"),
        "{first}"
    );

    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut s, mut v) = invoke(&server, "applied", "/applied").await;
    while s != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (s, v) = invoke(&server, "applied", "/applied").await;
    }
    assert_eq!(s, 200, "the server did not pick the credential up: {v}");
    assert_eq!(last_authorization(&up), format!("Bearer {token}"));
    let (_, view) = get_credential(&server, "applied-crm").await;
    assert_eq!(
        (&view["source"], &view["secrets"]["token"]),
        (&json!("store"), &json!("set")),
        "{view}"
    );

    let second = apply();
    assert!(second.contains("credential applied-crm: unchanged"), "{second}");
    assert!(second.contains("applied: unchanged"), "{second}");
}

/// The OAuth authorization-code flow through the API: connect, use,
/// lose the refresh token (reconnect needed), reconnect, use again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_consent_connects_and_reconnects_a_credential() {
    let idp = OAuthServer::start(OAuthServerConfig {
        client_secret: Some("consent-client-secret".into()),
        ..Default::default()
    })
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://localhost:{port}/");
    let launch = with_key(&generate_key())
        .listen(&format!("127.0.0.1:{port}"))
        .args(&["--public-url", &public]);
    let server = serve("", launch).await;
    let credential = json!({
        "base_url": format!("{}/api", idp.base_url()), "allow_http": true,
        "allowed_plugins": ["rest-json"],
        "auth": {"type": "oauth2", "grant": "authorization_code",
            "authorize_url": format!("{}/authorize", idp.base_url()),
            "token_url": format!("{}/token", idp.base_url()),
            "client_id": "plugboard", "client_secret": "consent-client-secret"}
    });
    let (s, v) = put_credential(&server, "crm", credential).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["secrets"]["refresh_token"], "not_set", "{v}");
    activate(&server, rest_json("oauth-api", "crm")).await;
    let callback = format!("{public}v1/oauth/callback");

    consent(&server, "crm", "connect", &callback).await;
    let (_, v) = get_credential(&server, "crm").await;
    assert_eq!(v["connection"]["state"], "connected", "{v}");
    assert_eq!(v["secrets"]["refresh_token"], "set", "{v}");
    let (s, v) = invoke(&server, "oauth-api", "/contacts").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["body"]["token_valid"], true, "{v}");
    let issued = idp.last_access_token().unwrap();
    assert_eq!(idp.last_api_authorization(), Some(format!("Bearer {issued}")));
    assert_eq!(v["body"]["authorization"], "Bearer [REDACTED]");

    idp.revoke_refresh_tokens();
    idp.revoke_access_tokens();
    let (s, v) = invoke(&server, "oauth-api", "/contacts").await;
    assert_ne!(s, 200, "{v}");
    assert!(v.to_string().contains("reconnected"), "{v}");
    let (_, v) = get_credential(&server, "crm").await;
    assert_eq!(v["connection"]["state"], "reconnect_needed", "{v}");

    consent(&server, "crm", "reconnect", &callback).await;
    let (_, v) = get_credential(&server, "crm").await;
    assert_eq!(v["connection"]["state"], "connected", "{v}");
    let (s, v) = invoke(&server, "oauth-api", "/contacts").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["body"]["token_valid"], true, "{v}");
}

/// The connection test gets a token and runs each bound integration's
/// `test-connection`; a wrong client secret is reported without its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_checks_the_token_and_the_integrations() {
    let idp = OAuthServer::start(OAuthServerConfig {
        client_secret: Some("right-client-secret-77aa".into()),
        ..Default::default()
    })
    .await;
    let server = serve("", with_key(&generate_key())).await;
    let credential = |secret: &str| {
        json!({
            "base_url": format!("{}/api", idp.base_url()), "allow_http": true,
            "allowed_plugins": ["rest-json"],
            "auth": {"type": "oauth2", "grant": "client_credentials",
                "token_url": format!("{}/token", idp.base_url()),
                "client_id": "plugboard", "client_secret": secret}
        })
    };
    assert_eq!(
        put_credential(&server, "crm", credential("right-client-secret-77aa"))
            .await
            .0,
        201
    );
    let mut definition = rest_json("tested", "crm");
    definition["connector"]["config"] = json!({"health_path": "/health"});
    activate(&server, definition).await;

    let (s, v) = server.admin("POST", "/v1/credentials/crm/test", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((&v["ok"], &v["token"]["ok"]), (&json!(true), &json!(true)), "{v}");
    let integrations = v["integrations"].as_array().unwrap();
    assert_eq!(integrations.len(), 1, "{v}");
    assert_eq!(
        (&integrations[0]["integration"], &integrations[0]["ok"]),
        (&json!("tested"), &json!(true)),
        "{v}"
    );
    assert!(idp.token_requests_for("client_credentials") >= 1);
    let (_, view) = get_credential(&server, "crm").await;
    assert_eq!(view["last_test"]["ok"], true, "{view}");

    let wrong = "wrong-client-secret-13ee";
    assert_eq!(put_credential(&server, "crm", credential(wrong)).await.0, 200);
    let (s, v) = server.admin("POST", "/v1/credentials/crm/test", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["ok"], &v["token"]["ok"]),
        (&json!(false), &json!(false)),
        "{v}"
    );
    assert!(
        v["token"]["error"].as_str().unwrap().contains("invalid_client"),
        "{v}"
    );
    assert!(
        !v.to_string().contains(wrong),
        "the test result quotes the secret: {v}"
    );
    let (_, view) = get_credential(&server, "crm").await;
    assert_eq!(view["last_test"]["ok"], false, "{view}");
    assert!(!view.to_string().contains(wrong));
}

/// The 4-character pieces of `secret` that `text` contains.
fn pieces_of(secret: &str, text: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(4)
        .map(|w| w.iter().collect::<String>())
        .filter(|piece| text.contains(piece.as_str()))
        .collect()
}

/// A header template's render error quotes nothing of its secret, in the
/// invocation's error, the run record or the connection test; templates that
/// would load another template are refused when saved, through the API and
/// `plugboard apply`; and changing a template clears the secrets, so it
/// cannot be pointed at a stored one to send it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_templates_cannot_reveal_their_secret() {
    let up = Upstream::start().await;
    let key = generate_key();
    let server = serve("", with_key(&key)).await;
    let secret = "Qz8Kx3Vw7Jp2Lm5Rt9Yw";
    let template = |header: &str, value: Option<&str>| {
        json!({"base_url": up.url(), "allow_http": true, "allowed_plugins": ["rest-json"],
            "auth": {"type": "template", "headers": {"x-sig": header}, "secrets": {"k": value}}})
    };
    for loading in [
        "{% include secrets.k[1:] %}",
        "{% import secrets.k as m %}",
        "{% from secrets.k import m %}",
        "{%- extends secrets.k -%}",
    ] {
        let (s, v) = put_credential(&server, "signed", template(loading, Some(secret))).await;
        assert_eq!(s, 422, "{loading}: {v}");
        let problems = v["error"]["problems"].to_string();
        assert!(
            problems.contains("is not available: a header template cannot load other templates"),
            "{loading}: {problems}"
        );
        assert!(pieces_of(secret, &v.to_string()).is_empty(), "{v}");
    }

    let (s, v) = put_credential(
        &server,
        "signed",
        template("{{ secrets.k[1:] | int }}", Some(secret)),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut definition = rest_json("signing", "signed");
    definition["connector"]["config"] = json!({"health_path": "/health"});
    activate(&server, definition).await;
    let body = json!({ "path": "/orders" }).to_string();
    let (s, run_id, v) = server
        .call(
            "POST",
            "/v1/integrations/signing/invoke",
            Some(&server.admin),
            Some(&body),
        )
        .await;
    assert_ne!(s, 200, "{v}");
    assert!(
        v.to_string()
            .contains("header `x-sig`: invalid operation (line 1"),
        "{v}"
    );
    let (_, run) = server
        .admin("GET", &format!("/v1/runs/{}", run_id.expect("a run id")), None)
        .await;
    let (_, test) = server.admin("POST", "/v1/credentials/signed/test", None).await;
    assert_eq!(test["ok"], false, "{test}");
    assert!(test.to_string().contains("header `x-sig`"), "{test}");
    for (what, text) in [
        ("error", v.to_string()),
        ("run", run.to_string()),
        ("test", test.to_string()),
    ] {
        let pieces = pieces_of(secret, &text);
        assert!(
            pieces.is_empty(),
            "the {what} quotes {pieces:?} of the secret: {text}"
        );
    }
    assert!(up.seen().is_empty(), "nothing was sent without its header");

    let (s, v) = put_credential(&server, "signed", template("{{ secrets.k }}", None)).await;
    assert_eq!((s, &v["cleared_secrets"]), (200, &json!(["k"])), "{v}");
    let (s, v) = invoke(&server, "signing", "/orders").await;
    assert_ne!(s, 200, "{v}");
    assert!(v.to_string().contains("its secret `k` is not set"), "{v}");
    assert!(up.seen().is_empty(), "the changed template sent nothing");

    std::fs::write(
        server.dir.path().join("apply.toml"),
        format!(
            "[[credential]]\nname = \"applied\"\nbase_url = \"{}\"\nallow_http = true\nauth = {{ type = \"template\", headers = {{ \"x-sig\" = \"{{% include secrets.k %}}\" }}, secrets = {{ k = \"env:APPLIED_K\" }} }}\n",
            up.url()
        ),
    )
    .unwrap();
    let out = server.cli(
        &["apply", "-f", "apply.toml"],
        &[("PLUGBOARD_SECRET_KEY", &key), ("APPLIED_K", secret)],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("`{% include %}` is not available"), "{text}");
    assert!(pieces_of(secret, &text).is_empty(), "{text}");
}

/// Someone who can write the database but has no key points a credential's
/// base URL at another server: the host still starts, the secret does not
/// open for the new destination, callouts through the credential are refused
/// naming it, and the other server never receives the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_changed_in_the_database_never_receives_the_secret() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let key = generate_key();
    let server = serve("", with_key(&key)).await;
    let token = "moved-token-7c2e";
    let (s, v) = put_credential(&server, "crm", bearer(&first.url(), Some(token))).await;
    assert_eq!(s, 201, "{v}");
    activate(&server, rest_json("moved", "crm")).await;
    assert_eq!(invoke(&server, "moved", "/customers").await.0, 200);
    assert_eq!(last_authorization(&first), format!("Bearer {token}"));
    let (dir, admin) = server.stop();

    let db = rusqlite::Connection::open(dir.path().join("data/plugboard.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE credentials SET spec = json_set(spec, '$.base_url', ?1) WHERE name = 'crm'",
            [second.url()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let server = Server::spawn_with(dir, Some(admin), with_key(&key)).await;
    let (s, v) = invoke(&server, "moved", "/customers").await;
    assert_ne!(s, 200, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("the stored secrets of credential `crm` do not open"),
        "{text}"
    );
    let (_, view) = get_credential(&server, "crm").await;
    assert!(
        view["problem"]
            .as_str()
            .is_some_and(|p| p.contains("changed outside Plugboard")),
        "{view}"
    );
    let (_, test) = server.admin("POST", "/v1/credentials/crm/test", None).await;
    assert_eq!(test["ok"], false, "{test}");
    assert!(
        second.seen().is_empty(),
        "the new destination was called: {:?}",
        second.seen()
    );
    for text in [text, view.to_string(), test.to_string(), server.log()] {
        assert!(!text.contains(token), "{text}");
    }

    // Entering the secret again through Plugboard makes it work, there.
    let (s, v) = put_credential(&server, "crm", bearer(&second.url(), Some(token))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(invoke(&server, "moved", "/customers").await.0, 200);
    assert_eq!(last_authorization(&second), format!("Bearer {token}"));
}

/// The sealed values of the store's secrets, read with SQL.
fn sealed_values(server: &Server) -> Vec<Vec<u8>> {
    let db = rusqlite::Connection::open(server.dir.path().join("data/plugboard.db")).unwrap();
    let mut stmt = db.prepare("SELECT sealed FROM credential_secrets").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Whether `haystack` holds any 32-byte piece of the sealed value (after
/// its common prefix), taken every 256 bytes: a long value is split across
/// pages, so a leftover is found piece by piece.
fn holds_part_of(haystack: &[u8], sealed: &[u8]) -> bool {
    sealed[4..]
        .chunks(256)
        .filter(|chunk| chunk.len() >= 32)
        .any(|chunk| haystack.windows(32).any(|w| w == &chunk[..32]))
}

/// After `rotate-key`, beside a running host, no ciphertext sealed with the
/// old key is left in the database file or its write-ahead log: not the
/// current one, not one an earlier edit replaced, not one of a deleted
/// credential. The data folder and the database files are owner-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_leaves_no_old_ciphertext_in_the_files() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::start().await;
    let (key_a, key_b) = (generate_key(), generate_key());
    let server = serve("", with_key(&key_a)).await;
    std::fs::write(server.dir.path().join("new.key"), format!("{key_b}\n")).unwrap();
    // Long tokens, as some providers issue: their ciphertext spills into
    // overflow pages, which a replaced or deleted row leaves on the free list.
    let token = |name: &str| format!("{name}-{}", "x".repeat(6000));
    let mut old = Vec::new();
    for name in ["first-token", "second-token"] {
        put_credential(&server, "crm", bearer(&up.url(), Some(&token(name)))).await;
        old.extend(sealed_values(&server));
    }
    assert_eq!(old.len(), 2);
    activate(&server, rest_json("rotated", "crm")).await;
    assert_eq!(invoke(&server, "rotated", "/one").await.0, 200);
    // Deleted credentials' secrets leave their ciphertext in freed pages.
    for i in 0..6 {
        let name = format!("retired-{i}");
        put_credential(&server, &name, bearer(&up.url(), Some(&token(&name)))).await;
        let retired: Vec<Vec<u8>> = sealed_values(&server)
            .into_iter()
            .filter(|v| !old.contains(v))
            .collect();
        old.extend(retired);
    }
    for i in 0..6 {
        let path = format!("/v1/credentials/retired-{i}");
        assert_eq!(server.admin("DELETE", &path, None).await.0, 204);
    }
    assert_eq!(old.len(), 8);
    let out = server.cli(
        &["credentials", "rotate-key", "--new-key-file", "new.key"],
        &[("PLUGBOARD_SECRET_KEY", &key_a)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let new = sealed_values(&server);
    assert_eq!(new.len(), 1);
    assert!(!old.contains(&new[0]));
    let data = server.dir.path().join("data");
    for file in ["plugboard.db", "plugboard.db-wal", "plugboard.db-shm"] {
        let Ok(bytes) = std::fs::read(data.join(file)) else {
            continue;
        };
        for (i, sealed) in old.iter().enumerate() {
            assert!(
                !holds_part_of(&bytes, sealed),
                "old ciphertext {i} is still in `{file}`"
            );
        }
        let mode = std::fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    let (dir, admin) = server.stop();
    let server = Server::spawn_with(dir, Some(admin), with_key(&key_b)).await;
    assert_eq!(invoke(&server, "rotated", "/two").await.0, 200);
    assert_eq!(
        last_authorization(&up),
        format!("Bearer {}", token("second-token"))
    );
}

/// Consent completes only in the browser that started it: a callback
/// without the cookie `/connect` set, or with another value, is refused with
/// a page, exchanges no code and stores nothing; the provider's free text is
/// not quoted; who connected is recorded; and the callback's `code` and
/// `state`, like secret-looking parameters elsewhere, stay out of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_completes_only_in_the_browser_that_started_it() {
    let idp = OAuthServer::start(OAuthServerConfig {
        client_secret: Some("bound-client-secret".into()),
        ..Default::default()
    })
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://localhost:{port}/");
    let launch = with_key(&generate_key())
        .listen(&format!("127.0.0.1:{port}"))
        .args(&["--public-url", &public])
        .env("PLUGBOARD_LOG", "debug,cranelift=info,wasmtime=info");
    let server = serve("", launch).await;
    let credential = json!({
        "base_url": format!("{}/api", idp.base_url()), "allow_http": true,
        "allowed_plugins": ["rest-json"],
        "auth": {"type": "oauth2", "grant": "authorization_code",
            "authorize_url": format!("{}/authorize", idp.base_url()),
            "token_url": format!("{}/token", idp.base_url()),
            "client_id": "plugboard", "client_secret": "bound-client-secret"}
    });
    assert_eq!(put_credential(&server, "crm", credential).await.0, 201);
    let callback = format!("{public}v1/oauth/callback");
    let started = start_consent(&server, "crm", "connect", &callback).await;
    let query: BTreeMap<String, String> = url::Url::parse(&started.callback)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let (code, state) = (&query["code"], &query["state"]);
    let cookie_name = started.cookie.split('=').next().unwrap();

    let others = [
        None,
        Some(format!("{cookie_name}={}", "0".repeat(64))),
        Some("plugboard-consent-0000000000000000=x; theme=dark".to_string()),
    ];
    for cookie in &others {
        let (s, _, _, page) = browse(&started.callback, cookie.as_deref()).await;
        assert_eq!(s, 400, "{cookie:?}: {page}");
        assert!(
            page.contains("this browser did not start the connection of credential `crm`"),
            "{page}"
        );
    }
    assert_eq!(
        idp.token_requests_for("authorization_code"),
        0,
        "a code was exchanged"
    );
    let (_, v) = get_credential(&server, "crm").await;
    assert_eq!(v["secrets"]["refresh_token"], "not_set", "{v}");
    assert!(v["connection"].is_null(), "{v}");

    let refused =
        format!("{callback}?state={state}&error=reflected_s3cret&error_description=reflected-description");
    let (s, _, _, page) = browse(&refused, None).await;
    assert_eq!(s, 400, "{page}");
    assert!(page.contains("the provider refused consent"), "{page}");
    assert!(!page.contains("reflected"), "{page}");
    let (s, _, _, page) = browse(&format!("{callback}?state={state}&error=access_denied"), None).await;
    assert!(s == 400 && page.contains("`access_denied`"), "{page}");

    let (s, _, _, page) = browse(&started.callback, Some(&started.cookie)).await;
    assert_eq!(s, 200, "the browser that started it completes it: {page}");
    let (_, v) = get_credential(&server, "crm").await;
    assert_eq!(v["connection"]["state"], "connected", "{v}");
    assert_eq!(v["connection"]["connected_by"]["token_name"], "admin", "{v}");
    assert!(
        v["connection"]["connected_by"]["token_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("tok_")),
        "{v}"
    );
    let (s, _, _, _) = browse(&started.callback, Some(&started.cookie)).await;
    assert_eq!(s, 400, "a flow completes once");

    let probe = "log-probe-token-3a9d";
    server
        .admin("GET", &format!("/v1/credentials?access_token={probe}"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    assert!(
        log.contains("/v1/oauth/callback"),
        "the access log was captured: {log}"
    );
    for value in [code.as_str(), state.as_str(), probe] {
        assert!(!log.contains(value), "`{value}` is in the log");
    }
}

/// A consent flow started through one host process completes through the
/// next one on the same data folder: pending flows live in the store, not
/// in the memory of the process that started them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_started_in_one_process_completes_in_another() {
    let idp = OAuthServer::start(OAuthServerConfig {
        client_secret: Some("consent-client-secret".into()),
        ..Default::default()
    })
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://localhost:{port}/");
    let launch = with_key(&generate_key())
        .listen(&format!("127.0.0.1:{port}"))
        .args(&["--public-url", &public]);
    let first = serve("", launch).await;
    let credential = json!({
        "base_url": format!("{}/api", idp.base_url()), "allow_http": true,
        "allowed_plugins": ["rest-json"],
        "auth": {"type": "oauth2", "grant": "authorization_code",
            "authorize_url": format!("{}/authorize", idp.base_url()),
            "token_url": format!("{}/token", idp.base_url()),
            "client_id": "plugboard", "client_secret": "consent-client-secret"}
    });
    let (s, v) = put_credential(&first, "crm", credential).await;
    assert_eq!(s, 201, "{v}");
    let callback = format!("{public}v1/oauth/callback");
    let started = start_consent(&first, "crm", "connect", &callback).await;
    let state = url::Url::parse(&started.callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let nonce = started.cookie.split('=').nth(1).unwrap().to_string();
    let second = first.restart().await;
    let bytes = store_bytes(&second);
    assert!(!contains(&bytes, &state), "the state is stored only as a digest");
    assert!(
        !contains(&bytes, &nonce),
        "the cookie nonce is stored only as a digest"
    );

    let (s, _, cleared, page) = browse(&started.callback, Some(&started.cookie)).await;
    assert_eq!(s, 200, "the next process completes the flow: {page}");
    assert!(
        cleared.is_some_and(|c| c.contains("Max-Age=0")),
        "the cookie is cleared"
    );
    let (_, v) = get_credential(&second, "crm").await;
    assert_eq!(v["connection"]["state"], "connected", "{v}");
    assert_eq!(v["connection"]["connected_by"]["token_name"], "admin", "{v}");
    let (s, _, _, page) = browse(&started.callback, Some(&started.cookie)).await;
    assert_eq!(s, 400, "a flow completes once: {page}");
}

/// The last connection test of a credential from the config file (which
/// has no row of its own in the store) is seen by the next host process on
/// the same data folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_of_a_config_credential_is_seen_by_the_next_process() {
    let up = Upstream::start().await;
    let first = Server::start(&up).await;
    let (s, tested) = first.admin("POST", "/v1/credentials/crm/test", None).await;
    assert_eq!(s, 200, "{tested}");
    let second = first.restart().await;
    let (s, v) = get_credential(&second, "crm").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["source"], "config", "{v}");
    assert_eq!(v["last_test"], tested, "{v}");
}
