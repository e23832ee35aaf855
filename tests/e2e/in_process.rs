//! A whole host started in-process through the library's `Host`, as
//! `plugboard serve` starts it: open from a config, serve on a listener
//! bound to `127.0.0.1:0`, shut down by a future, with requests in flight
//! finishing and every run stored before `until` returns.

use std::time::Duration;

use plugboard::config::Config;
use plugboard::host::Host;
use plugboard::store::{Role, RunFilter, Store};
use plugboard_tests::{Upstream, secret_ref};
use serde_json::json;

use crate::serve::{install_plugins, post_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_serves_in_process_and_stores_every_run_on_shutdown() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    install_plugins(dir.path(), &["rest-json"]);
    let root = dir.path().display();
    let config = Config::parse(&format!(
        "plugin_dir = \"{root}/plugins.d\"\ndata_dir = \"{root}/data\"\n[credentials.crm]\nallow_http = true\nallowed_plugins = [\"rest-json\"]\nbase_url = \"{}\"\nauth = {{ type = \"bearer\", token = \"{}\" }}\n",
        up.url(),
        secret_ref("in-process-token")
    ))
    .unwrap();
    let host = Host::open(config).unwrap();
    let (_, admin) = host.store().create_token("admin", Role::Admin, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serving = host.start(listener).await.unwrap();
    let base = format!("http://{}", serving.addr());

    let definition = json!({
        "name": "orders",
        "connector": {"plugin": "rest-json", "operation": "post"},
        "bindings": {"api": "crm"},
    });
    assert_eq!(
        post_json(&base, "/v1/integrations", &admin, &definition.to_string()).await,
        201
    );
    assert_eq!(
        post_json(&base, "/v1/integrations/orders/activate", &admin, "{}").await,
        200
    );
    let input = json!({"path": "/orders", "body": {"n": 1}}).to_string();
    for _ in 0..5 {
        assert_eq!(
            post_json(&base, "/v1/integrations/orders/invoke", &admin, &input).await,
            200
        );
    }

    // A slow invocation is in flight when the shutdown comes: it finishes.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(serving.until(async move {
        let _ = stopped.await;
    }));
    let slow = {
        let (base, admin) = (base.clone(), admin.clone());
        tokio::spawn(async move {
            let input = json!({"path": "/slow/600", "body": {}}).to_string();
            post_json(&base, "/v1/integrations/orders/invoke", &admin, &input).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    assert_eq!(slow.await.unwrap(), 200, "the request in flight was cut off");
    tokio::time::timeout(Duration::from_secs(20), done)
        .await
        .expect("the host shut down")
        .unwrap()
        .unwrap();
    assert_eq!(
        post_json(&base, "/v1/integrations/orders/invoke", &admin, &input).await,
        0,
        "the host still answers after shutdown"
    );

    // Every run is in the store once `until` has returned.
    let store = Store::open(&dir.path().join("data")).unwrap();
    let runs = store.list_runs(&RunFilter::default()).unwrap();
    assert_eq!(runs.len(), 6, "{runs:?}");
}
