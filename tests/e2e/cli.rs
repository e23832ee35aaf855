//! The `plugboard` binary, run as a user runs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use plugboard::credentials::seal::SealKey;
use plugboard::store::{AttemptResult, Enqueued, NewRun, Store, new_run_id};
use plugboard_tests::{Upstream, plugin_file, repo_root, secret_ref};

fn folder(plugins: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins.d")).unwrap();
    for p in plugins {
        std::fs::copy(
            plugin_file(p),
            dir.path().join("plugins.d").join(format!("{p}.wasm")),
        )
        .unwrap();
    }
    dir
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(plugboard_tests::plugboard_binary())
        .args(args)
        .current_dir(dir)
        .env("PLUGBOARD_DATA_DIR", repo_root().join("target/test-data"))
        .env_remove("PLUGBOARD_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `plugboard invoke` runs a processor on standard input and prints JSON.
#[test]
fn invoke_runs_a_processor_from_stdin() {
    let dir = folder(&["field-map"]);
    let cfg = r#"{"mappings":[{"from":"/a","to":"/b/c"}]}"#;
    let out = run(
        dir.path(),
        &["invoke", "field-map", "--input", "-", "--plugin-config", cfg],
        r#"{"a": 5}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"b": {"c": 5}}));
}

/// A connector invoked with `--bind` uses the config file's credential; the
/// secret appears nowhere in what the user sees.
#[test]
fn invoke_binds_a_configured_credential_without_showing_its_secret() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(Upstream::start());
    let dir = folder(&["rest-json"]);
    let config = format!(
        "[credentials.crm]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n",
        up.url(),
        secret_ref("cli-secret-xyz")
    );
    std::fs::write(dir.path().join("plugboard.toml"), config).unwrap();
    let input = r#"{"path": "/v1/hello"}"#;
    let args = [
        "--config",
        "plugboard.toml",
        "invoke",
        "rest-json",
        "get",
        "--bind",
        "api=crm",
        "--input",
        "-",
        "--report",
    ];
    let out = run(dir.path(), &args, input);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["output"]["status"], 200);
    assert_eq!(report["callouts"][0]["status"], 200);
    assert_eq!(
        rt.block_on(async { up.seen() })[0].headers["authorization"],
        "Bearer cli-secret-xyz"
    );
    assert!(!text(&out.stdout).contains("cli-secret-xyz") && !text(&out.stderr).contains("cli-secret-xyz"));
}

/// A failing invocation prints a structured error and exits with 1.
#[test]
fn invoke_failure_prints_a_structured_error() {
    let dir = folder(&["field-map"]);
    let out = run(dir.path(), &["invoke", "field-map", "--input", "-"], "{not json");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "input_not_json");
}

/// Unknown plugins and bad config files are named in the error.
#[test]
fn unknown_plugin_and_bad_config_are_explained() {
    let dir = folder(&["field-map"]);
    let out = run(dir.path(), &["invoke", "nope"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no plugin `nope`") && text(&out.stderr).contains("field-map"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "[credentials.x]\nbase_url = \"nope\"\n",
    )
    .unwrap();
    let out = run(dir.path(), &["--config", "bad.toml", "plugins", "list"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("credentials.x: base_url `nope` is not a URL"),
        "{}",
        text(&out.stderr)
    );
}

/// `plugins list` shows ready plugins and failed files with the reason;
/// `plugins inspect` shows the manifest and limits.
#[test]
fn plugins_list_and_inspect_show_status_and_manifest() {
    let dir = folder(&["rest-json"]);
    std::fs::write(dir.path().join("plugins.d/broken.wasm"), "x").unwrap();
    let out = run(dir.path(), &["plugins", "list"], "");
    let list = text(&out.stdout);
    assert!(list.contains("rest-json") && list.contains("ready"), "{list}");
    assert!(
        list.contains("broken.wasm") && list.contains("not a WebAssembly file"),
        "{list}"
    );
    let out = run(dir.path(), &["plugins", "inspect", "rest-json", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["plugin"]["kind"], "connector");
    assert_eq!(v["plugin"]["limits"]["memory_bytes"], 64 << 20);
}

/// `credentials generate-key` prints a new 32-byte key as 44 characters of
/// base64, which the host accepts as its secret key.
#[test]
fn credentials_generate_key_prints_a_key_the_host_accepts() {
    let dir = folder(&[]);
    let mut keys = Vec::new();
    for _ in 0..2 {
        let out = run(dir.path(), &["credentials", "generate-key"], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let key = text(&out.stdout).trim().to_string();
        assert_eq!(key.len(), 44, "{key}");
        SealKey::parse(&key).unwrap_or_else(|e| panic!("{e}: {key}"));
        keys.push(key);
    }
    assert_ne!(keys[0], keys[1], "two keys are the same");
}

/// `credentials list` shows a credential from the config file with source
/// `config`, its authentication and base URL, and never its secret.
#[test]
fn credentials_list_shows_a_config_credential_without_its_secret() {
    let dir = folder(&[]);
    let config = format!(
        "[credentials.crm]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\n\
         base_url = \"http://127.0.0.1:9/crm\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n",
        secret_ref("cli-list-secret-xyz")
    );
    std::fs::write(dir.path().join("plugboard.toml"), config).unwrap();
    let args = [
        "--config",
        "plugboard.toml",
        "--data-dir",
        "data",
        "credentials",
        "list",
    ];
    let out = run(dir.path(), &args, "");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("crm "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns,
        ["crm", "config", "bearer", "http://127.0.0.1:9/crm", "token=set"],
        "{stdout}"
    );
    assert!(!stdout.contains("cli-list-secret-xyz") && !stderr.contains("cli-list-secret-xyz"));
    assert!(
        !stdout.contains("plugboard-test-secret"),
        "the secret's file is shown: {stdout}"
    );
}

/// Stores failed async runs of `orders` through the library, as a host
/// would: enqueued, claimed, one attempt failed for good, with one error
/// code each from `codes`.
fn failed_runs(data: &Path, codes: &[&str]) -> Vec<String> {
    let store = Store::open(data).unwrap();
    let now = 1_700_000_000_000;
    let mut ids = Vec::new();
    for n in 0..codes.len() {
        let run = NewRun {
            id: new_run_id(),
            integration: "orders".into(),
            version: 1,
            token_id: None,
            input: serde_json::json!({"n": n}).to_string(),
            callback_url: None,
            idempotency_key: None,
            status: "queued".into(),
            now_ms: now,
        };
        assert_eq!(
            store.enqueue_run(&run, 100, 60_000).unwrap(),
            Enqueued::Created(run.id.clone())
        );
        ids.push(run.id);
    }
    let claimed = store
        .claim_runs("cli-test", now, 30_000, &BTreeMap::new(), 4, 10)
        .unwrap();
    assert_eq!(claimed.len(), codes.len());
    for (id, code) in ids.iter().zip(codes) {
        let error = serde_json::json!({"code": code, "message": "refused", "retryable": false});
        let attempt = serde_json::json!({"attempt": 1, "outcome": "failed", "error": error});
        let failed = AttemptResult::Failed { error };
        assert!(
            store
                .finish_attempt(id, "cli-test", &attempt, &failed, now + 10)
                .unwrap()
        );
    }
    ids
}

/// The `runs` commands on the data folder: `dead-letters` on an empty
/// store says so; with failed runs it lists them, `retry --all` re-queues
/// the ones with the given error code (and skips runs that are not
/// failed), `resolve --all` takes the rest off the list, and `show` prints
/// a run as JSON.
#[test]
fn runs_commands_list_retry_resolve_and_show_dead_letters() {
    let dir = folder(&[]);
    let cmd = |args: &[&str]| {
        let out = run(dir.path(), &[&["--data-dir", "data", "runs"], args].concat(), "");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "runs {args:?}: {stdout}\n{stderr}");
        stdout
    };
    assert_eq!(cmd(&["dead-letters", "orders"]).trim(), "no dead letters");

    let ids = failed_runs(&dir.path().join("data"), &["upstream_status", "timeout"]);
    let (bad_request, timed_out) = (&ids[0], &ids[1]);
    let listed = cmd(&["dead-letters", "orders"]);
    for id in &ids {
        let line = listed.lines().find(|l| l.starts_with(id.as_str()));
        let line = line.unwrap_or_else(|| panic!("{id} not listed: {listed}"));
        assert!(line.contains("failed") && line.contains("attempts=1"), "{line}");
    }
    let show = |id: &str| -> serde_json::Value { serde_json::from_str(&cmd(&["show", id])).unwrap() };
    let run = show(timed_out);
    assert_eq!(
        (
            &run["id"],
            &run["integration"],
            &run["status"],
            &run["error"]["code"]
        ),
        (
            &serde_json::json!(timed_out),
            &serde_json::json!("orders"),
            &serde_json::json!("failed"),
            &serde_json::json!("timeout")
        ),
        "{run}"
    );
    assert_eq!(run["attempts"][0]["outcome"], "failed", "{run}");

    let retried = cmd(&["retry", "--all", "orders", "--error-code", "upstream_status"]);
    assert!(retried.contains("re-queued 1 of 1 run(s)"), "{retried}");
    assert_eq!(show(bad_request)["status"], "queued");
    let listed = cmd(&["dead-letters", "orders"]);
    assert!(
        !listed.contains(bad_request.as_str()) && listed.contains(timed_out.as_str()),
        "{listed}"
    );
    let again = cmd(&["retry", bad_request]);
    assert!(
        again.contains("re-queued 0 of 1") && again.contains(&format!("{bad_request}: skipped")),
        "{again}"
    );

    let resolved = cmd(&["resolve", "--all", "orders"]);
    assert!(resolved.contains("resolved 1 of 1 run(s)"), "{resolved}");
    assert_eq!(cmd(&["dead-letters", "orders"]).trim(), "no dead letters");
    let run = show(timed_out);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["resolved_at_ms"].is_u64(), "{run}");
}

/// What a plugin logs reaches the terminal escaped: it cannot send control
/// sequences or forge a line of `invoke`'s own output.
#[test]
fn plugin_text_is_escaped_on_the_terminal() {
    let dir = folder(&["hostile"]);
    let input = r#"{"text": "\u001b[2J\u001b[31mred\n[callout] GET /forged -> 200", "count": 1}"#;
    let out = run(
        dir.path(),
        &["invoke", "hostile", "log-bomb", "--input", "-"],
        input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.contains('\u{1b}'), "raw escape on the terminal: {err:?}");
    assert!(err.contains("\\u{1b}[2J"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("[callout] GET /forged")),
        "{err}"
    );
}
