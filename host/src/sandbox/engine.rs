//! The one place that configures the wasmtime engine and the linkers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::connector::plugboard::plugin as wit;
use super::state::HostState;
use crate::config::SandboxSettings;

/// How often the epoch advances. Every tick each running invocation checks
/// its deadline and yields to the scheduler, so a spinning plugin costs at
/// most this long before another task gets the core.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Linear memory kept resident per slot between instances: the whole heap
/// of a small Rust plugin, the hot part of a JavaScript or Python one.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;
/// Table memory kept resident per slot between instances.
const KEEP_RESIDENT_TABLE_BYTES: usize = 1 << 20;

/// Builds the engine: Cranelift, the pooling allocator with copy-on-write
/// memory images, epoch interruption for wall-time limits.
pub fn build_engine(settings: &SandboxSettings) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    let n = settings.max_instances;
    // A JavaScript or Python component holds a dozen core instances and a
    // few memories and tables; size the pool for that, not for hand-written
    // Rust plugins, which need one of each.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(20))
        .total_memories(n.saturating_mul(4))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_core_instances_per_component(50)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        .max_memory_size(settings.max_memory_bytes as usize)
        .table_elements(200_000)
        .max_core_instance_size(16 << 20)
        .max_component_instance_size(4 << 20)
        .max_unused_warm_slots(n.min(16));
    // Returning a slot's memory with `madvise` after every instance cost
    // more than the plugins themselves (about 9 `madvise` calls and 37 TLB
    // shootdowns per request under load). Keeping the first pages resident
    // and resetting only the dirtied ones (`PAGEMAP_SCAN`, Linux 6.7+; a
    // `memset` of the kept range elsewhere) gave 1.8x the requests/s for the
    // same RSS. Isolation is unchanged: wasmtime restores a slot to the
    // component's initial image before any instance uses it again, so a
    // fresh instance still sees nothing of the previous one (tested with
    // the hostile plugin's `mark-memory` and `scan-memory`).
    pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .max_wasm_stack(1 << 20)
        .async_stack_size(2 << 20);
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot start the WebAssembly engine: {e:#}"))
}

/// The linker for connectors: WASI without any ambient authority, the
/// plugin interfaces, and `wasi:http` routed through the callout policy.
pub fn connector_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = base_linker(engine)?;
    wit::callout::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    refuse_fragments(&mut linker)?;
    Ok(linker)
}

/// `wasi:http`'s `set-path-with-query` accepts `/x#frag` and the request
/// then goes out as `/x`, the fragment silently dropped. `callout.send`
/// refuses fragments, so this path must too: the host function is replaced
/// by one that refuses a fragment and otherwise does what the original does.
fn refuse_fragments(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi_http::WasiHttpView;
    use wasmtime_wasi_http::p2::bindings::http::types::HostOutgoingRequest as _;
    use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

    linker.allow_shadowing(true);
    let mut types = linker.instance(WASI_HTTP_TYPES)?;
    types.func_wrap(
        "[method]outgoing-request.set-path-with-query",
        |mut store: wasmtime::StoreContextMut<'_, HostState>,
         (request, path): (Resource<HostOutgoingRequest>, Option<String>)| {
            if path.as_deref().is_some_and(|p| p.contains('#')) {
                return Ok((Err(()),));
            }
            let result = store.data_mut().http().set_path_with_query(request, path)?;
            Ok((result,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:http` types interface as wasmtime-wasi-http 48 defines it;
/// guests built against any 0.2.x resolve to it.
const WASI_HTTP_TYPES: &str = "wasi:http/types@0.2.12";

/// The linker for processors: no `callout`, no `wasi:http`.
pub fn processor_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    base_linker(engine)
}

/// WASI p2 (languages' standard libraries import it) plus `log` and
/// `config`. What WASI can reach is decided per store by the `WasiCtx`:
/// nothing, by default.
fn base_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wit::log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    wit::config::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = engine.clone();
        // A plain thread, not a tokio task: it must keep ticking even when
        // every runtime worker is busy running guest code.
        std::thread::Builder::new()
            .name("plugboard-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
