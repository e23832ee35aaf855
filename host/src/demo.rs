//! `plugboard demo`: a guided run of the example plugins against a small
//! customer API started on loopback, so a newcomer sees the pipeline and the
//! credential boundary working without any external system.
//!
//! The demo API is a real HTTP server (hyper) that keeps customers in memory
//! and insists on a bearer token. The token is generated per run and held by
//! the host as a named credential: the plugins never see it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::config::Config;
use crate::credentials::input::SecretMode;
use crate::sandbox::{ConnectorCall, Invocation, PluginConfig};

/// The demo customer API: in-memory customers behind a bearer token.
struct DemoCrm {
    token: String,
    next_id: AtomicU64,
    customers: Mutex<BTreeMap<u64, Value>>,
    authorized_calls: AtomicU64,
}

/// Starts the demo API on `127.0.0.1:0`; returns its address.
async fn start_demo_crm(token: String) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let crm = Arc::new(DemoCrm {
        token,
        next_id: AtomicU64::new(1001),
        customers: Mutex::new(BTreeMap::new()),
        authorized_calls: AtomicU64::new(0),
    });
    DEMO.lock().expect("demo lock").replace(crm.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let crm = crm.clone();
            let service = hyper::service::service_fn(move |req| {
                let crm = crm.clone();
                async move { Ok::<_, Infallible>(crm.handle(req).await) }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(addr)
}

static DEMO: Mutex<Option<Arc<DemoCrm>>> = Mutex::new(None);

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts")
}

impl DemoCrm {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let expected = format!("Bearer {}", self.token);
        let authorized =
            req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
        if !authorized {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong bearer token"}),
            );
        }
        self.authorized_calls.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        match (parts.method.as_str(), parts.uri.path()) {
            ("GET", "/") => reply(StatusCode::OK, json!({"service": "demo-crm"})),
            ("POST", "/v1/customers") => self.create(&body),
            ("GET", path) if path.starts_with("/v1/customers/") => self.get(&path["/v1/customers/".len()..]),
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no route for {} {}", parts.method, parts.uri.path())}),
            ),
        }
    }

    fn create(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let Ok(Value::Object(mut customer)) = serde_json::from_slice::<Value>(body) else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "body must be a JSON object"}),
            );
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        customer.insert("id".into(), json!(id));
        let customer = Value::Object(customer);
        self.customers
            .lock()
            .expect("demo lock")
            .insert(id, customer.clone());
        reply(StatusCode::CREATED, customer)
    }

    fn get(&self, id: &str) -> Response<Full<Bytes>> {
        let found = id
            .parse()
            .ok()
            .and_then(|id: u64| self.customers.lock().expect("demo lock").get(&id).cloned());
        match found {
            Some(c) => reply(StatusCode::OK, c),
            None => reply(
                StatusCode::NOT_FOUND,
                json!({"error": format!("no customer `{id}`")}),
            ),
        }
    }
}

/// A fresh token per demo run, from the OS's random source.
fn random_token() -> anyhow::Result<String> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(format!("demo-{}", hex::encode(buf)))
}

fn config_json(v: Value) -> PluginConfig {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!("demo configs are objects"),
    }
}

/// Starts the demo API and adds the credential `demo-crm` (its bearer token,
/// generated for this run, held by the host) to `config`; returns the API's
/// address.
pub async fn add_demo_credential(config: &mut Config) -> anyhow::Result<SocketAddr> {
    let token = random_token()?;
    let addr = start_demo_crm(token.clone())
        .await
        .context("cannot start the demo API")?;
    let raw = serde_json::from_value(json!({
        "label": "Demo CRM (local)",
        "base_url": format!("http://{addr}/"),
        "allow_http": true,
        "auth": {"type": "bearer", "token": token},
        "timeout_ms": 10_000,
        "max_response_bytes": 1 << 20,
        "max_request_bytes": 1 << 20,
        "allowed_plugins": ["rest-json", "http-fetch", "js-rest", "py-rest"],
    }))
    .expect("the demo credential is well-formed");
    let credential = crate::credentials::input::from_raw("demo-crm", raw, SecretMode::Literal)
        .map_err(|p| anyhow::anyhow!("demo credential: {}", p.join("; ")))?;
    config.credentials.insert("demo-crm".into(), credential);
    Ok(addr)
}

/// The demo integration: validate -> field-map -> rest-json `post` ->
/// field-map, bound to `demo-crm`.
pub fn demo_integration() -> Value {
    json!({
        "name": "demo-create-customer",
        "label": "Create a customer in the demo CRM",
        "connector": {"plugin": "rest-json", "operation": "post"},
        "input_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/customer/full_name", "to": "/body/name", "transform": "trim", "required": true},
            {"from": "/customer/mail", "to": "/body/email", "transform": "lowercase", "required": true},
            {"from": "/customer/endpoint", "to": "/path", "default": "/v1/customers"}]}},
        "output_processor": {"plugin": "field-map", "config": {"mappings": [
            {"from": "/body/id", "to": "/customer_id", "required": true},
            {"from": "/body/email", "to": "/email"}]}},
        "bindings": {"api": "demo-crm"},
        "save_payloads": true
    })
}

/// Creates (or updates) and activates the demo integration, makes an
/// invoker token for it, and prints a `curl` that invokes it.
pub async fn install_demo_integration(
    integrations: &crate::integrations::Integrations,
    server: SocketAddr,
    crm: &SocketAddr,
) -> anyhow::Result<()> {
    use crate::integrations::IntegrationError;
    let def = crate::integrations::definition::Definition::from_json(demo_integration())
        .map_err(|problems| anyhow::anyhow!("the demo integration is invalid: {}", problems.join("; ")))?;
    match integrations.create(def.clone()) {
        Err(IntegrationError::Conflict(_)) => integrations
            .update("demo-create-customer", def)
            .await
            .map(|_| ())?,
        other => other.map(|_| ())?,
    }
    integrations.activate("demo-create-customer").await?;
    // One demo token at a time: a restart replaces the previous one.
    match integrations.store().revoke_token("demo") {
        Ok(_) | Err(crate::store::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let (_, secret) = integrations.store().create_token(
        "demo",
        crate::store::Role::Invoker,
        Some(vec!["demo-create-customer".to_string()]),
    )?;
    println!("demo CRM on http://{crm}; integration `demo-create-customer` is active. Try:\n");
    println!(
        "curl -s -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\\n  -d '{{\"customer\": {{\"full_name\": \" Ada Lovelace \", \"mail\": \"ADA@Example.COM\"}}}}' \\\n  http://{server}/v1/integrations/demo-create-customer/invoke\n"
    );
    Ok(())
}

/// Runs the demo; returns a failure exit code if any step fails.
pub async fn run(mut config: Config) -> anyhow::Result<ExitCode> {
    let addr = add_demo_credential(&mut config).await?;
    let registry = crate::host::open_registry(config).await?;
    println!("Plugboard demo\n");
    println!("plugin folder `{}`:", registry.path().display());
    for f in registry.files() {
        let p = f.plugin.as_deref().and_then(|n| registry.get(n));
        match (p, &f.error) {
            (Some(p), _) => println!(
                "  {:<12} {:<10} {:<8} {}",
                p.name, p.kind, p.manifest.version, f.file
            ),
            (None, Some(e)) => println!("  {} failed to load: {e}", f.file),
            (None, None) => println!("  {} is still loading", f.file),
        }
    }
    let needed = ["validate", "field-map", "rest-json", "http-fetch"];
    let missing: Vec<_> = needed.iter().filter(|n| registry.get(n).is_none()).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the demo needs the example plugins {missing:?}; build them with `bash scripts/build-plugins.sh`"
        );
    }
    println!(
        "\ndemo CRM listening on http://{addr}/; credential `demo-crm` holds its bearer token (the plugins never see it)\n"
    );
    let steps = Steps { registry: &registry };
    let ok = steps.pipeline().await && steps.boundary().await;
    let calls = DEMO
        .lock()
        .expect("demo lock")
        .as_ref()
        .map_or(0, |c| c.authorized_calls.load(Ordering::SeqCst));
    println!("\nthe demo CRM answered {calls} authorized request(s); every token was added by the host");
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

struct Steps<'a> {
    registry: &'a crate::plugins::Registry,
}

impl Steps<'_> {
    async fn pipeline(&self) -> bool {
        let input =
            json!({"customer": {"full_name": "  Ada Lovelace ", "mail": "ADA@Example.COM", "tier": "gold"}});
        println!("1. input:\n{}", pretty(&input));
        let schema = json!({"schema": {"type": "object", "required": ["customer"],
            "properties": {"customer": {"type": "object", "required": ["full_name", "mail"]}}}});
        let Some(v) = self
            .process("2. validate (input processor)", "validate", &input, schema)
            .await
        else {
            return false;
        };
        let mapping = json!({"mappings": [
            {"from": "/customer/full_name", "to": "/body/name", "transform": "trim"},
            {"from": "/customer/mail", "to": "/body/email", "transform": "lowercase"},
            {"from": "/customer/tier", "to": "/body/tier"},
            {"from": "/customer/endpoint", "to": "/path", "default": "/v1/customers"}]});
        let Some(req) = self
            .process("3. field-map (input processor)", "field-map", &v, mapping)
            .await
        else {
            return false;
        };
        let Some(resp) = self
            .connector(
                "4. rest-json `post` (connector, slot `api` -> credential `demo-crm`)",
                "rest-json",
                "post",
                &req,
            )
            .await
        else {
            return false;
        };
        let out_map = json!({"mappings": [
            {"from": "/body/id", "to": "/customer_id", "required": true},
            {"from": "/body/email", "to": "/email"},
            {"from": "/status", "to": "/crm_status"}]});
        self.process("5. field-map (output processor)", "field-map", &resp, out_map)
            .await
            .is_some()
    }

    async fn boundary(&self) -> bool {
        println!("\n6. the credential boundary: requests a plugin may not make");
        let escape = json!({"path": "/../admin"});
        let inv = self.call("rest-json", "get", &escape).await;
        show_refusal("rest-json GET /../admin", &inv);
        let raw = json!({"url": format!("http://{}/v1/customers/1001", self.demo_addr())});
        let inv = self.call("http-fetch", "get", &raw).await;
        show_refusal("http-fetch to the raw address", &inv);
        true
    }

    fn demo_addr(&self) -> String {
        self.registry
            .sandbox()
            .policy()
            .credential("demo-crm")
            .map(|c| c.spec().base_url.authority().to_string())
            .unwrap_or_default()
    }

    async fn call(&self, plugin: &str, operation: &str, input: &Value) -> Invocation {
        let plugin = self.registry.get(plugin).expect("checked at start");
        let call = ConnectorCall {
            operation: operation.into(),
            input: input.to_string(),
            bindings: [("api".to_string(), "demo-crm".to_string())].into(),
            config: crate::sandbox::empty_config(),
            run_id: crate::store::new_run_id(),
            attempt: 1,
            integration: Some("demo".into()),
            limits: Default::default(),
        };
        self.registry.sandbox().invoke(&plugin, call).await
    }

    async fn connector(&self, title: &str, plugin: &str, operation: &str, input: &Value) -> Option<Value> {
        show(title, self.call(plugin, operation, input).await)
    }

    async fn process(&self, title: &str, plugin: &str, input: &Value, config: Value) -> Option<Value> {
        let plugin = self.registry.get(plugin).expect("checked at start");
        let inv = self
            .registry
            .sandbox()
            .process(&plugin, &input.to_string(), config_json(config))
            .await;
        show(title, inv)
    }
}

fn show(title: &str, inv: Invocation) -> Option<Value> {
    let ms = inv.duration.as_secs_f64() * 1000.0;
    match inv.output {
        Ok(out) => {
            let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            println!("{title}, {ms:.1} ms:");
            for c in &inv.callouts {
                let outcome = c
                    .status
                    .map_or_else(|| c.error.clone().unwrap_or_default(), |s| s.to_string());
                println!(
                    "   callout {} {} -> {outcome} ({} ms; the host added the bearer token)",
                    c.method, c.url, c.duration_ms
                );
            }
            println!("{}", pretty(&v));
            Some(v)
        }
        Err(e) => {
            println!("{title} failed: {e}");
            None
        }
    }
}

fn show_refusal(what: &str, inv: &Invocation) {
    let reason = inv
        .callouts
        .first()
        .and_then(|c| c.error.clone())
        .unwrap_or_else(|| "no callout was made".into());
    let plugin_saw = match &inv.output {
        Ok(o) => o.clone(),
        Err(e) => format!("{} ({})", e, e.code()),
    };
    println!("   {what}: refused by the host: {reason}\n     the plugin reported: {plugin_saw}");
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
