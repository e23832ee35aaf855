//! The on-disk cache of compiled plugins.
//!
//! Compiling a component is the slow part of loading it (seconds for a
//! JavaScript or Python component). The cache keeps the engine's compiled
//! artifact in `<data_dir>/cache/`, keyed by the SHA-256 of the `.wasm`
//! content and the engine's compatibility hash, so a restart, or the same file
//! under another name, loads without compiling, and a new wasmtime or other
//! engine settings never pick up a stale artifact.

#![allow(unsafe_code)]

use std::hash::Hasher;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The compile cache folder.
pub struct CompileCache {
    dir: Option<Dir>,
    engine_key: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CompileInfo {
    /// Loaded from the cache rather than compiled.
    pub cached: bool,
    /// Time to compile or load.
    #[serde(with = "crate::limits::duration_ms")]
    pub duration: Duration,
}

/// Feeds `Hash` output into SHA-256, which (unlike `DefaultHasher`) is stable
/// across Rust releases.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CompileCache {
    /// Opens (creating it) `<data_dir>/cache`. When the folder cannot be used
    /// the host still runs, compiling every time, and says so.
    ///
    /// The host runs what this folder holds, so it and the data folder are
    /// owner-only, as is every entry (see [`crate::owner_only`]): created
    /// so, and existing ones tightened here.
    pub fn open(data_dir: &Path, engine: &Engine) -> CompileCache {
        let folder = data_dir.join("cache");
        let dir = crate::owner_only::create_dir(data_dir)
            .and_then(|()| crate::owner_only::create_dir(&folder))
            .and_then(|()| Dir::open_ambient_dir(&folder, ambient_authority()))
            .and_then(|dir| tighten_entries(&dir).map(|()| dir));
        let dir = match dir {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(folder = %data_dir.display(), error = %e, "compile cache disabled: cannot use the data folder");
                None
            }
        };
        CompileCache {
            dir,
            engine_key: engine_key(engine),
        }
    }

    /// A cache that never stores anything: every load compiles.
    pub fn disabled(engine: &Engine) -> CompileCache {
        CompileCache {
            dir: None,
            engine_key: engine_key(engine),
        }
    }

    /// The compiled component for `wasm` (whose SHA-256 is `sha256`), from
    /// the cache when possible, otherwise compiled and stored.
    pub fn component(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> Result<(Component, CompileInfo), String> {
        let start = Instant::now();
        let key = format!("{sha256}-{}.cwasm", self.engine_key);
        if let Some(component) = self.load(engine, &key) {
            return Ok((
                component,
                CompileInfo {
                    cached: true,
                    duration: start.elapsed(),
                },
            ));
        }
        let component =
            Component::new(engine, wasm).map_err(|e| format!("is not a valid component: {e:#}"))?;
        self.store(&key, &component);
        Ok((
            component,
            CompileInfo {
                cached: false,
                duration: start.elapsed(),
            },
        ))
    }

    fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let bytes = self.dir.as_ref()?.read(key).ok()?;
        // SAFETY: `Component::deserialize` trusts its input to be an artifact
        // this engine produced. The files under this folder are written only
        // by `store` below, from `Component::serialize`, atomically (temp file
        // then rename), under a name that includes the engine's compatibility
        // hash; wasmtime also checks the artifact's header against the engine.
        // Anyone able to write this folder could already replace the host.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(key, error = %e, "ignoring an unusable compile cache entry");
                None
            }
        }
    }

    fn store(&self, key: &str, component: &Component) {
        let Some(dir) = &self.dir else { return };
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| {
                let tmp = format!("{key}.{}.tmp", std::process::id());
                let mut options = cap_std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                cap_std::fs::OpenOptionsExt::mode(&mut options, crate::owner_only::FILE_MODE);
                let mut f = dir.open_with(&tmp, &options)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                dir.rename(&tmp, dir, key)
            });
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "could not write the compile cache");
        }
    }
}

/// Takes group and other permissions off every entry of the cache folder
/// (artifacts written before the cache was owner-only).
fn tighten_entries(dir: &Dir) -> std::io::Result<()> {
    #[cfg(unix)]
    for entry in dir.entries()? {
        use cap_std::fs::PermissionsExt;
        let entry = entry?;
        let mode = entry.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            let wanted = if entry.file_type()?.is_dir() {
                crate::owner_only::DIR_MODE
            } else {
                crate::owner_only::FILE_MODE
            };
            dir.set_permissions(entry.file_name(), cap_std::fs::Permissions::from_mode(wanted))?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A short, stable digest of the engine's compatibility hash.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The cache folder and the native code in it are owner-only, and loose
    /// ones from before are tightened when the cache opens.
    #[test]
    fn cache_folder_and_artifacts_are_owner_only() {
        let data = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        // Text: the engine is built with `wat`, so it compiles as a component.
        let wasm = b"(component)".to_vec();
        let cache = CompileCache::open(data.path(), &engine);
        let (_, info) = cache.component(&engine, &wasm, &sha256_hex(&wasm)).unwrap();
        assert!(!info.cached);
        let folder = data.path().join("cache");
        let artifacts: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(artifacts.len(), 1, "{artifacts:?}");
        assert_eq!((mode(data.path()), mode(&folder)), (0o700, 0o700));
        assert_eq!(mode(&artifacts[0]), 0o600);

        for (path, loose) in [(data.path(), 0o755), (&folder, 0o777), (&artifacts[0], 0o666)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).unwrap();
        }
        let cache = CompileCache::open(data.path(), &engine);
        assert_eq!((mode(data.path()), mode(&folder)), (0o700, 0o700));
        assert_eq!(mode(&artifacts[0]), 0o600);
        let (_, info) = cache.component(&engine, &wasm, &sha256_hex(&wasm)).unwrap();
        assert!(info.cached, "the tightened artifact still loads");
    }
}
