//! The `plugboard` binary, run as a user runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

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
