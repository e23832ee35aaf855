//! What a hostile plugin can make the host hold, and whose grants it can
//! take: host memory per invocation stays within the plugin's limits
//! whatever it logs, calls or leaves open; a run too large for its record is
//! truncated, never lost; a file cannot claim another plugin's name or
//! grants; limits out of range are refused before they are used.

use std::sync::Arc;

use plugboard::limits::LimitOverrides;
use plugboard_tests::{TestHost, Upstream, credential, plugin_file};
use serde_json::{Value, json};

use crate::serve::{Server, install_plugins};
use crate::util::{call, error, output};

const MIB: usize = 1 << 20;

fn open_credential(up: &Upstream) -> plugboard::credentials::NamedCredential {
    credential(
        "crm",
        &format!("base_url = \"{}/api\"\nauth = {{ type = \"none\" }}", up.url()),
    )
}

/// Five thousand 1 MiB log lines: each is cut to 8 KiB, and lines past the
/// line count or the host budget are counted, not kept.
#[tokio::test]
async fn long_log_lines_are_cut_and_counted() {
    let host = TestHost::new(&["hostile"], vec![]).await;
    let inv = call(
        &host,
        "hostile",
        "log-bomb",
        json!({"bytes": MIB, "count": 5000}),
        &[],
    )
    .await;
    output(&inv);
    let limits = host.plugin("hostile").limits;
    assert!(inv.logs.len() <= 1001, "{} lines kept", inv.logs.len());
    for line in &inv.logs {
        assert!(
            line.message.len() <= 8 * 1024 + 64,
            "a line of {} bytes was kept",
            line.message.len()
        );
    }
    let kept: usize = inv.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= limits.host_memory_bytes as usize);
    assert!(inv.peak_host_memory_bytes <= limits.host_memory_bytes as usize);
    assert!(
        inv.logs
            .last()
            .unwrap()
            .message
            .contains("more log lines were dropped"),
        "{:?}",
        inv.logs.last()
    );
}

/// Thousands of refused callouts with 200 KB paths keep one record each at
/// most up to the budget, each cut short; the rest are counted.
#[tokio::test]
async fn refused_callouts_are_counted_not_kept() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![open_credential(&up)]).await;
    let input = json!({"path": "/x", "path_bytes": 200_000, "count": 3000});
    let inv = call(&host, "hostile", "callout-loop", input, &[("api", "crm")]).await;
    output(&inv);
    assert!(inv.callouts.len() <= 101, "{} records", inv.callouts.len());
    assert_eq!(inv.callouts.len() + inv.callouts_dropped, 3000);
    for c in &inv.callouts {
        assert!(
            c.url.len() <= 2100 && c.error.as_ref().is_none_or(|e| e.len() <= 1100),
            "{c:?}"
        );
    }
    assert!(up.seen().is_empty());
}

/// Request bodies a plugin starts and never finishes are read only a turn
/// at a time and only as far as the credential and the host budget allow.
#[tokio::test]
async fn unfinished_request_bodies_stay_within_the_budget() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![open_credential(&up)]).await;
    let inv = call(
        &host,
        "hostile",
        "body-bomb",
        json!({"count": 64, "bytes": 63 * MIB}),
        &[("api", "crm")],
    )
    .await;
    let limit = host.plugin("hostile").limits.host_memory_bytes as usize;
    assert!(
        inv.peak_host_memory_bytes <= limit,
        "{} > {limit}",
        inv.peak_host_memory_bytes
    );
}

/// Responses a plugin never reads hold their bytes of the budget; once it is
/// spent, further requests fail instead of piling up.
#[tokio::test]
async fn unread_responses_stay_within_the_budget() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![open_credential(&up)]).await;
    let inv = call(
        &host,
        "hostile",
        "unread-responses",
        json!({"count": 40, "path": "/big/6000000"}),
        &[("api", "crm")],
    )
    .await;
    let out = output(&inv);
    let answered = out["answered"].as_u64().unwrap();
    assert!(
        (1..=5).contains(&answered),
        "{answered} responses of 6 MB held in a 32 MiB budget"
    );
    assert!(inv.peak_host_memory_bytes <= 32 * MIB);
}

/// A million header sets: the resource table is capped from the budget, so
/// the plugin is stopped long before the host holds gigabytes for it.
#[tokio::test]
async fn header_sets_are_capped() {
    let host = TestHost::new(&["hostile"], vec![]).await;
    let inv = call(
        &host,
        "hostile",
        "fields-bomb",
        json!({"count": 1_000_000, "bytes": 1024}),
        &[],
    )
    .await;
    let e = error(&inv);
    assert_eq!(e.code(), "resource_limit_exceeded", "{e}");
    assert!(e.to_string().contains("more than 512 host resources"), "{e}");
    let again = output(&call(&host, "hostile", "echo-context", json!({}), &[]).await);
    assert!(again.get("run_id").is_some());
}

/// `describe` runs under the plugin's own limits: a file whose describe logs
/// a hundred 16 MiB lines loads with its log cut, and with a memory limit
/// too small for its 16 MiB line it is refused rather than given more.
#[tokio::test]
async fn describe_runs_under_the_plugins_own_limits() {
    let host = TestHost::new(&["describe-bomb"], vec![]).await;
    host.plugin("describe-bomb");
    let small = TestHost::with_config(&["describe-bomb"], vec![], |c| {
        let limits = LimitOverrides {
            memory_mib: Some(8),
            ..Default::default()
        };
        c.plugin_limits.insert("describe-bomb".into(), limits);
    })
    .await;
    let file = small
        .registry
        .files()
        .into_iter()
        .find(|f| f.file == "describe-bomb.wasm")
        .unwrap();
    let err = file.error.unwrap_or_default();
    assert!(
        err.contains("`describe` failed") && err.contains("memory limit of 8 MiB"),
        "{err}"
    );
}

/// At start-up a file sorting before the real one and declaring its name
/// is refused, and the real file serves.
#[tokio::test]
async fn an_impostor_file_at_start_up_does_not_take_the_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_file("hostile"), dir.path().join("aaa-impostor.wasm")).unwrap();
    let host = TestHost::with_config(&["hostile"], vec![], |c| {
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), c.plugin_dir.join(f.file_name())).unwrap();
        }
    })
    .await;
    assert_eq!(host.plugin("hostile").file, "hostile.wasm");
    let impostor = host
        .registry
        .files()
        .into_iter()
        .find(|f| f.file == "aaa-impostor.wasm")
        .unwrap();
    assert!(impostor.error.unwrap().contains("rename it to `hostile.wasm`"));
}

/// A credential can pin the plugin it allows to one file content: another
/// build under the same name is refused.
#[tokio::test]
async fn a_pinned_grant_follows_the_file_digest() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["hostile"], vec![]).await;
    let sha = host.plugin("hostile").sha256.clone();
    let pinned = |digest: &str| {
        credential(
            "crm",
            &format!(
                "base_url = \"{}/api\"\nauth = {{ type = \"none\" }}\nallowed_plugins = [\"hostile@sha256:{digest}\"]",
                up.url()
            ),
        )
    };
    let right = TestHost::new(&["hostile"], vec![pinned(&sha)]).await;
    let out = output(
        &call(
            &right,
            "hostile",
            "callout",
            json!({"path": "/x"}),
            &[("api", "crm")],
        )
        .await,
    );
    assert_eq!(out["ok"]["status"], 200, "{out}");
    let other = format!("{}{}", &sha[..63], if sha.ends_with('0') { "1" } else { "0" });
    let wrong = TestHost::new(&["hostile"], vec![pinned(&other)]).await;
    let out = output(
        &call(
            &wrong,
            "hostile",
            "callout",
            json!({"path": "/x"}),
            &[("api", "crm")],
        )
        .await,
    );
    assert!(
        out["err"]["detail"]
            .as_str()
            .unwrap()
            .contains("does not allow plugin `hostile`"),
        "{out}"
    );
    assert_eq!(up.seen().len(), 1);
}

/// Integration limits out of range are refused when saved, with the range;
/// nothing wraps to a zero limit or overflows a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_limits_out_of_range_are_refused() {
    let up = Upstream::start().await;
    let server = Server::start(&up).await;
    for (limits, named) in [
        (json!({"memory_mib": 1u64 << 44}), "memory_mib"),
        (json!({"timeout_ms": u64::MAX}), "timeout_ms"),
        (
            json!({"max_callouts": 0, "max_input_bytes": 0}),
            "max_input_bytes",
        ),
        (json!({"host_memory_mib": 100_000}), "host_memory_mib"),
    ] {
        let def = json!({"name": "limits", "connector": {"plugin": "rest-json", "operation": "get"},
            "bindings": {"api": "crm"}, "limits": limits});
        let (status, body) = server.admin("POST", "/v1/integrations", Some(def)).await;
        assert_eq!(status, 422, "{limits}: {body}");
        let text = body.to_string();
        assert!(
            text.contains(named) && text.contains("out of range: allowed is"),
            "{text}"
        );
    }
}

/// The figures of one bomb run: host RSS before, peak during, and the bound.
struct Peak {
    before_mib: u64,
    peak_mib: u64,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `input` through `count` integrations of `op` at once and returns
/// the server's RSS before and its peak during (the peak is reset first).
async fn bomb(server: &Server, op: &str, input: &Value, count: usize) -> Peak {
    let pid = server.child.id();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    let before_mib = status_kib(pid, "VmRSS:") / 1024;
    let server = Arc::new((server.url.clone(), server.admin.clone()));
    let calls: Vec<_> = (0..count)
        .map(|i| {
            let (op, input, server) = (op.to_string(), input.to_string(), server.clone());
            tokio::spawn(async move {
                let path = format!("/v1/integrations/bomb-{op}-{i}/invoke");
                crate::serve::post_json(&server.0, &path, &server.1, &input).await
            })
        })
        .collect();
    for c in calls {
        let status = c.await.unwrap();
        assert!(status > 0, "{op}: the server did not answer");
    }
    Peak {
        before_mib,
        peak_mib: status_kib(pid, "VmHWM:") / 1024,
    }
}

/// Each bomb, `max_instances` at once through the real server: the host's
/// RSS stays below what its limits allow (`max_instances` x (memory limit +
/// host memory limit), plus slack for the runtime), and it answers a good
/// call afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_at_full_concurrency_keep_host_memory_bounded() {
    const INSTANCES: usize = 8;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["hostile"]);
    let config = format!(
        "data_dir = \"data\"\n[sandbox]\nmax_instances = {INSTANCES}\n[credentials.crm]\nallow_http = true\nallowed_plugins = [\"hostile\"]\nbase_url = \"{}/api\"\n",
        up.url()
    );
    std::fs::write(dir.path().join("plugboard.toml"), config).unwrap();
    let server = Server::spawn(dir, None).await;
    let bombs = [
        ("log-bomb", json!({"bytes": MIB, "count": 300})),
        (
            "callout-loop",
            json!({"path": "/x", "path_bytes": 200_000, "count": 1000}),
        ),
        ("body-bomb", json!({"count": 64, "bytes": 8 * MIB})),
        ("fields-bomb", json!({"count": 200_000, "bytes": 1024})),
        ("unread-responses", json!({"count": 40, "path": "/big/6000000"})),
    ];
    for (op, _) in &bombs {
        for i in 0..INSTANCES {
            let def = json!({"name": format!("bomb-{op}-{i}"), "connector": {"plugin": "hostile", "operation": op},
                "bindings": {"api": "crm"}});
            assert_eq!(server.admin("POST", "/v1/integrations", Some(def)).await.0, 201);
            let (s, v) = server
                .admin("POST", &format!("/v1/integrations/bomb-{op}-{i}/activate"), None)
                .await;
            assert_eq!(s, 200, "{v}");
        }
    }
    // 64 MiB linear memory and 32 MiB host memory per instance by default.
    let per_instance_mib = 64 + 32;
    let mut figures = Vec::new();
    for (op, input) in &bombs {
        let peak = bomb(&server, op, input, INSTANCES).await;
        let bound = peak.before_mib + (INSTANCES as u64) * per_instance_mib + 64;
        eprintln!(
            "bomb {op}: RSS {} MiB before, peak {} MiB, bound {bound} MiB",
            peak.before_mib, peak.peak_mib
        );
        figures.push((op, peak.peak_mib, bound));
    }
    for (op, peak, bound) in &figures {
        assert!(
            peak <= bound,
            "{op}: peak RSS {peak} MiB above the bound of {bound} MiB"
        );
    }
    let def = json!({"name": "good", "connector": {"plugin": "hostile", "operation": "echo-context"}, "bindings": {"api": "crm"}});
    assert_eq!(server.admin("POST", "/v1/integrations", Some(def)).await.0, 201);
    assert_eq!(
        server
            .admin("POST", "/v1/integrations/good/activate", None)
            .await
            .0,
        200
    );
    let (s, _, v) = server
        .call(
            "POST",
            "/v1/integrations/good/invoke",
            Some(&server.admin),
            Some("{}"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// A run whose steps would not fit a run record is stored truncated with a
/// marker, and reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_run_record_is_truncated_not_lost() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["hostile"]);
    std::fs::write(dir.path().join("plugboard.toml"), "data_dir = \"data\"\n").unwrap();
    let server = Server::spawn(dir, None).await;
    let _ = up;
    let def = json!({"name": "chatty", "connector": {"plugin": "hostile", "operation": "log-bomb"}});
    assert_eq!(server.admin("POST", "/v1/integrations", Some(def)).await.0, 201);
    assert_eq!(
        server
            .admin("POST", "/v1/integrations/chatty/activate", None)
            .await
            .0,
        200
    );
    let body = json!({"bytes": 8 * 1024, "count": 1000}).to_string();
    let (s, run, v) = server
        .call(
            "POST",
            "/v1/integrations/chatty/invoke",
            Some(&server.admin),
            Some(&body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, record) = server
        .admin("GET", &format!("/v1/runs/{}", run.unwrap()), None)
        .await;
    assert_eq!(s, 200, "{record}");
    let step = &record["steps"][0];
    assert!(
        step["truncated"]["logs"].as_u64().unwrap() > 0,
        "{}",
        step["truncated"]
    );
    assert!(record.to_string().len() <= 5 * MIB);
}
