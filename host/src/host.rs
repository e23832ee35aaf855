//! One host, assembled in one place: [`Host::open`] builds every part from a
//! [`Config`], [`Host::serve`] serves the API on a listener the caller bound
//! until a shutdown future resolves, then shuts down in order.
//!
//! `plugboard serve` binds, installs the signal handlers and calls these;
//! tests and benchmarks start hosts in-process the same way on
//! `127.0.0.1:0`. [`Host::start`] is the first half of [`Host::serve`] for
//! callers that act once the host is ready (the demo installs its
//! integration then).
//!
//! Opening starts nothing in the background, so the offline commands
//! (`plugboard apply`, `integrations`, `credentials`, `invoke`) open a
//! [`Host`] too and use its parts without serving. Commands that need only
//! plugins call [`build_registry`] or [`open_registry`], the one place a
//! sandbox and its callout policy are built.
//!
//! The order of a shutdown: stop accepting and let requests in flight finish;
//! stop the background tasks (plugin watcher, retention, credential reload);
//! give running async attempts their grace period and put the rest back in
//! the queue; commit every queued run record.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;

use crate::api::{self, AppState, ServerSettings};
use crate::callout::CalloutPolicy;
use crate::config::{AsyncRunConfig, Config, RunRetention};
use crate::credentials::seal::SealKey;
use crate::credentials::service::CredentialService;
use crate::integrations::Integrations;
use crate::plugins::{Registry, Watcher};
use crate::queue::callback::CallbackSettings;
use crate::queue::engine::{AsyncRuns, EngineSettings};
use crate::sandbox::Sandbox;
use crate::store::{RunWriter, Store};

/// The store, the plugin registry and the credential service: what every
/// command that works on a data folder needs, server or not.
struct Parts {
    store: Arc<Store>,
    /// Plugins (not loaded until [`Host::load_plugins`] or [`Host::start`]).
    registry: Arc<Registry>,
    /// Named credentials: the config file's and the store's.
    credentials: Arc<CredentialService>,
}

/// Opens the store and builds the registry; checks the secret key and loads
/// the stored credentials.
fn open_parts(config: Config) -> anyhow::Result<Parts> {
    let store = Arc::new(Store::open(&config.data_dir)?);
    let key = SealKey::load(config.secret_key_file.as_deref()).map_err(anyhow::Error::msg)?;
    let registry = build_registry(config)?;
    let set = registry.sandbox().policy().credential_set().clone();
    let credentials = Arc::new(CredentialService::open(store.clone(), key, set)?);
    Ok(Parts {
        store,
        registry,
        credentials,
    })
}

/// Builds the sandbox and registry for `config` without loading anything.
pub fn build_registry(config: Config) -> anyhow::Result<Arc<Registry>> {
    let config = Arc::new(config);
    let policy = Arc::new(CalloutPolicy::new(config.credentials.values().cloned())?);
    let sandbox = Arc::new(Sandbox::new(&config.sandbox, policy)?);
    let registry = Registry::open(config, sandbox).context("cannot open the plugin folder")?;
    Ok(Arc::new(registry))
}

/// Builds the sandbox and registry for `config` and loads the folder once.
pub async fn open_registry(config: Config) -> anyhow::Result<Arc<Registry>> {
    let registry = build_registry(config)?;
    scan_with_progress(&registry).await;
    Ok(registry)
}

/// Loads the plugin folder, saying on stderr which files take long to
/// compile.
pub async fn scan_with_progress(registry: &Arc<Registry>) {
    let progress = tokio::spawn(report_compiling(registry.clone()));
    registry.scan().await;
    progress.abort();
}

/// While a scan runs, says every two seconds which files are still
/// compiling: a JavaScript or Python component takes several seconds the
/// first time, and a silent terminal looks like a hang.
async fn report_compiling(registry: Arc<Registry>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        for f in registry.files() {
            let Some(since) = f.compiling_since else { continue };
            let secs = since.elapsed().map_or(0, |d| d.as_secs());
            eprintln!(
                "compiling `{}` ({:.1} MiB): {secs} s so far; later starts load it from the compile cache",
                f.file,
                f.size as f64 / 1_048_576.0
            );
        }
    }
}

/// A whole host: the parts, the integrations over them and the async-run
/// engine, not yet serving.
pub struct Host {
    parts: Parts,
    integrations: Arc<Integrations>,
    queue: Arc<AsyncRuns>,
    runs: RunWriter,
    retention: RunRetention,
    async_config: AsyncRunConfig,
    public_url: Option<url::Url>,
    settings: ServerSettings,
}

impl Host {
    /// Opens the store, the registry (plugins are loaded by
    /// [`Host::load_plugins`] or [`Host::start`]) and the credentials, and
    /// builds the integrations and the async-run engine from `config`.
    /// Nothing runs in the background until [`Host::start`] (the store's run
    /// writer excepted, which every open store has).
    pub fn open(config: Config) -> anyhow::Result<Host> {
        let retention = config.runs;
        let async_config = config.async_runs.clone();
        let parts = open_parts(config)?;
        let runs = parts.store.run_writer();
        let integrations = Arc::new(Integrations::new(
            parts.store.clone(),
            parts.registry.clone(),
            runs.clone(),
        ));
        let queue = AsyncRuns::new(integrations.clone(), engine_settings(&async_config));
        Ok(Host {
            parts,
            integrations,
            queue,
            runs,
            retention,
            async_config,
            public_url: None,
            settings: ServerSettings::default(),
        })
    }

    /// How the async-run engine runs: `[runs]` of the config, the system
    /// clock and the default poll interval.
    pub fn engine_settings(&self) -> &EngineSettings {
        self.queue.settings()
    }

    /// Replaces the async-run engine's settings: a test hands it a clock
    /// that moves only when told, so hour-long retry schedules need no
    /// sleeps. This builds a new engine, so take [`Host::queue`] after it.
    pub fn with_engine_settings(mut self, settings: EngineSettings) -> Host {
        self.queue = AsyncRuns::new(self.integrations.clone(), settings);
        self
    }

    /// The URL browsers reach this host at, for OAuth consent redirects
    /// (default: `http://<listen address>/`).
    pub fn with_public_url(mut self, url: Option<url::Url>) -> Host {
        self.public_url = url;
        self
    }

    /// Body size and request time limits of the API.
    pub fn with_server_settings(mut self, settings: ServerSettings) -> Host {
        self.settings = settings;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.parts.store
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.parts.registry
    }

    /// The named credentials.
    pub fn credentials(&self) -> &Arc<CredentialService> {
        &self.parts.credentials
    }

    /// The integrations.
    pub fn integrations(&self) -> &Arc<Integrations> {
        &self.integrations
    }

    /// The async-run engine (not executing until [`Host::start`], or its
    /// own [`AsyncRuns::start`]).
    pub fn queue(&self) -> &Arc<AsyncRuns> {
        &self.queue
    }

    /// Loads the plugin folder once, saying on stderr which files take long
    /// to compile; for commands that use the plugins without serving.
    pub async fn load_plugins(&self) {
        scan_with_progress(&self.parts.registry).await;
    }

    /// Serves on `listener` until `shutdown` resolves, then shuts down in
    /// order (see the module documentation).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.start(listener).await?.until(shutdown).await
    }

    /// Starts serving on `listener` (readiness answers 503 until the plugin
    /// folder is loaded), loads the plugins, starts the background tasks
    /// and the async-run engine, and returns once the host is ready.
    pub async fn start(self, listener: tokio::net::TcpListener) -> anyhow::Result<Serving> {
        let addr = listener
            .local_addr()
            .context("the listener has no local address")?;
        let store = self.parts.store.clone();
        let registry = self.parts.registry.clone();
        let state = Arc::new(AppState {
            integrations: self.integrations.clone(),
            registry: registry.clone(),
            store: store.clone(),
            credentials: self.parts.credentials.clone(),
            queue: self.queue.clone(),
            idempotency_window: self.async_config.idempotency_window,
            public_url: self.public_url.clone().unwrap_or_else(|| {
                url::Url::parse(&format!("http://{addr}/")).expect("a socket address is a URL host")
            }),
            ready: false.into(),
            tokens: Default::default(),
        });
        let router = api::router(state.clone(), &self.settings);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api::run(listener, router, async move {
            let _ = stopped.await;
        }));
        self.load_plugins().await;
        let watcher = Watcher::start(registry);
        let mut tasks = vec![
            AbortOnDrop(tokio::spawn(prune_runs(
                store,
                self.retention,
                self.async_config.idempotency_window,
            ))),
            AbortOnDrop(tokio::spawn(reload_credentials(self.parts.credentials.clone()))),
        ];
        tasks.extend(self.queue.start().into_iter().map(AbortOnDrop));
        state.ready.store(true, Ordering::SeqCst);
        Ok(Serving {
            addr,
            integrations: self.integrations,
            queue: self.queue,
            runs: self.runs,
            server,
            stop,
            watcher: Some(watcher),
            tasks,
        })
    }
}

/// The engine settings `[runs]` asks for.
fn engine_settings(async_config: &AsyncRunConfig) -> EngineSettings {
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
    }
}

/// A host that is serving.
pub struct Serving {
    addr: SocketAddr,
    integrations: Arc<Integrations>,
    queue: Arc<AsyncRuns>,
    runs: RunWriter,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    watcher: Option<Watcher>,
    tasks: Vec<AbortOnDrop>,
}

impl Serving {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The integrations it serves.
    pub fn integrations(&self) -> &Arc<Integrations> {
        &self.integrations
    }

    /// Serves until `shutdown` resolves (or the server fails), then shuts
    /// down in order; every run is stored when this returns.
    pub async fn until(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let served = tokio::select! {
            _ = shutdown => None,
            ended = &mut self.server => Some(ended),
        };
        let served = match served {
            Some(ended) => ended,
            None => {
                let _ = self.stop.send(());
                (&mut self.server).await
            }
        };
        drop(self.watcher.take());
        drop(std::mem::take(&mut self.tasks));
        self.queue.shutdown().await;
        self.runs.shutdown()?;
        served
            .context("the server task failed")?
            .context("the server failed")?;
        Ok(())
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies the retention settings now and every hour.
async fn prune_runs(store: Arc<Store>, retention: RunRetention, key_window: std::time::Duration) {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        let now = crate::time::unix_ms(std::time::SystemTime::now());
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
async fn reload_credentials(credentials: Arc<CredentialService>) {
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
