//! `echo`: a test fixture processor that returns
//! `{"version": "<VERSION>", "input": <input>}`. VERSION is `1` by default
//! and `2` with the cargo feature `v2`, so the host's tests can swap one
//! build for the other. An input field `sleep_ms` busy-waits first.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugboard:plugin/processor",
    generate_all,
});

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `1` or, with the feature `v2`, `2`.
const VERSION: &str = if cfg!(feature = "v2") { "2" } else { "1" };

struct Echo;

impl Guest for Echo {
    fn describe() -> Manifest {
        Manifest {
            name: "echo".into(),
            version: format!("{VERSION}.0.0"),
            description: "Test fixture: echoes its input with the build's version.".into(),
            operations: Vec::new(),
            credential_slots: Vec::new(),
        }
    }

    fn process(input: String) -> Result<String, PluginError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| PluginError {
            code: "invalid_input".into(),
            message: format!("input is not JSON: {e}"),
            retryable: false,
            details: None,
        })?;
        busy_wait(input.get("sleep_ms").and_then(Value::as_u64).unwrap_or(0));
        Ok(json!({"version": VERSION, "input": input}).to_string())
    }
}

export!(Echo);

/// Spin for `ms` milliseconds.
fn busy_wait(ms: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(ms) {
        std::hint::spin_loop();
    }
}
