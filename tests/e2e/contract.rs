//! The API contract is exact: schemathesis, pinned in
//! `tests/schemathesis/requirements.txt` and installed into `.tools/api-venv`
//! by `scripts/api-tools.sh` (`make test` runs it), walks `/v1/openapi.json`
//! against a live host with every check (status codes, content types,
//! response schemas, headers, positive and negative data, auth, methods,
//! use after free) in its example, coverage, fuzzing and stateful phases,
//! the last following the document's links (create -> read -> delete).
//!
//! The host is the library's `Host` on `127.0.0.1:0` with real plugins and
//! a secret key, so credential writes are reached too. The seed is fixed so
//! a failure reproduces; `PLUGBOARD_SCHEMATHESIS_SEED` picks another one.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use plugboard::config::Config;
use plugboard::credentials::seal::SealKey;
use plugboard::host::Host;
use plugboard::store::Role;
use plugboard_tests::{Upstream, repo_root, secret_ref};

use crate::serve::install_plugins;

/// Test cases per operation and phase: enough to cover every documented
/// status in about half a minute on two cores.
const MAX_EXAMPLES: &str = "25";
/// The seed of the suite's run.
const SEED: &str = "20260101";

fn schemathesis() -> PathBuf {
    let path = repo_root().join(".tools/api-venv/bin/schemathesis");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/api-tools.sh` (`make test` does)",
        path.display()
    );
    path
}

/// Schemathesis finds no failure in the OpenAPI document against the live
/// host: every request and response body, status and parameter bound the
/// document states is what the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_server_keeps_its_openapi_document() {
    let tool = schemathesis();
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["rest-json", "field-map"]);
    let key = dir.path().join("secret.key");
    std::fs::write(&key, SealKey::generate().encode()).unwrap();
    let root = dir.path().display();
    let config = Config::parse(&format!(
        "plugin_dir = \"{root}/plugins.d\"\ndata_dir = \"{root}/data\"\nsecret_key_file = \"{}\"\n[credentials.crm]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n",
        key.display(),
        up.url(),
        secret_ref("contract-token")
    ))
    .unwrap();
    let host = Host::open(config).unwrap();
    let (_, admin) = host.store().create_token("admin", Role::Admin, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serving = host.start(listener).await.unwrap();
    let base = format!("http://{}", serving.addr());

    let seed = std::env::var("PLUGBOARD_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_string());
    let mut command = Command::new(tool);
    command
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(repo_root().join("tests/schemathesis/schemathesis.toml"))
        .args(["--no-color", "run"])
        .arg(format!("{base}/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args(["--checks", "all", "--max-examples", MAX_EXAMPLES, "--seed", &seed])
        .args(["--generation-database", "none", "--request-timeout", "30"]);
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("schemathesis starts");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "schemathesis ran for {:.1} s (seed {seed})",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (seed {seed}):\n{report}"
    );
    assert!(
        report.contains("Stateful") && !report.contains("Invalid OpenAPI Links"),
        "the stateful phase did not run on the document's links:\n{report}"
    );
    drop(serving);
}
