//! Loading the plugin folder: every kind of bad file is reported with its
//! name and cause, and good files load next to it.

use plugboard::plugins::FileStatus;
use plugboard_tests::{TestHost, plugin_file};

fn error_for(host: &TestHost, file: &str) -> String {
    let f = host
        .registry
        .files()
        .into_iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("`{file}` not seen"));
    assert_eq!(f.status, FileStatus::Failed, "{f:?}");
    f.error.unwrap()
}

/// Bad files are reported one by one; the good plugin beside them loads.
#[tokio::test]
async fn bad_files_are_reported_and_good_ones_load() {
    let host = TestHost::new(&["field-map"], vec![]).await;
    let dir = host.dir.path();
    std::fs::write(dir.join("notes.wasm"), "just text").unwrap();
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(
        dir.join("truncated.wasm"),
        &std::fs::read(plugin_file("field-map")).unwrap()[..2000],
    )
    .unwrap();
    for name in ["not-a-plugin", "bad-describe", "bad-manifest"] {
        std::fs::copy(plugin_file(name), dir.join(format!("{name}.wasm"))).unwrap();
    }
    std::fs::copy(plugin_file("field-map"), dir.join("field-map-copy.wasm")).unwrap();
    host.registry.scan().await;
    assert!(error_for(&host, "notes.wasm").contains("not a WebAssembly file"));
    assert!(error_for(&host, "core.wasm").contains("core WebAssembly module"));
    assert!(error_for(&host, "truncated.wasm").contains("not a valid component"));
    assert!(error_for(&host, "not-a-plugin.wasm").contains("neither the `connector` world"));
    assert!(error_for(&host, "bad-describe.wasm").contains("`describe` failed"));
    assert!(error_for(&host, "bad-manifest.wasm").contains("Not A Valid Name!"));
    let dup = error_for(&host, "field-map-copy.wasm");
    assert!(
        dup.contains("declares plugin `field-map`") && dup.contains("rename it to `field-map.wasm`"),
        "{dup}"
    );
    assert_eq!(host.plugin("field-map").file, "field-map.wasm");
}

/// A second host on the same data folder loads from the compile cache.
#[tokio::test]
async fn restart_loads_from_the_compile_cache() {
    let first = TestHost::new(&["rest-json"], vec![]).await;
    first.plugin("rest-json");
    let second = TestHost::new(&["rest-json"], vec![]).await;
    assert!(
        second.plugin("rest-json").compile.cached,
        "second load compiled again"
    );
}

/// The manifest is read and checked at load time.
#[tokio::test]
async fn manifests_are_loaded_with_operations_and_slots() {
    let host = TestHost::new(&["rest-json", "field-map"], vec![]).await;
    let rest = host.plugin("rest-json");
    assert_eq!(rest.kind, plugboard::sandbox::PluginKind::Connector);
    assert!(rest.operation_names().contains(&"get".to_string()));
    assert!(
        rest.manifest
            .credential_slots
            .iter()
            .any(|s| s.name == "api" && s.required)
    );
    assert!(rest.manifest.operations.iter().all(|o| o.input_schema.is_some()));
    assert_eq!(
        host.plugin("field-map").kind,
        plugboard::sandbox::PluginKind::Processor
    );
}
