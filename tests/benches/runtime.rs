//! Runtime benchmark: per example plugin, instantiate+call latency (median,
//! p99) and calls per second on one core, each next to a baseline measured
//! in the same run; and the time from a new file appearing in the plugin
//! folder to its first successful call, cold and with the compile cache.
//!
//! Run with `make bench`. Figures are printed as a Markdown table for the
//! README. Set `BENCH_ITERATIONS` to change the sample size (default 2000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use plugboard::callout::CalloutPolicy;
use plugboard::config::Config;
use plugboard::plugins::{Registry, Watcher};
use plugboard::sandbox::{ConnectorCall, Sandbox, empty_config};
use plugboard_tests::{Upstream, credential, plugin_file, secret_ref};
use serde_json::{Value, json};

struct Stats {
    median: Duration,
    p99: Duration,
    per_sec: f64,
}

fn stats(mut samples: Vec<Duration>, total: Duration) -> Stats {
    samples.sort();
    let n = samples.len();
    Stats {
        median: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        per_sec: n as f64 / total.as_secs_f64(),
    }
}

async fn measure<F, Fut>(iterations: usize, mut f: F) -> Stats
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..iterations / 10 {
        f().await; // warm-up
    }
    let mut samples = Vec::with_capacity(iterations);
    let start = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    stats(samples, start.elapsed())
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn host(dir: &std::path::Path, data: &std::path::Path, up: &Upstream) -> Arc<Registry> {
    let cred = credential(
        "crm",
        &format!(
            "base_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}",
            up.url(),
            secret_ref("bench")
        ),
    );
    let mut config = Config {
        plugin_dir: dir.to_path_buf(),
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    config.credentials.insert("crm".into(), cred);
    let config = Arc::new(config);
    let policy = Arc::new(CalloutPolicy::new(config.credentials.values().cloned()));
    let sandbox = Arc::new(Sandbox::new(&config.sandbox, policy).expect("sandbox"));
    Arc::new(Registry::open(config, sandbox).expect("registry"))
}

async fn plugin_rows(iterations: usize, up: &Upstream) {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    for p in ["rest-json", "http-fetch", "field-map", "validate"] {
        std::fs::copy(plugin_file(p), dir.path().join(format!("{p}.wasm"))).unwrap();
    }
    let registry = host(dir.path(), data.path(), up).await;
    registry.scan().await;
    let sandbox = registry.sandbox().clone();
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("{}/v1/ping", up.url()).parse().unwrap();
    let base_http = measure(iterations, || {
        let (client, uri) = (client.clone(), uri.clone());
        async move {
            let resp = client.get(uri).await.unwrap();
            resp.into_body().collect().await.unwrap();
        }
    })
    .await;
    let doc = json!({"customer": {"name": " Ada ", "mail": "ADA@X.ORG", "tags": ["a", "b"], "id": 7}});
    let base_json = measure(iterations, || {
        let text = doc.to_string();
        async move {
            let v: Value = serde_json::from_str(&text).unwrap();
            std::hint::black_box(serde_json::to_string(&v).unwrap());
        }
    })
    .await;
    println!("| plugin | size | median | p99 | calls/s (1 core) | baseline | baseline median | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for name in ["rest-json", "http-fetch"] {
        let plugin = registry.get(name).unwrap();
        let s = measure(iterations, || {
            let (sandbox, plugin) = (sandbox.clone(), plugin.clone());
            async move {
                let call = ConnectorCall {
                    operation: "get".into(),
                    input: r#"{"path": "/v1/ping"}"#.into(),
                    bindings: [("api".to_string(), "crm".to_string())].into(),
                    config: empty_config(),
                    run_id: "bench".into(),
                    attempt: 1,
                    integration: None,
                };
                assert!(sandbox.invoke(&plugin, call).await.output.is_ok());
            }
        })
        .await;
        row(
            name,
            plugin.size,
            &s,
            "direct HTTP GET, same upstream",
            &base_http,
        );
    }
    let configs = [
        (
            "field-map",
            json!({"mappings": [{"from": "/customer/name", "to": "/name", "transform": "trim"}, {"from": "/customer/mail", "to": "/email", "transform": "lowercase"}]}),
        ),
        (
            "validate",
            json!({"schema": {"type": "object", "required": ["customer"]}}),
        ),
    ];
    for (name, config) in configs {
        let plugin = registry.get(name).unwrap();
        let Value::Object(config) = config else {
            unreachable!()
        };
        let config = Arc::new(config);
        let input = doc.to_string();
        let s = measure(iterations, || {
            let (sandbox, plugin, config, input) =
                (sandbox.clone(), plugin.clone(), config.clone(), input.clone());
            async move { assert!(sandbox.process(&plugin, &input, config).await.output.is_ok()) }
        })
        .await;
        row(name, plugin.size, &s, "native serde_json parse+print", &base_json);
    }
}

fn row(name: &str, size: u64, s: &Stats, base_name: &str, base: &Stats) {
    println!(
        "| {name} | {} KiB | {} | {} | {:.0} | {base_name} | {} | {:.1}x |",
        size / 1024,
        us(s.median),
        us(s.p99),
        s.per_sec,
        us(base.median),
        s.median.as_secs_f64() / base.median.as_secs_f64()
    );
}

/// Time from copying `name` into a watched folder to its first good call.
async fn file_to_first_call(name: &str, data: &std::path::Path, up: &Upstream) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let registry = host(dir.path(), data, up).await;
    registry.scan().await;
    let _watch = Watcher::start(registry.clone());
    let tmp = dir.path().join("upload.tmp");
    std::fs::copy(plugin_file(name), &tmp).unwrap();
    let start = Instant::now();
    std::fs::rename(&tmp, dir.path().join(format!("{name}.wasm"))).unwrap();
    loop {
        if let Some(p) = registry.get(name)
            && registry
                .sandbox()
                .process(&p, "{}", empty_config())
                .await
                .output
                .is_ok()
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // One worker thread: "calls per second on one core".
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = Upstream::start().await;
        println!("## instantiate + call, {iterations} sequential calls per row\n");
        plugin_rows(iterations, &up).await;
        println!("\n## new file to first successful call (field-map)\n");
        let data = tempfile::tempdir().unwrap();
        let cold = file_to_first_call("field-map", data.path(), &up).await;
        let cached = file_to_first_call("field-map", data.path(), &up).await;
        println!(
            "| cache | time |\n|---|---|\n| cold (compiles) | {} ms |\n| cached | {} ms |",
            cold.as_millis(),
            cached.as_millis()
        );
    });
}
