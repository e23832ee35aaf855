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
//! Leaves, which import nothing of the product beyond other leaves:
//! - [`time`]: the clock as epoch milliseconds and seconds.
//! - [`names`]: the naming rules for plugins, operations, credentials and slots.
//! - [`secret`]: secret values, never printed, and the `env:`/`file:` references to them.
//! - [`outbound`]: the pooled outbound HTTP client and its TLS settings (it holds a client key as a [`secret`]).
//! - [`redact`]: taking injected secrets back out of upstream answers.
//! - [`retry`]: retry policies and `Retry-After` parsing.
//! - [`limits`]: per-invocation limits and their overrides.
//! - [`budget`]: the host-side memory budget of one invocation.
//! - [`owner_only`]: creating and tightening the host's private files and folders.
//!
//! The rest, each using only modules listed before it (the store excepted,
//! see below):
//! - [`store`]: the embedded SQLite store: integrations, tokens, runs, the queue.
//! - [`credentials`]: named credentials: spec, sealed secrets, OAuth, header
//!   templates, the run-time credential and its [`AuthError`](credentials::live::AuthError), management.
//! - [`config`]: the config file, parsed and validated.
//! - [`callout`]: the one policy every outbound request passes through.
//! - [`sandbox`]: the engine, the linkers and running one invocation of
//!   anything [`Runnable`](sandbox::Runnable).
//! - [`plugins`]: the plugin folder: validation, compile cache, registry, watching.
//! - [`integrations`]: definitions, lifecycle, activation checks, the pipeline.
//! - [`queue`]: async runs: the engine, result callbacks.
//! - [`api`]: the HTTP server: invoke endpoint and admin API.
//! - [`host`]: one host assembled from a config: open (the offline commands
//!   use its parts too), serve, ordered shutdown; the registry alone.
//! - [`demo`]: a demo upstream and the walk-through `plugboard demo` runs.
//! - [`cli`]: the `plugboard` command line.
//!
//! No two modules import each other, in a circle of any length: a unit test
//! (`module_graph.rs`) reads the sources and fails on a cycle. It allows the
//! two the store rework removes: the store naming types of [`integrations`]
//! (and, in that work, of [`credentials`]), which use the store.
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
pub mod outbound;
pub mod owner_only;
pub mod plugins;
pub mod queue;
pub mod redact;
pub mod retry;
pub mod sandbox;
pub mod secret;
pub mod store;
pub mod time;

#[cfg(test)]
mod module_graph;
