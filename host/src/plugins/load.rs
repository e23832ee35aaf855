//! Turning the bytes of one `.wasm` file into a [`Plugin`], or a message
//! saying why it cannot be one.

use std::sync::Arc;
use std::time::SystemTime;

use super::Plugin;
use super::cache::CompileCache;
use super::manifest::Manifest;
use crate::config::Config;
use crate::sandbox::Sandbox;

/// Everything loading needs, shared with the compile thread.
pub struct Loader {
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) cache: Arc<CompileCache>,
    pub(super) config: Arc<Config>,
}

const WASM_MAGIC: &[u8] = b"\0asm";

impl Loader {
    /// Validates, compiles (or loads from the cache), links and describes
    /// one file. Compilation runs on a blocking thread, never on the async
    /// workers that serve invocations.
    pub async fn load(&self, file: &str, bytes: Vec<u8>, sha256: String) -> Result<Plugin, String> {
        let name = plugin_name_of(file)?;
        check_format(&bytes)?;
        let engine = self.sandbox.engine().clone();
        let cache = self.cache.clone();
        let sha = sha256.clone();
        let size = bytes.len() as u64;
        let (component, compile) =
            tokio::task::spawn_blocking(move || cache.component(&engine, &bytes, &sha))
                .await
                .map_err(|e| format!("compilation was interrupted: {e}"))??;
        let pre = self.sandbox.link(&component)?;
        let checks_config = self.sandbox.checks_config(&component);
        let kind = pre.kind();
        // The file name says which plugin this is, so `describe` runs under
        // that plugin's own limits: a file cannot claim more memory or time
        // at load than it would get when invoked.
        let limits = self.config.limits_for(name);
        let raw = self
            .sandbox
            .describe(file, &pre, &limits)
            .await
            .map_err(|e| format!("`describe` failed: {e}"))?;
        let manifest = Manifest::from_wit(kind, raw).map_err(|problems| {
            format!("`describe` returned an invalid manifest: {}", problems.join("; "))
        })?;
        if manifest.name != name {
            return Err(format!(
                "declares plugin `{}`, but a plugin file must be named after the plugin it provides: rename it to `{}.wasm`",
                manifest.name, manifest.name
            ));
        }
        Ok(Plugin {
            name: manifest.name.clone(),
            kind,
            limits,
            manifest,
            file: file.to_string(),
            sha256,
            size,
            pre,
            checks_config,
            compile,
            loaded_at: SystemTime::now(),
        })
    }
}

/// The plugin a file may provide: its name without `.wasm`. Credentials'
/// grants and per-plugin limits follow plugin names, so the name is the
/// operator's choice of file name, never what the code inside claims.
fn plugin_name_of(file: &str) -> Result<&str, String> {
    let name = file.strip_suffix(".wasm").unwrap_or(file);
    crate::names::check_plugin_name(name).map_err(|e| {
        format!("is not named after a plugin ({e}); name the file `NAME.wasm` after the plugin it provides")
    })?;
    Ok(name)
}

/// Recognises files that cannot be components before handing them to the
/// engine, to say what they are instead of a parser error.
fn check_format(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || !bytes.starts_with(WASM_MAGIC) {
        return Err("is not a WebAssembly file (it does not start with `\\0asm`)".into());
    }
    // Bytes 4..8 are the version and layer: 1/0 is a core module, a
    // component has layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(
            "is a core WebAssembly module, not a component: build it for `wasm32-wasip2`, or wrap it with `wasm-tools component new`"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file name decides the plugin's name; names that are not plugin
    /// names are refused before anything is compiled.
    #[test]
    fn the_file_name_is_the_plugin_name() {
        assert_eq!(plugin_name_of("rest-json.wasm"), Ok("rest-json"));
        for bad in [
            "000-impostor.wasm",
            "Hostile.wasm",
            "rest json.wasm",
            "a_b.wasm",
            ".wasm",
        ] {
            assert!(plugin_name_of(bad).unwrap_err().contains("NAME.wasm"), "{bad}");
        }
    }

    #[test]
    fn text_and_core_modules_are_named_for_what_they_are() {
        assert!(
            check_format(b"hello world")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
        assert!(
            check_format(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(check_format(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
