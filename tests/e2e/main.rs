//! End-to-end tests: the real host library and binary, real plugins built
//! from `plugins/`, real HTTP servers on loopback for the external systems.
//!
//! Build the plugins first (`make test` does): the tests read them from
//! `target/plugins` and `target/plugins-testing`.

mod auth;
mod callers;
mod cli;
mod config;
mod containment;
mod contract;
mod credentials;
mod durability;
mod examples;
mod guide;
mod hostile;
mod in_process;
mod languages;
mod loading;
mod oauth;
mod policy;
mod queue;
mod reflection;
mod reload;
mod serve;
mod server;
mod tls;
mod util;
