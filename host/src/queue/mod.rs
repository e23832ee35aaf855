//! Async runs: the durable queue, retry policies and result callbacks.

pub mod callback;
pub mod engine;
pub mod retry;
