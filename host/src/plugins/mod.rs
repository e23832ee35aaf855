//! The plugin folder: which `.wasm` files are there, which plugins they
//! provide, and keeping that true while the host runs.
//!
//! The [`Registry`] maps plugin names to loaded [`Plugin`]s behind
//! `Arc`s. Loading a file (see [`load`]) happens off to the side; the result
//! replaces the old entry in one step, so a call that already holds the old
//! `Arc` finishes on the version it started with while new calls get the new
//! one. A file that fails to load is recorded with the reason and never
//! replaces a version that was serving. Files are read through a `cap-std`
//! directory handle, so a file name can never reach outside the folder.
//!
//! The sandbox ([`crate::sandbox`]) runs plugins; this module only decides
//! which ones exist.

mod cache;
mod load;
pub mod manifest;
mod watch;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::Serialize;

pub use cache::{CompileCache, CompileInfo, sha256_hex};
pub use manifest::Manifest;
pub use watch::Watcher;

use crate::config::Config;
use crate::limits::Limits;
use crate::sandbox::{PluginKind, PluginPre, Runnable, Sandbox};
use load::Loader;

/// A loaded plugin, ready to run.
pub struct Plugin {
    /// Name from the manifest.
    pub name: String,
    /// Connector or processor.
    pub kind: PluginKind,
    /// The validated manifest.
    pub manifest: Manifest,
    /// Limits each invocation runs under.
    pub limits: Limits,
    /// File it was loaded from.
    pub file: String,
    /// SHA-256 of the file's content.
    pub sha256: String,
    /// File size in bytes.
    pub size: u64,
    /// The linked component.
    pub pre: PluginPre,
    /// Whether it exports `config-check`, so activation can check its config.
    pub checks_config: bool,
    /// Whether it was compiled or came from the cache, and how long it took.
    pub compile: CompileInfo,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

impl Plugin {
    /// Names of the connector's operations.
    pub fn operation_names(&self) -> Vec<String> {
        self.manifest.operations.iter().map(|o| o.name.clone()).collect()
    }

    /// The JSON view used by `plugins inspect` and the admin API.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "kind": self.kind,
            "version": self.manifest.version,
            "description": self.manifest.description,
            "operations": self.manifest.operations,
            "credential_slots": self.manifest.credential_slots,
            "limits": self.limits,
            "file": self.file,
            "sha256": self.sha256,
            "size_bytes": self.size,
            "compile": self.compile,
            "checks_config": self.checks_config,
        })
    }
}

impl Runnable for Plugin {
    fn name(&self) -> &str {
        &self.name
    }
    fn sha256(&self) -> &str {
        &self.sha256
    }
    fn kind(&self) -> PluginKind {
        self.kind
    }
    fn limits(&self) -> &Limits {
        &self.limits
    }
    fn pre(&self) -> &PluginPre {
        &self.pre
    }
    fn checks_config(&self) -> bool {
        self.checks_config
    }
    fn has_operation(&self, name: &str) -> bool {
        self.manifest.operations.iter().any(|o| o.name == name)
    }
    fn operation_names(&self) -> Vec<String> {
        Plugin::operation_names(self)
    }
    fn required_slots(&self) -> Vec<&str> {
        (self.manifest.credential_slots.iter())
            .filter(|s| s.required)
            .map(|s| s.name.as_str())
            .collect()
    }
}

/// Size and modification time: when both are unchanged the file is not
/// read again.
type Fingerprint = (u64, Option<SystemTime>);

/// Where a file in the folder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Being compiled and checked.
    Compiling,
    /// Loaded; its plugin is serving.
    Ready,
    /// Could not be loaded; see the error.
    Failed,
}

/// One `.wasm` file as the registry knows it.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    /// File name in the plugin folder.
    pub file: String,
    /// Where it stands.
    pub status: FileStatus,
    /// Why it failed to load (the last attempt).
    pub error: Option<String>,
    /// The plugin this file provides and is serving, if any. After a failed
    /// replacement this is the previous, still-serving version.
    pub plugin: Option<String>,
    /// SHA-256 of the content last seen.
    pub sha256: Option<String>,
    /// Size of the file last seen, in bytes.
    pub size: u64,
    /// When the current compilation started, while `status` is `compiling`.
    pub compiling_since: Option<SystemTime>,
    #[serde(skip)]
    fingerprint: Option<Fingerprint>,
}

/// What one scan of the folder changed.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ScanReport {
    /// Plugins loaded for the first time.
    pub added: Vec<String>,
    /// Plugins replaced by a new version.
    pub replaced: Vec<String>,
    /// Plugins retired because their file was removed.
    pub removed: Vec<String>,
    /// Files that failed to load, with the reason.
    pub failed: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    plugins: BTreeMap<String, Arc<Plugin>>,
    files: BTreeMap<String, FileEntry>,
}

/// The plugins of one folder.
pub struct Registry {
    dir: Dir,
    loader: Loader,
    state: RwLock<State>,
    // Serializes scans: the watcher and an explicit rescan never interleave.
    scan_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Opens the plugin folder (creating it when missing) and the compile
    /// cache. Call [`Registry::scan`] to load what is there.
    pub fn open(config: Arc<Config>, sandbox: Arc<Sandbox>) -> anyhow::Result<Registry> {
        let path = &config.plugin_dir;
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the plugin folder `{}`", path.display()))?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())
            .with_context(|| format!("cannot open the plugin folder `{}`", path.display()))?;
        let cache = Arc::new(CompileCache::open(&config.data_dir, sandbox.engine()));
        Ok(Registry {
            dir,
            loader: Loader {
                sandbox,
                cache,
                config,
            },
            state: RwLock::new(State::default()),
            scan_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The sandbox plugins run in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.loader.sandbox
    }

    /// The plugin folder's path.
    pub fn path(&self) -> &Path {
        &self.loader.config.plugin_dir
    }

    /// The plugin named `name`, as it is now.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.read().plugins.get(name).cloned()
    }

    /// Every serving plugin, by name.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.read().plugins.values().cloned().collect()
    }

    /// Every `.wasm` file seen, with its status and last error.
    pub fn files(&self) -> Vec<FileEntry> {
        self.read().files.values().cloned().collect()
    }

    /// Every file with its status and, when it serves one, its plugin: the
    /// view `plugins list --json` and `GET /v1/plugins` share.
    pub fn files_json(&self) -> Vec<serde_json::Value> {
        self.files()
            .into_iter()
            .map(|f| {
                let plugin = f.plugin.as_deref().and_then(|n| self.get(n));
                let mut v = serde_json::to_value(&f).expect("a file entry serializes");
                v["plugin"] = plugin.as_deref().map_or(serde_json::Value::Null, Plugin::to_json);
                v
            })
            .collect()
    }

    /// Files that provide the plugin named `name` or failed while trying.
    pub fn files_for(&self, name: &str) -> Vec<FileEntry> {
        self.files()
            .into_iter()
            .filter(|f| f.plugin.as_deref() == Some(name) || f.file.trim_end_matches(".wasm") == name)
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().expect("registry lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().expect("registry lock")
    }

    /// Brings the registry in line with the folder: retires plugins whose
    /// file is gone, loads new and changed files. Unchanged files (same size
    /// and modification time, or same content) are not read again.
    pub async fn scan(&self) -> ScanReport {
        let _one_at_a_time = self.scan_lock.lock().await;
        let mut report = ScanReport::default();
        let listing = match self.list_folder() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(folder = %self.path().display(), error = %e, "cannot read the plugin folder");
                return report;
            }
        };
        self.retire_missing(&listing, &mut report);
        for (file, fingerprint) in listing {
            self.consider(&file, fingerprint, &mut report).await;
        }
        report
    }

    fn list_folder(&self) -> std::io::Result<Vec<(String, Fingerprint)>> {
        let mut out = Vec::new();
        for entry in self.dir.entries()? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".wasm") || name.starts_with('.') {
                continue;
            }
            let Ok(meta) = self.dir.metadata(&name) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().ok().map(|t| t.into_std());
            out.push((name, (meta.len(), modified)));
        }
        out.sort();
        Ok(out)
    }

    fn retire_missing(&self, listing: &[(String, Fingerprint)], report: &mut ScanReport) {
        let mut st = self.write();
        let gone: Vec<String> = st
            .files
            .keys()
            .filter(|f| !listing.iter().any(|(l, _)| l == *f))
            .cloned()
            .collect();
        for file in gone {
            let entry = st.files.remove(&file).expect("listed above");
            if let Some(name) = entry.plugin
                && st.plugins.get(&name).is_some_and(|p| p.file == file)
            {
                st.plugins.remove(&name);
                tracing::info!(plugin = %name, file = %file, "plugin retired: its file was removed");
                report.removed.push(name);
            }
        }
        if report.removed.is_empty() {
            return;
        }
        // A file refused because another file claimed its name gets another
        // chance now that a plugin has gone.
        for entry in st.files.values_mut() {
            let duplicate = entry
                .error
                .as_deref()
                .is_some_and(|e| e.contains("already provides"));
            if entry.status == FileStatus::Failed && duplicate {
                entry.fingerprint = None;
                entry.sha256 = None;
            }
        }
    }

    async fn consider(&self, file: &str, fingerprint: Fingerprint, report: &mut ScanReport) {
        if self
            .read()
            .files
            .get(file)
            .is_some_and(|e| e.fingerprint == Some(fingerprint))
        {
            return;
        }
        let bytes = match self.dir.read(file) {
            Ok(b) => b,
            Err(e) => return self.fail(file, None, format!("cannot be read: {e}"), report),
        };
        let sha = sha256_hex(&bytes);
        {
            let mut st = self.write();
            let entry = st.files.entry(file.to_string()).or_insert_with(|| FileEntry {
                file: file.to_string(),
                status: FileStatus::Compiling,
                error: None,
                plugin: None,
                sha256: None,
                size: 0,
                compiling_since: None,
                fingerprint: None,
            });
            let unchanged = entry.sha256.as_deref() == Some(sha.as_str());
            entry.fingerprint = Some(fingerprint);
            if unchanged {
                return;
            }
            entry.sha256 = Some(sha.clone());
            entry.size = bytes.len() as u64;
            entry.status = FileStatus::Compiling;
            entry.compiling_since = Some(SystemTime::now());
        }
        match self.loader.load(file, bytes, sha.clone()).await {
            Ok(plugin) => self.install(plugin, report),
            Err(e) => self.fail(file, Some(sha), e, report),
        }
    }

    fn install(&self, plugin: Plugin, report: &mut ScanReport) {
        let mut st = self.write();
        let file = plugin.file.clone();
        let name = plugin.name.clone();
        if let Some(other) = st.plugins.get(&name).filter(|p| p.file != file) {
            let msg = format!(
                "declares plugin `{name}`, which `{}` already provides; remove one of the two files",
                other.file
            );
            drop(st);
            return self.fail(&file, Some(plugin.sha256.clone()), msg, report);
        }
        let entry = st.files.get_mut(&file).expect("entry created before loading");
        let previous = entry.plugin.replace(name.clone());
        entry.status = FileStatus::Ready;
        entry.error = None;
        entry.compiling_since = None;
        if let Some(old) = previous.filter(|old| *old != name) {
            st.plugins.remove(&old);
            report.removed.push(old);
        }
        tracing::info!(
            plugin = %name, version = %plugin.manifest.version, kind = %plugin.kind, file = %file,
            cached = plugin.compile.cached, ms = plugin.compile.duration.as_millis() as u64,
            "plugin loaded"
        );
        match st.plugins.insert(name.clone(), Arc::new(plugin)) {
            Some(_) => report.replaced.push(name),
            None => report.added.push(name),
        }
    }

    fn fail(&self, file: &str, sha: Option<String>, error: String, report: &mut ScanReport) {
        tracing::warn!(file = %file, error = %error, "plugin file not loaded");
        let mut st = self.write();
        if let Some(entry) = st.files.get_mut(file) {
            entry.status = FileStatus::Failed;
            entry.error = Some(error.clone());
            entry.compiling_since = None;
            if sha.is_some() {
                entry.sha256 = sha;
            }
        }
        report.failed.push((file.to_string(), error));
    }
}
