//! `plugboard serve`: the HTTP server on the embedded store.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::Args;

use crate::api::{self, AppState, ServerSettings};
use crate::config::Config;
use crate::integrations::Integrations;
use crate::plugins::Watcher;
use crate::queue::callback::CallbackSettings;
use crate::queue::engine::{AsyncRuns, EngineSettings};
use crate::store::{Role, Store};

/// Arguments of `plugboard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, env = "PLUGBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also start the demo API with a demo integration wired to it.
    #[arg(long)]
    pub demo: bool,
    /// The URL browsers reach this host at, for OAuth consent redirects
    /// (`<URL>/v1/oauth/callback`) [default: http://<listen address>].
    #[arg(long, env = "PLUGBOARD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<url::Url>,
}

/// Runs the server until Ctrl-C or SIGTERM; requests in flight finish and
/// every run is stored before it exits.
pub async fn run(args: ServeArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    let demo_addr = match args.demo {
        true => Some(crate::demo::add_demo_credential(&mut config).await?),
        false => None,
    };
    let retention = config.runs;
    let async_config = config.async_runs.clone();
    let host = super::open_host(config)?;
    let (store, registry) = (host.store.clone(), host.registry.clone());
    first_admin_token(&store)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let addr = listener.local_addr()?;
    let runs = store.run_writer();
    let integrations = Arc::new(Integrations::new(store.clone(), registry.clone(), runs.clone()));
    let queue = AsyncRuns::new(
        integrations.clone(),
        EngineSettings {
            max_parallel: async_config.max_parallel,
            lease: async_config.lease,
            key_window: async_config.idempotency_window,
            callbacks: CallbackSettings {
                secret: async_config.callback_secret.clone(),
                allowed: async_config.callback_urls.clone(),
                max_attempts: 0,
            },
            ..EngineSettings::default()
        },
    );
    let state = Arc::new(AppState {
        integrations: integrations.clone(),
        registry: registry.clone(),
        store: store.clone(),
        credentials: host.credentials.clone(),
        queue: queue.clone(),
        idempotency_window: async_config.idempotency_window,
        public_url: args.public_url.clone().unwrap_or_else(|| {
            url::Url::parse(&format!("http://{addr}/")).expect("a socket address is a URL host")
        }),
        ready: false.into(),
        tokens: Default::default(),
    });
    let router = api::router(state.clone(), &ServerSettings::default());
    let server = tokio::spawn(api::run(listener, router, shutdown_signal()));
    println!("plugboard listening on http://{addr}");
    super::scan_with_progress(&registry).await;
    let _watch = Watcher::start(registry.clone());
    let _pruner = AbortOnDrop(tokio::spawn(prune_runs(
        store.clone(),
        retention,
        async_config.idempotency_window,
    )));
    let _reload = AbortOnDrop(tokio::spawn(reload_credentials(host.credentials.clone())));
    let _engine: Vec<AbortOnDrop> = queue.start().into_iter().map(AbortOnDrop).collect();
    state.ready.store(true, Ordering::SeqCst);
    if let Some(demo) = demo_addr {
        crate::demo::install_demo_integration(&integrations, addr, &demo).await?;
    }
    server.await.context("the server task failed")??;
    queue.shutdown().await;
    runs.shutdown()?;
    println!("plugboard stopped; every run is stored");
    Ok(ExitCode::SUCCESS)
}

/// On a store without an admin token, creates one and prints it once.
fn first_admin_token(store: &Store) -> anyhow::Result<()> {
    if store.count_active_admin_tokens()? > 0 {
        // Secrets are stored hashed: an earlier token cannot be shown again.
        println!(
            "admin tokens exist in this store; `plugboard tokens create NAME --role admin` makes another"
        );
        return Ok(());
    }
    let (_, secret) = store.create_token("admin", Role::Admin, None)?;
    println!("created the first admin token; it is shown only this once:\n\n    {secret}\n");
    println!("manage tokens with `plugboard tokens create|list|revoke`");
    Ok(())
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies the retention settings now and every hour.
async fn prune_runs(
    store: Arc<Store>,
    retention: crate::config::RunRetention,
    key_window: std::time::Duration,
) {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        let now = crate::sandbox::unix_ms(std::time::SystemTime::now());
        let store = store.clone();
        let pruned = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize, usize)> {
            let runs_before = now.saturating_sub(u64::from(retention.retention_days) * DAY_MS);
            let runs = store.prune_runs(runs_before)?;
            let payloads = store
                .drop_payloads(now.saturating_sub(u64::from(retention.payload_retention_days) * DAY_MS))?;
            // Idempotency keys and stored replies live as long as their
            // window; final async runs as long as other runs.
            let keys_before = now.saturating_sub(key_window.as_millis() as u64);
            let (keys, async_runs) = store.prune_queue(keys_before, runs_before)?;
            let replies = store.prune_sync_replies(keys_before)?;
            Ok((runs + async_runs, payloads, keys + replies))
        })
        .await;
        match pruned {
            Ok(Ok((runs, payloads, keys))) => tracing::info!(runs, payloads, keys, "retention applied"),
            Ok(Err(e)) => tracing::error!(error = %e, "retention failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

/// Picks up credential edits made by other processes (`plugboard apply`,
/// `plugboard credentials delete`) within a second.
async fn reload_credentials(credentials: Arc<crate::credentials::service::CredentialService>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let c = credentials.clone();
        match tokio::task::spawn_blocking(move || c.reload_changed()).await {
            Ok(Ok(names)) if !names.is_empty() => {
                tracing::info!(?names, "credentials reloaded from the store")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "cannot reload credentials"),
            Err(e) => tracing::error!(error = %e, "credential reload task failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    println!("shutting down: finishing requests in flight");
}
