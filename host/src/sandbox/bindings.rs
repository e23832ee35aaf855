//! Host bindings generated from `wit/`, one module per world.
//!
//! The processor world reuses the connector world's `types`, `log` and
//! `config` bindings, so a manifest or a log level is one Rust type whichever
//! kind of plugin produced it.

/// Bindings for the `connector` world.
pub mod connector {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugboard:plugin/connector",
        imports: {
            "plugboard:plugin/callout.send": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// Bindings for the `processor` world.
pub mod processor {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugboard:plugin/processor",
        imports: { default: trappable },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "plugboard:plugin/types": super::connector::plugboard::plugin::types,
            "plugboard:plugin/log": super::connector::plugboard::plugin::log,
            "plugboard:plugin/config": super::connector::plugboard::plugin::config,
        },
    });
}

pub use connector::plugboard::plugin::{callout, config, log, types};
