//! The host's configuration file (`plugboard.toml`).
//!
//! Parsing (`RawConfig`, serde, unknown fields refused) is kept apart from
//! validation (`Config`): every problem in the file is collected and reported
//! at once, each naming the setting it concerns. Secrets are never values in
//! the file, only `env:` / `file:` references, resolved here at load time.
//!
//! ```toml
//! plugin_dir = "plugins.d"
//! data_dir = ".plugboard"
//!
//! [limits]                     # defaults for every plugin
//! timeout_ms = 30000
//!
//! [plugins.rest-json.limits]   # overrides for one plugin
//! max_callouts = 10
//!
//! [credentials.crm]
//! base_url = "https://crm.example.com/api"
//! auth = { type = "bearer", token = "env:CRM_TOKEN" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::credentials::NamedCredential;
pub use crate::credentials::input::RawCredential;
use crate::credentials::input::{SecretMode, from_raw};
use crate::limits::{LimitOverrides, Limits};

const MIB: u64 = 1024 * 1024;

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `plugin_dir = "plugins.d"`: the folder the host loads plugins from.
    pub plugin_dir: Option<PathBuf>,
    /// `data_dir = ".plugboard"`: the host's own files (compile cache).
    pub data_dir: Option<PathBuf>,
    /// `secret_key_file = "/run/secrets/plugboard-key"`: the key that seals
    /// stored credential secrets (else `PLUGBOARD_SECRET_KEY`).
    pub secret_key_file: Option<PathBuf>,
    /// `[limits]`: default limits for every plugin.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// `[sandbox]`: engine-wide settings.
    #[serde(default)]
    pub sandbox: RawSandbox,
    /// `[plugins.NAME]`: per-plugin settings.
    #[serde(default)]
    pub plugins: BTreeMap<String, RawPluginSettings>,
    /// `[credentials.NAME]`: named credentials.
    #[serde(default)]
    pub credentials: BTreeMap<String, RawCredential>,
    /// `[runs]`: retention of run records, and how async runs are executed.
    #[serde(default)]
    pub runs: RawRuns,
}

/// `[runs]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuns {
    /// `retention_days = 30`: runs older than this are deleted.
    pub retention_days: Option<u32>,
    /// `payload_retention_days = 7`: saved request and response bodies older
    /// than this are dropped (the run record stays).
    pub payload_retention_days: Option<u32>,
    /// `max_parallel = 16`: async runs executing at once on this host.
    pub max_parallel: Option<usize>,
    /// `lease_ms = 30000`: how long a host holds a run it executes without
    /// renewing; after a crash, its runs are picked up again this much later.
    pub lease_ms: Option<u64>,
    /// `idempotency_window_hours = 24`: how long an `Idempotency-Key` is
    /// remembered.
    pub idempotency_window_hours: Option<u64>,
    /// `callback_secret = "env:CALLBACK_SECRET"`: signs result callbacks.
    pub callback_secret: Option<String>,
    /// `callback_urls = ["https://erp.example.com/hooks/"]`: the URL prefixes
    /// result callbacks may go to.
    #[serde(default)]
    pub callback_urls: Vec<String>,
}

/// How async runs are executed (from `[runs]`).
#[derive(Debug, Clone)]
pub struct AsyncRunConfig {
    /// Async runs executing at once on this host.
    pub max_parallel: usize,
    /// Lease length.
    pub lease: std::time::Duration,
    /// Idempotency-key memory.
    pub idempotency_window: std::time::Duration,
    /// Callback signing secret.
    pub callback_secret: Option<crate::secret::Secret>,
    /// Allowed callback URL prefixes.
    pub callback_urls: Vec<url::Url>,
}

impl Default for AsyncRunConfig {
    fn default() -> Self {
        AsyncRunConfig {
            max_parallel: 16,
            lease: std::time::Duration::from_secs(30),
            idempotency_window: std::time::Duration::from_secs(24 * 3600),
            callback_secret: None,
            callback_urls: vec![],
        }
    }
}

/// Retention of run records (from `[runs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRetention {
    /// Runs older than this many days are deleted.
    pub retention_days: u32,
    /// Saved request and response bodies older than this many days are
    /// dropped (the run record stays).
    pub payload_retention_days: u32,
}

fn default_run_days() -> u32 {
    30
}

fn default_payload_days() -> u32 {
    7
}

impl Default for RunRetention {
    fn default() -> Self {
        RunRetention {
            retention_days: default_run_days(),
            payload_retention_days: default_payload_days(),
        }
    }
}

/// `[sandbox]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    /// `max_memory_mib = 512`: ceiling for any plugin's memory limit.
    pub max_memory_mib: Option<u64>,
    /// `max_instances = 100`: invocations that may run at the same time.
    pub max_instances: Option<u32>,
}

/// `[plugins.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginSettings {
    /// `[plugins.NAME.limits]`: overrides of the default limits.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// Engine-wide sandbox settings.
#[derive(Clone, Debug)]
pub struct SandboxSettings {
    /// No plugin's memory limit may exceed this.
    pub max_memory_bytes: u64,
    /// Invocations that may run at the same time.
    pub max_instances: u32,
}

impl Default for SandboxSettings {
    /// 512 MiB leaves room for JavaScript and Python components, which need
    /// tens of MiB before they run a line of user code.
    fn default() -> Self {
        SandboxSettings {
            max_memory_bytes: 512 * MIB,
            max_instances: 100,
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Folder the host loads plugins from.
    pub plugin_dir: PathBuf,
    /// Folder for the host's own files.
    pub data_dir: PathBuf,
    /// File holding the secret key, when not in `PLUGBOARD_SECRET_KEY`.
    pub secret_key_file: Option<PathBuf>,
    /// Limits for plugins without overrides.
    pub default_limits: Limits,
    /// Per-plugin overrides, by plugin name.
    pub plugin_limits: BTreeMap<String, LimitOverrides>,
    /// Engine-wide settings.
    pub sandbox: SandboxSettings,
    /// Named credentials, by name.
    pub credentials: BTreeMap<String, NamedCredential>,
    /// Run retention.
    pub runs: RunRetention,
    /// Async run execution.
    pub async_runs: AsyncRunConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            plugin_dir: PathBuf::from("plugins.d"),
            data_dir: PathBuf::from(".plugboard"),
            secret_key_file: None,
            default_limits: Limits::default(),
            plugin_limits: BTreeMap::new(),
            sandbox: SandboxSettings::default(),
            credentials: BTreeMap::new(),
            runs: RunRetention::default(),
            async_runs: AsyncRunConfig::default(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file `{}`", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config file `{}`", path.display()))
    }

    /// Parses and validates config text, reporting every problem at once.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Config::from_raw(raw).map_err(|problems| anyhow::anyhow!(problems.join("\n")))
    }

    /// The limits that apply to the plugin named `name`.
    pub fn limits_for(&self, name: &str) -> Limits {
        match self.plugin_limits.get(name) {
            Some(o) => self.default_limits.with(o),
            None => self.default_limits,
        }
    }

    /// Validates a parsed file; the error lists every problem found.
    pub fn from_raw(raw: RawConfig) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let defaults = Config::default();
        let ceiling_mib = raw
            .sandbox
            .max_memory_mib
            .unwrap_or(defaults.sandbox.max_memory_bytes / MIB);
        if !(1..=crate::limits::MAX_MEMORY_CEILING_MIB).contains(&ceiling_mib) {
            problems.push(format!(
                "sandbox.max_memory_mib: `{ceiling_mib}` is out of range: allowed is 1 to {} MiB",
                crate::limits::MAX_MEMORY_CEILING_MIB
            ));
        }
        let ceiling_mib = ceiling_mib.clamp(1, crate::limits::MAX_MEMORY_CEILING_MIB);
        let sandbox = SandboxSettings {
            max_memory_bytes: ceiling_mib * MIB,
            max_instances: raw
                .sandbox
                .max_instances
                .unwrap_or(defaults.sandbox.max_instances),
        };
        if sandbox.max_instances == 0 {
            problems.push("sandbox.max_instances must be at least 1".to_string());
        }
        let own = raw.limits.problems(ceiling_mib);
        let default_limits = Limits::default().with(&raw.limits);
        if own.is_empty() {
            // The built-in defaults against a lowered ceiling.
            let combined = default_limits.problems(sandbox.max_memory_bytes);
            problems.extend(combined.iter().map(|p| format!("limits: {p}")));
        }
        problems.extend(own.iter().map(|p| format!("limits: {p}")));
        let mut plugin_limits = BTreeMap::new();
        for (name, settings) in raw.plugins {
            let own = settings.limits.problems(ceiling_mib);
            problems.extend(own.iter().map(|p| format!("plugins.{name}.limits: {p}")));
            plugin_limits.insert(name, settings.limits);
        }
        let mut credentials = BTreeMap::new();
        for (name, rc) in raw.credentials {
            match credential_from_raw(&name, rc) {
                Ok(c) => {
                    credentials.insert(name, c);
                }
                Err(errs) => problems.extend(errs.into_iter().map(|e| format!("credentials.{name}: {e}"))),
            }
        }
        let async_runs = async_run_config(&raw.runs, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            plugin_dir: raw.plugin_dir.unwrap_or(defaults.plugin_dir),
            data_dir: raw.data_dir.unwrap_or(defaults.data_dir),
            secret_key_file: raw.secret_key_file,
            default_limits,
            plugin_limits,
            sandbox,
            credentials,
            runs: RunRetention {
                retention_days: raw.runs.retention_days.unwrap_or(defaults.runs.retention_days),
                payload_retention_days: raw
                    .runs
                    .payload_retention_days
                    .unwrap_or(defaults.runs.payload_retention_days),
            },
            async_runs,
        })
    }
}

fn async_run_config(raw: &RawRuns, problems: &mut Vec<String>) -> AsyncRunConfig {
    let mut c = AsyncRunConfig::default();
    if let Some(n) = raw.max_parallel {
        if n == 0 || n > 10_000 {
            problems.push("runs.max_parallel must be between 1 and 10000".into());
        }
        c.max_parallel = n;
    }
    if let Some(ms) = raw.lease_ms {
        if !(1_000..=3_600_000).contains(&ms) {
            problems.push("runs.lease_ms must be between 1000 and 3600000".into());
        }
        c.lease = std::time::Duration::from_millis(ms);
    }
    if let Some(h) = raw.idempotency_window_hours {
        if h == 0 || h > 24 * 30 {
            problems.push("runs.idempotency_window_hours must be between 1 and 720".into());
        }
        c.idempotency_window = std::time::Duration::from_secs(h * 3600);
    }
    if let Some(r) = &raw.callback_secret {
        match crate::secret::SecretRef::parse(r).and_then(|r| r.resolve()) {
            Ok(s) => c.callback_secret = Some(s),
            Err(e) => problems.push(format!("runs.callback_secret: {e}")),
        }
    }
    for u in &raw.callback_urls {
        match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => c.callback_urls.push(url),
            _ => problems.push(format!("runs.callback_urls: `{u}` is not an http(s) URL")),
        }
    }
    c
}

/// Validates one credential of the config file; the error lists every
/// problem in it. Config credentials are complete (every secret given) and
/// cannot use the authorization-code flow, whose tokens live in the store.
pub fn credential_from_raw(name: &str, rc: RawCredential) -> Result<NamedCredential, Vec<String>> {
    let c = from_raw(name, rc, SecretMode::References)?;
    let mut problems: Vec<String> = c
        .missing_secrets()
        .into_iter()
        .map(|s| format!("secret `{s}` is required"))
        .collect();
    if c.spec.auth.kind() == "oauth2/authorization_code" {
        problems.push(
            "auth: authorization_code credentials keep their tokens in the store: manage them with the API or `plugboard apply`, not the config file".into(),
        );
    }
    if problems.is_empty() { Ok(c) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused() {
        let err = Config::parse("plugin_dri = \"x\"").unwrap_err().to_string();
        assert!(err.contains("plugin_dri"), "{err}");
    }

    #[test]
    fn every_problem_is_listed() {
        let text = r#"
            [limits]
            memory_mib = 4096
            [credentials.crm]
            base_url = "ftp://x"
            auth = { type = "bearer", token = "literal" }
        "#;
        let err = format!("{:#}", Config::parse(text).unwrap_err());
        assert!(
            err.contains("limits: `memory_mib = 4096` is out of range"),
            "{err}"
        );
        assert!(
            err.contains("credentials.crm: base_url `ftp://x` must use https"),
            "{err}"
        );
        assert!(
            err.contains("credentials.crm: auth.token: secrets must be given"),
            "{err}"
        );
    }

    #[test]
    fn base_url_with_userinfo_is_refused() {
        let err = crate::credentials::input::parse_base_url("https://u:p@example.com", false).unwrap_err();
        assert!(err.contains("auth"), "{err}");
        assert!(!err.contains(":p@"), "{err}");
    }

    #[test]
    fn secrets_resolve_from_the_environment() {
        // SAFETY of the test: a unique variable name no other test reads.
        unsafe_env_set("PLUGBOARD_TEST_CONFIG_TOKEN", "abc123");
        let cfg = Config::parse(
            r#"
            [credentials.crm]
            base_url = "https://crm.example.com/api"
            auth = { type = "bearer", token = "env:PLUGBOARD_TEST_CONFIG_TOKEN" }
            allowed_plugins = ["rest-json"]
        "#,
        )
        .unwrap();
        let crm = &cfg.credentials["crm"];
        assert!(crm.allows("rest-json", "00") && !crm.allows("other", "00"));
        assert!(!format!("{crm:?}").contains("abc123"));
    }

    fn unsafe_env_set(k: &str, v: &str) {
        #[allow(unsafe_code)]
        // Tests in this module run on threads that never read this variable
        // concurrently; setting it is sound here.
        unsafe {
            std::env::set_var(k, v)
        };
    }
}
