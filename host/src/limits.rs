//! Per-invocation limits: what one call into a plugin may consume.
//!
//! The host applies a default set to every plugin and lets the operator
//! override any of them per plugin (`[plugins.NAME.limits]` in the config
//! file). The sandbox enforces them; this module only says what they are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// The limits one invocation of a plugin runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Linear memory, summed over all of the component's memories, in bytes.
    pub memory_bytes: u64,
    /// Wall time from instantiation to the plugin's answer.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Size of the input JSON document, in bytes.
    pub max_input_bytes: usize,
    /// Size of the output JSON document (or error), in bytes.
    pub max_output_bytes: usize,
    /// Number of outbound HTTP requests one invocation may make.
    pub max_callouts: u32,
}

impl Default for Limits {
    /// 64 MiB, 30 s, 6 MiB in and out, 100 callouts: room for a typical
    /// connector call while keeping one runaway plugin from hurting the rest.
    /// 6 MiB matches the synchronous payload ceiling integration engineers
    /// already design for on other platforms.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * MIB,
            timeout: Duration::from_secs(30),
            max_input_bytes: 6 * MIB as usize,
            max_output_bytes: 6 * MIB as usize,
            max_callouts: 100,
        }
    }
}

/// Overrides as written in the config file; absent fields keep the default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// `memory_mib = 128`
    pub memory_mib: Option<u64>,
    /// `timeout_ms = 5000`
    pub timeout_ms: Option<u64>,
    /// `max_input_bytes = 1048576`
    pub max_input_bytes: Option<usize>,
    /// `max_output_bytes = 1048576`
    pub max_output_bytes: Option<usize>,
    /// `max_callouts = 10`
    pub max_callouts: Option<u32>,
}

impl Limits {
    /// These limits with `overrides` applied on top.
    pub fn with(&self, overrides: &LimitOverrides) -> Limits {
        Limits {
            memory_bytes: overrides.memory_mib.map_or(self.memory_bytes, |m| m * MIB),
            timeout: overrides.timeout_ms.map_or(self.timeout, Duration::from_millis),
            max_input_bytes: overrides.max_input_bytes.unwrap_or(self.max_input_bytes),
            max_output_bytes: overrides.max_output_bytes.unwrap_or(self.max_output_bytes),
            max_callouts: overrides.max_callouts.unwrap_or(self.max_callouts),
        }
    }

    /// Checks the limits are usable under an engine-wide memory ceiling;
    /// returns every problem.
    pub fn problems(&self, memory_ceiling_bytes: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.memory_bytes == 0 || self.memory_bytes > memory_ceiling_bytes {
            problems.push(format!(
                "memory limit of {} MiB must be between 1 MiB and the sandbox ceiling of {} MiB",
                self.memory_bytes / MIB,
                memory_ceiling_bytes / MIB
            ));
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be greater than zero".into());
        }
        if self.max_input_bytes == 0 || self.max_output_bytes == 0 {
            problems.push("input and output size limits must be greater than zero".into());
        }
        problems
    }

    /// Memory limit in whole MiB, for messages.
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes / MIB
    }
}

/// Serializes a `Duration` as whole milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = LimitOverrides {
            timeout_ms: Some(500),
            max_callouts: Some(3),
            ..Default::default()
        };
        let l = Limits::default().with(&o);
        assert_eq!(l.timeout, Duration::from_millis(500));
        assert_eq!(l.max_callouts, 3);
        assert_eq!(l.memory_bytes, Limits::default().memory_bytes);
    }

    #[test]
    fn memory_above_the_ceiling_is_refused() {
        let l = Limits::default().with(&LimitOverrides {
            memory_mib: Some(1024),
            ..Default::default()
        });
        let problems = l.problems(512 * MIB);
        assert!(problems[0].contains("1024 MiB"), "{problems:?}");
    }
}
