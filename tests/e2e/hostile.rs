//! Hostile plugins: each is stopped with the right error, and the host
//! serves the next call.

use std::time::{Duration, Instant};

use plugboard_tests::TestHost;
use serde_json::json;

use crate::util::{call, error, output};

async fn host_with_limits(timeout_ms: u64, memory_mib: u64) -> TestHost {
    TestHost::with_config(&["hostile"], vec![], |c| {
        c.plugin_limits.insert(
            "hostile".into(),
            plugboard::limits::LimitOverrides {
                timeout_ms: Some(timeout_ms),
                memory_mib: Some(memory_mib),
                max_output_bytes: Some(1 << 20),
                ..Default::default()
            },
        );
    })
    .await
}

/// Checks the host still serves a normal call after a hostile one.
async fn still_serving(host: &TestHost) {
    let out = output(&call(host, "hostile", "echo-context", json!({}), &[]).await);
    assert_eq!(out["run_id"], "run-test-1");
}

/// An infinite loop is stopped at the wall-time limit.
#[tokio::test]
async fn infinite_loop_times_out() {
    let host = host_with_limits(500, 64).await;
    let started = Instant::now();
    let inv = call(&host, "hostile", "spin", json!({}), &[]).await;
    assert_eq!(error(&inv).code(), "timeout", "{}", error(&inv));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    still_serving(&host).await;
}

/// A spinning plugin does not starve other invocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_plugin_does_not_block_others() {
    let host = std::sync::Arc::new(host_with_limits(2000, 64).await);
    let h = host.clone();
    let spinner = tokio::spawn(async move { call(&h, "hostile", "spin", json!({}), &[]).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    still_serving(&host).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "blocked for {:?}",
        started.elapsed()
    );
    assert_eq!(error(&spinner.await.unwrap()).code(), "timeout");
}

/// Growing memory past the limit fails with a memory error.
#[tokio::test]
async fn memory_growth_hits_the_memory_limit() {
    let host = host_with_limits(10_000, 32).await;
    let inv = call(&host, "hostile", "grow", json!({}), &[]).await;
    let e = error(&inv);
    assert_eq!(e.code(), "memory_limit_exceeded", "{e}");
    assert!(e.to_string().contains("32 MiB"), "{e}");
    assert!(inv.peak_memory_bytes <= 32 << 20);
    still_serving(&host).await;
}

/// Runaway recursion is a stack overflow, not a host crash.
#[tokio::test]
async fn deep_recursion_overflows_the_stack_cleanly() {
    let host = host_with_limits(10_000, 64).await;
    let inv = call(&host, "hostile", "recurse", json!({}), &[]).await;
    assert_eq!(error(&inv).code(), "stack_overflow", "{}", error(&inv));
    still_serving(&host).await;
}

/// Overflowing the language's own stack in linear memory is a crash whose
/// message points at recursion.
#[tokio::test]
async fn shadow_stack_overflow_is_explained() {
    let host = host_with_limits(10_000, 64).await;
    let inv = call(&host, "hostile", "recurse", json!({"frame": "shadow"}), &[]).await;
    let e = error(&inv);
    assert_eq!(e.code(), "plugin_crashed", "{e}");
    assert!(e.to_string().contains("runaway recursion"), "{e}");
    still_serving(&host).await;
}

/// Output over the limit is refused.
#[tokio::test]
async fn huge_output_is_refused() {
    let host = host_with_limits(10_000, 64).await;
    let inv = call(&host, "hostile", "huge-output", json!({"bytes": 4 << 20}), &[]).await;
    let e = error(&inv);
    assert_eq!(e.code(), "output_too_large", "{e}");
    still_serving(&host).await;
}

/// A panic is reported as a crash with the panic message.
#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let host = host_with_limits(10_000, 64).await;
    let inv = call(&host, "hostile", "panic", json!({}), &[]).await;
    let e = error(&inv);
    assert_eq!(e.code(), "plugin_crashed");
    assert!(e.to_string().contains("plugin bug"), "{e}");
    assert!(!e.to_string().contains("RUST_BACKTRACE"), "{e}");
    still_serving(&host).await;
}

/// Output that is not JSON is refused.
#[tokio::test]
async fn non_json_output_is_refused() {
    let host = host_with_limits(10_000, 64).await;
    assert_eq!(
        error(&call(&host, "hostile", "bad-json", json!({}), &[]).await).code(),
        "output_not_json"
    );
}

/// No files, no environment, no arguments, no sockets.
#[tokio::test]
async fn wasi_gives_no_files_env_or_sockets() {
    let host = host_with_limits(10_000, 64).await;
    let out = output(&call(&host, "hostile", "read-file", json!({"path": "/etc/passwd"}), &[]).await);
    for k in ["file", "root", "cwd"] {
        assert!(out[k].as_str().unwrap().starts_with("err"), "{k}: {out}");
    }
    let out = output(&call(&host, "hostile", "read-env", json!({}), &[]).await);
    assert_eq!(out["vars"], json!([]), "{out}");
    let out = output(&call(&host, "hostile", "tcp", json!({"addr": "127.0.0.1:22"}), &[]).await);
    assert!(out["result"].as_str().unwrap().starts_with("err"), "{out}");
}

/// What a plugin prints and logs is captured with the invocation.
#[tokio::test]
async fn prints_and_logs_are_captured_with_the_invocation() {
    let host = host_with_limits(10_000, 64).await;
    let inv = call(&host, "hostile", "print", json!({"lines": 2}), &[]).await;
    output(&inv);
    let levels: Vec<&str> = inv.logs.iter().map(|l| l.level.as_str()).collect();
    assert!(
        levels.contains(&"info") && levels.contains(&"stdout") && levels.contains(&"stderr"),
        "{:?}",
        inv.logs
    );
    assert!(inv.logs.iter().any(|l| l.message.contains("to stdout")));
}

/// A plugin's own error arrives unchanged, details included.
#[tokio::test]
async fn plugin_errors_pass_through_structured() {
    let host = host_with_limits(10_000, 64).await;
    let input = json!({"code": "rate_limited", "message": "slow down", "retryable": true, "details": "{\"retry_after\": 3}"});
    let e = error(&call(&host, "hostile", "fail", input, &[]).await).clone();
    assert_eq!((e.code(), e.retryable()), ("rate_limited", true));
    assert_eq!(e.to_json()["details"], json!({"retry_after": 3}));
}

/// Input that is not JSON or is too large never reaches the plugin.
#[tokio::test]
async fn bad_input_is_refused_before_the_plugin_runs() {
    let host = TestHost::with_config(&["hostile"], vec![], |c| {
        c.plugin_limits.insert(
            "hostile".into(),
            plugboard::limits::LimitOverrides {
                max_input_bytes: Some(100),
                ..Default::default()
            },
        );
    })
    .await;
    let plugin = host.plugin("hostile");
    let mut req = plugboard::sandbox::ConnectorCall {
        operation: "echo-context".into(),
        input: "{not json".into(),
        bindings: Default::default(),
        config: plugboard::sandbox::empty_config(),
        run_id: "r".into(),
        attempt: 1,
        integration: None,
        limits: Default::default(),
    };
    let inv = host.registry.sandbox().invoke(&plugin, req.clone()).await;
    assert_eq!(error(&inv).code(), "input_not_json");
    req.input = format!("\"{}\"", "a".repeat(200));
    assert_eq!(
        error(&host.registry.sandbox().invoke(&plugin, req.clone()).await).code(),
        "input_too_large"
    );
    req.operation = "nope".into();
    let inv = host.registry.sandbox().invoke(&plugin, req).await;
    assert!(
        error(&inv).to_string().contains("spin"),
        "lists the operations: {}",
        error(&inv)
    );
}

/// Memory a plugin fills and leaves behind is gone for the next instance,
/// also with slots kept resident between instances: a scan of the whole
/// linear memory finds only the marker's own copy in the scanner's data.
#[tokio::test]
async fn a_fresh_instance_sees_nothing_of_the_previous_one() {
    let host = TestHost::new(&["hostile"], vec![]).await;
    let scan = || async {
        let out = output(&call(&host, "hostile", "scan-memory", json!({"mib": 8}), &[]).await);
        (
            out["marks"].as_u64().unwrap(),
            out["scanned_mib"].as_u64().unwrap(),
        )
    };
    let (baseline, scanned) = scan().await;
    assert!(scanned >= 8, "{scanned}");
    let own = output(
        &call(
            &host,
            "hostile",
            "scan-memory",
            json!({"mib": 8, "mark_first": true}),
            &[],
        )
        .await,
    );
    assert!(
        own["marks"].as_u64().unwrap() >= baseline + (8 << 20) / 16,
        "the scan misses marks: {own}"
    );
    for _ in 0..4 {
        let out = output(&call(&host, "hostile", "mark-memory", json!({"mib": 8}), &[]).await);
        assert_eq!(out["marked_mib"], 8);
        assert_eq!(scan().await.0, baseline, "a mark survived into the next instance");
    }
}
