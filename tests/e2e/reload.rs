//! Hot reload: the watcher picks up added, replaced and removed files while
//! calls run, and a broken replacement never displaces a good version.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::plugins::{FileStatus, Watcher};
use plugboard_tests::{TestHost, plugin_file};
use serde_json::json;

use crate::util::{output, process};

/// Waits (up to 10 s) for `check` to hold; returns how long it took.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}

/// Replaces `to` with `from`'s content the way deploy tools do: write
/// beside it, then rename over it.
fn replace_atomically(from: &Path, to: &Path) {
    let tmp = to.with_extension("upload");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn version(host: &TestHost) -> Option<String> {
    host.registry.get("echo").map(|p| p.manifest.version.clone())
}

/// Adding a file makes its plugin callable; removing it retires the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_files_load_and_removed_files_retire_while_running() {
    let host = TestHost::new(&[], vec![]).await;
    let _watch = Watcher::start(host.registry.clone());
    let file = host.dir.path().join("echo.wasm");
    replace_atomically(&plugin_file("echo"), &file);
    eventually("echo loads", || version(&host).is_some()).await;
    assert_eq!(
        output(&process(&host, "echo", json!({"a": 1}), json!({})).await)["input"],
        json!({"a": 1})
    );
    std::fs::remove_file(&file).unwrap();
    eventually("echo retires", || version(&host).is_none()).await;
    assert!(host.registry.files().is_empty());
}

/// A replacement swaps in atomically: the call in flight finishes on the
/// old version, the next call gets the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacement_keeps_in_flight_calls_on_their_version() {
    let host = Arc::new(TestHost::new(&["echo"], vec![]).await);
    let _watch = Watcher::start(host.registry.clone());
    let h = host.clone();
    let in_flight =
        tokio::spawn(async move { process(&h, "echo", json!({"sleep_ms": 1500}), json!({})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    replace_atomically(&plugin_file("echo-v2"), &host.dir.path().join("echo.wasm"));
    eventually("v2 serves", || version(&host).as_deref() == Some("2.0.0")).await;
    let old = output(&in_flight.await.unwrap());
    assert_eq!(old["version"], "1", "the in-flight call kept its version");
    let new = output(&process(&host, "echo", json!({}), json!({})).await);
    assert_eq!(new["version"], "2");
}

/// A broken file replacing a good one is reported; the good version keeps
/// serving until a loadable file arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replacement_keeps_the_previous_version_serving() {
    let host = TestHost::new(&["echo"], vec![]).await;
    let _watch = Watcher::start(host.registry.clone());
    let file = host.dir.path().join("echo.wasm");
    let broken = host.dir.path().join("broken.bin");
    std::fs::write(&broken, "garbage").unwrap();
    replace_atomically(&broken, &file);
    let failed = || {
        host.registry
            .files()
            .iter()
            .any(|f| f.file == "echo.wasm" && f.status == FileStatus::Failed)
    };
    eventually("the broken file is reported", failed).await;
    let entry = host
        .registry
        .files()
        .into_iter()
        .find(|f| f.file == "echo.wasm")
        .unwrap();
    assert!(entry.error.unwrap().contains("not a WebAssembly file"));
    assert_eq!(version(&host).as_deref(), Some("1.0.0"), "v1 keeps serving");
    assert_eq!(
        output(&process(&host, "echo", json!({}), json!({})).await)["version"],
        "1"
    );
    replace_atomically(&plugin_file("echo-v2"), &file);
    eventually("v2 serves", || version(&host).as_deref() == Some("2.0.0")).await;
}

/// A file whose code claims another plugin's name is refused, while the
/// host runs and after the real file goes, and never displaces the plugin
/// that owns the name: grants and limits follow the operator's file name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_claiming_another_plugins_name_never_takes_it() {
    let host = TestHost::new(&["echo"], vec![]).await;
    std::fs::copy(plugin_file("echo-v2"), host.dir.path().join("echo-new.wasm")).unwrap();
    host.registry.scan().await;
    assert_eq!(version(&host).as_deref(), Some("1.0.0"));
    assert_eq!(host.plugin("echo").file, "echo.wasm");
    let refused = |host: &TestHost| {
        host.registry
            .files()
            .into_iter()
            .find(|f| f.file == "echo-new.wasm")
            .and_then(|f| f.error)
            .unwrap_or_default()
    };
    assert!(
        refused(&host).contains("rename it to `echo.wasm`"),
        "{}",
        refused(&host)
    );
    std::fs::remove_file(host.dir.path().join("echo.wasm")).unwrap();
    host.registry.scan().await;
    assert!(host.registry.get("echo").is_none(), "the impostor took the name");
    assert!(host.registry.get("echo-new").is_none());
}
