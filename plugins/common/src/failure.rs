//! A failure a plugin reports on purpose: the fields of the contract's
//! `plugin-error`, independent of any generated bindings.

use serde_json::Value;

/// The fields of a `plugin-error`, before conversion to the generated type.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Stable `snake_case` code.
    pub code: String,
    /// One lowercase sentence naming the offending value.
    pub message: String,
    /// Whether the same call may succeed later.
    pub retryable: bool,
    /// Structured detail, serialized to JSON text by [`Failure::details_json`].
    pub details: Option<Value>,
}

impl Failure {
    /// A failure that is not retryable and carries no details.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into(), retryable: false, details: None }
    }

    /// The input document is malformed or misses a field (`invalid_input`).
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    /// The plugin's configuration is unusable (`invalid_config`).
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new("invalid_config", message)
    }

    /// Set whether the failure is retryable.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The details as JSON text, as the contract's `details` field wants them.
    pub fn details_json(&self) -> Option<String> {
        self.details.as_ref().map(Value::to_string)
    }
}

/// Parse a JSON input document, reporting `invalid_input` when it is not JSON.
pub fn parse_input(input: &str) -> Result<Value, Failure> {
    serde_json::from_str(input).map_err(|e| Failure::invalid_input(format!("input is not JSON: {e}")))
}

/// Implement `From<Failure>` for a plugin's generated `PluginError` (each
/// plugin has its own bindings, hence its own type):
/// `common::impl_from_failure!(PluginError);`.
#[macro_export]
macro_rules! impl_from_failure {
    ($plugin_error:ty) => {
        impl From<$crate::Failure> for $plugin_error {
            fn from(failure: $crate::Failure) -> Self {
                let details = failure.details_json();
                Self { code: failure.code, message: failure.message, retryable: failure.retryable, details }
            }
        }
    };
}
