//! Small helpers shared by the test modules.

use plugboard::sandbox::{ConnectorCall, Invocation};
use plugboard_tests::TestHost;
use serde_json::Value;

/// Runs a connector operation with `api` (and any other slots) bound.
pub async fn call(
    host: &TestHost,
    plugin: &str,
    op: &str,
    input: Value,
    bindings: &[(&str, &str)],
) -> Invocation {
    let plugin = host.plugin(plugin);
    let call = ConnectorCall {
        operation: op.into(),
        input: input.to_string(),
        bindings: bindings
            .iter()
            .map(|(s, c)| (s.to_string(), c.to_string()))
            .collect(),
        config: plugboard::sandbox::empty_config(),
        run_id: "run-test-1".into(),
        attempt: 1,
        integration: Some("test".into()),
        limits: Default::default(),
    };
    host.registry.sandbox().invoke(&plugin, call).await
}

/// Runs a processor with a JSON config.
pub async fn process(host: &TestHost, plugin: &str, input: Value, config: Value) -> Invocation {
    let plugin = host.plugin(plugin);
    let Value::Object(config) = config else {
        panic!("config must be an object")
    };
    host.registry
        .sandbox()
        .process(&plugin, &input.to_string(), std::sync::Arc::new(config))
        .await
}

/// The output as JSON; panics with the error when the invocation failed.
pub fn output(inv: &Invocation) -> Value {
    match &inv.output {
        Ok(o) => serde_json::from_str(o).expect("output is JSON"),
        Err(e) => panic!("invocation failed: {e} ({}); logs: {:?}", e.code(), inv.logs),
    }
}

/// The error; panics when the invocation succeeded.
pub fn error(inv: &Invocation) -> &plugboard::sandbox::InvocationError {
    match &inv.output {
        Ok(o) => panic!("invocation succeeded with {o}, expected a failure"),
        Err(e) => e,
    }
}

/// Runs a connector operation with its `api` slot bound to the credential `crm`.
pub async fn call_crm(host: &TestHost, plugin: &str, op: &str, input: Value) -> Invocation {
    call(host, plugin, op, input, &[("api", "crm")]).await
}
