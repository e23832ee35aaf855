//! Helpers shared by the Plugboard example plugins.
//!
//! This crate holds plain Rust only (no `wit-bindgen` bindings), so that each
//! plugin keeps its own bindings and converts a [`Failure`] into its
//! generated `plugin-error` with a few lines of glue.
//!
//! - [`failure`]: the plugin-error fields as a Rust value, with constructors
//!   for the common codes.
//! - [`http`]: the request input, response output and upstream-error mapping
//!   used by the HTTP connectors (`rest-json` over `callout`, `http-fetch`
//!   over `wasi:http`).

pub mod failure;
pub mod http;

pub use failure::Failure;
