//! Async runs: the durable queue and result callbacks. Retry policies are
//! [`crate::retry`], a leaf that integration definitions use too.

pub mod callback;
pub mod engine;
pub use crate::retry;
