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
use plugboard::config::Config;
use plugboard::plugins::{Registry, Watcher};
use plugboard::sandbox::ConnectorCall;
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
    plugboard::host::build_registry(config).expect("registry")
}

/// One example plugin and how to call it.
struct Case {
    name: &'static str,
    language: &'static str,
    /// Connector operation, or `None` for a processor.
    operation: Option<&'static str>,
    config: Value,
}

fn cases() -> Vec<Case> {
    let map = json!({"mappings": [{"from": "/customer/name", "to": "/name", "transform": "trim"}, {"from": "/customer/mail", "to": "/email", "transform": "lowercase"}]});
    let schema = json!({"schema": {"type": "object", "required": ["customer"]}});
    let connector = |name, language| Case {
        name,
        language,
        operation: Some("get"),
        config: json!({}),
    };
    vec![
        connector("rest-json", "Rust"),
        connector("http-fetch", "Rust"),
        Case {
            name: "field-map",
            language: "Rust",
            operation: None,
            config: map.clone(),
        },
        Case {
            name: "validate",
            language: "Rust",
            operation: None,
            config: schema,
        },
        connector("js-rest", "JavaScript"),
        connector("py-rest", "Python"),
        Case {
            name: "py-field-map",
            language: "Python",
            operation: None,
            config: map,
        },
    ]
}

/// Compiles every case's plugin into an empty cache, then loads it again
/// from the cache, and prints both times.
async fn load_rows(up: &Upstream) -> (Arc<Registry>, [tempfile::TempDir; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    for c in cases() {
        std::fs::copy(plugin_file(c.name), dir.path().join(format!("{}.wasm", c.name))).unwrap();
    }
    let cold = host(dir.path(), data.path(), up).await;
    cold.scan().await;
    let warm = host(dir.path(), data.path(), up).await;
    warm.scan().await;
    println!("| plugin | language | component size | first compile | load from cache |");
    println!("|---|---|---|---|---|");
    for c in cases() {
        let (first, again) = (cold.get(c.name).unwrap(), warm.get(c.name).unwrap());
        assert!(!first.compile.cached && again.compile.cached);
        println!(
            "| {} | {} | {:.1} MiB | {:.2} s | {} ms |",
            c.name,
            c.language,
            first.size as f64 / 1048576.0,
            first.compile.duration.as_secs_f64(),
            again.compile.duration.as_millis()
        );
    }
    (warm, [dir, data])
}

async fn plugin_rows(iterations: usize, up: &Upstream, registry: &Registry) {
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
    println!(
        "| plugin | median | p99 | calls/s (1 core) | memory per instance | baseline | baseline median | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for c in cases() {
        let plugin = registry.get(c.name).unwrap();
        let Value::Object(config) = c.config else {
            unreachable!()
        };
        let config = Arc::new(config);
        let input = match c.operation {
            Some(_) => r#"{"path": "/v1/ping"}"#.to_string(),
            None => doc.to_string(),
        };
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let s = measure(iterations, || {
            let (sandbox, plugin, config, input, peak) = (
                sandbox.clone(),
                plugin.clone(),
                config.clone(),
                input.clone(),
                peak.clone(),
            );
            async move {
                let inv = match c.operation {
                    Some(op) => sandbox.invoke(&plugin, connector_call(op, &input, config)).await,
                    None => sandbox.process(&plugin, &input, config).await,
                };
                assert!(inv.output.is_ok(), "{:?}", inv.output);
                peak.fetch_max(inv.peak_memory_bytes, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .await;
        let (base_name, base) = match c.operation {
            Some(_) => ("direct HTTP GET, same upstream", &base_http),
            None => ("native serde_json parse+print", &base_json),
        };
        row(
            c.name,
            peak.load(std::sync::atomic::Ordering::Relaxed),
            &s,
            base_name,
            base,
        );
    }
}

fn connector_call(op: &str, input: &str, config: plugboard::sandbox::PluginConfig) -> ConnectorCall {
    ConnectorCall {
        operation: op.into(),
        input: input.into(),
        bindings: [("api".to_string(), "crm".to_string())].into(),
        config,
        run_id: "bench".into(),
        attempt: 1,
        integration: None,
        limits: Default::default(),
    }
}

fn row(name: &str, peak_memory: usize, s: &Stats, base_name: &str, base: &Stats) {
    println!(
        "| {name} | {} | {} | {:.0} | {:.1} MiB | {base_name} | {} | {:.1}x |",
        us(s.median),
        us(s.p99),
        s.per_sec,
        peak_memory as f64 / 1048576.0,
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
    let Value::Object(m) = json!({"mappings": [{"from": "/a", "to": "/b"}]}) else {
        unreachable!()
    };
    let mapping = Arc::new(m);
    let start = Instant::now();
    std::fs::rename(&tmp, dir.path().join(format!("{name}.wasm"))).unwrap();
    loop {
        if let Some(p) = registry.get(name)
            && registry
                .sandbox()
                .process(&p, "{}", mapping.clone())
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
        println!("## loading\n");
        let (registry, _folders) = load_rows(&up).await;
        println!("\n## instantiate + call, {iterations} sequential calls per row\n");
        plugin_rows(iterations, &up, &registry).await;
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
