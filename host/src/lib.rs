//! Plugboard: a self-hosted integration host whose custom logic runs as
//! sandboxed WebAssembly components.
//!
//! A *plugin* is a component implementing one of the worlds of `wit/`: a
//! connector talks to an external system, a processor turns one JSON document
//! into another. Plugins are `.wasm` files in a folder the host watches.
//! Connectors reach the network only through named credentials: the host adds
//! the authentication at the sandbox boundary, so a plugin never sees a secret
//! and never reaches a host it was not granted.
//!
//! # Layout
//! - [`config`]: the config file, parsed and validated.
//! - [`limits`]: per-invocation limits and their overrides.
//! - [`names`]: the naming rules for plugins, operations, credentials and slots (a leaf).
//! - [`owner_only`]: creating and tightening the host's private files and folders.
//! - [`budget`]: the host-side memory budget of one invocation.
//! - [`credentials`]: named credentials: spec, sealed secrets, OAuth, management.
//! - [`callout`]: the one policy every outbound request passes through.
//! - [`sandbox`]: the engine, the linkers and running one invocation.
//! - [`plugins`]: the plugin folder: validation, compile cache, registry, watching.
//! - [`store`]: the embedded SQLite store: integrations, tokens, runs.
//! - [`integrations`]: definitions, lifecycle, activation checks, the pipeline.
//! - [`queue`]: async runs: the engine, result callbacks.
//! - [`retry`]: retry policies and `Retry-After` parsing (a leaf).
//! - [`time`]: the clock as epoch milliseconds and seconds (a leaf).
//! - [`api`]: the HTTP server: invoke endpoint and admin API.
//! - [`host`]: one host assembled from a config: open, serve, ordered shutdown.
//! - [`cli`]: the `plugboard` command line.
//! - [`demo`]: a demo upstream and the walk-through `plugboard demo` runs.
// `unsafe` is denied crate-wide (workspace lints); the one exception is the
// compile cache's deserialization of precompiled components, which says why
// it is sound where it does it.
#![deny(unsafe_code)]

pub mod api;
pub mod budget;
pub mod callout;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod host;
pub mod integrations;
pub mod limits;
pub mod names;
pub mod owner_only;
pub mod plugins;
pub mod queue;
pub mod retry;
pub mod sandbox;
pub mod store;
pub mod time;
