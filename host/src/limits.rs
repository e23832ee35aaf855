//! Per-invocation limits: what one call into a plugin may consume.
//!
//! The host applies a default set to every plugin and lets the operator
//! override any of them per plugin (`[plugins.NAME.limits]` in the config
//! file) and per integration (`limits = { ... }` in a definition). The
//! sandbox enforces them; this module only says what they are and which
//! values are allowed. Every override is range-checked before it is turned
//! into bytes or a duration, so no value can wrap or overflow.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// The limits one invocation of a plugin runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Linear memory, summed over all of the component's memories, in bytes.
    pub memory_bytes: u64,
    /// Host memory the invocation may make the host hold for it: log lines,
    /// callout records, buffered `wasi:http` bodies and resources.
    pub host_memory_bytes: u64,
    /// Wall time from instantiation to the plugin's answer.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Size of the input JSON document, in bytes.
    pub max_input_bytes: usize,
    /// Size of the output JSON document (or error), in bytes.
    pub max_output_bytes: usize,
    /// Number of upstream requests one invocation may cause: each callout,
    /// each redirect hop it follows and each resend with a new token.
    pub max_callouts: u32,
    /// `wasi:http` requests of one invocation in flight at the same time.
    pub max_concurrent_callouts: u32,
}

impl Default for Limits {
    /// 64 MiB, 30 s, 6 MiB in and out, 100 callouts: room for a typical
    /// connector call while keeping one runaway plugin from hurting the rest.
    /// 6 MiB matches the synchronous payload ceiling integration engineers
    /// already design for on other platforms. 32 MiB of host memory holds a
    /// full-size request body and response body at once plus a thousand
    /// log lines; 8 concurrent requests is what a `Promise.all` over a page
    /// of records needs without letting one plugin open hundreds.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * MIB,
            host_memory_bytes: 32 * MIB,
            timeout: Duration::from_secs(30),
            max_input_bytes: 6 * MIB as usize,
            max_output_bytes: 6 * MIB as usize,
            max_callouts: 100,
            max_concurrent_callouts: 8,
        }
    }
}

/// Overrides as written in the config file or a definition; absent fields
/// keep the default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// `memory_mib = 128`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 65_536)]
    pub memory_mib: Option<u64>,
    /// `host_memory_mib = 32`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4096)]
    pub host_memory_mib: Option<u64>,
    /// `timeout_ms = 5000`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub timeout_ms: Option<u64>,
    /// `max_input_bytes = 1048576`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 268_435_456)]
    pub max_input_bytes: Option<u64>,
    /// `max_output_bytes = 1048576`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 268_435_456)]
    pub max_output_bytes: Option<u64>,
    /// `max_callouts = 10`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100_000)]
    pub max_callouts: Option<u64>,
    /// `max_concurrent_callouts = 8`
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub max_concurrent_callouts: Option<u64>,
}

/// The allowed range of each limit, as `(setting, least, most, unit)`.
/// `memory_mib`'s upper bound is the sandbox ceiling, checked separately.
///
/// The upper bounds keep every product of a limit within range (bytes fit a
/// `u64`, deadlines an `Instant`) and say what the host is built for: a
/// day-long async attempt at most, documents far above any synchronous
/// payload, callouts enough for paging through a large export.
pub const RANGES: &[(&str, u64, u64, &str)] = &[
    ("memory_mib", 1, MAX_MEMORY_CEILING_MIB, "MiB"),
    ("host_memory_mib", 1, 4096, "MiB"),
    ("timeout_ms", 1, 86_400_000, "ms"),
    ("max_input_bytes", 1, 256 * MIB, "bytes"),
    ("max_output_bytes", 1, 256 * MIB, "bytes"),
    ("max_callouts", 0, 100_000, ""),
    ("max_concurrent_callouts", 1, 64, ""),
];

/// Highest `[sandbox] max_memory_mib` accepted (64 GiB).
pub const MAX_MEMORY_CEILING_MIB: u64 = 65_536;

impl LimitOverrides {
    fn values(&self) -> [(&'static str, Option<u64>); 7] {
        [
            ("memory_mib", self.memory_mib),
            ("host_memory_mib", self.host_memory_mib),
            ("timeout_ms", self.timeout_ms),
            ("max_input_bytes", self.max_input_bytes),
            ("max_output_bytes", self.max_output_bytes),
            ("max_callouts", self.max_callouts),
            ("max_concurrent_callouts", self.max_concurrent_callouts),
        ]
    }

    /// Every value outside its allowed range, each problem naming the
    /// setting, the value and the range. `memory_ceiling_mib` is the
    /// sandbox's `max_memory_mib`.
    pub fn problems(&self, memory_ceiling_mib: u64) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in self.values() {
            let Some(value) = value else { continue };
            let (_, least, most, unit) = RANGES
                .iter()
                .find(|r| r.0 == name)
                .expect("every limit has a range");
            let most = if name == "memory_mib" {
                memory_ceiling_mib
            } else {
                *most
            };
            if value < *least || value > most {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                let ceiling = if name == "memory_mib" {
                    " (the sandbox's `max_memory_mib`)"
                } else {
                    ""
                };
                problems.push(format!(
                    "`{name} = {value}` is out of range: allowed is {least} to {most}{unit}{ceiling}"
                ));
            }
        }
        problems
    }
}

impl Limits {
    /// These limits with `overrides` applied on top. Values must have passed
    /// [`LimitOverrides::problems`]; out-of-range values are clamped so a
    /// caller that skipped the check still gets usable limits.
    pub fn with(&self, overrides: &LimitOverrides) -> Limits {
        let clamp = |name: &str, v: u64| {
            let (_, least, most, _) = RANGES.iter().find(|r| r.0 == name).expect("known limit");
            v.clamp(*least, *most)
        };
        let bytes = |name: &str, v: Option<u64>, d: usize| v.map_or(d, |v| clamp(name, v) as usize);
        Limits {
            memory_bytes: overrides
                .memory_mib
                .map_or(self.memory_bytes, |m| clamp("memory_mib", m) * MIB),
            host_memory_bytes: overrides
                .host_memory_mib
                .map_or(self.host_memory_bytes, |m| clamp("host_memory_mib", m) * MIB),
            timeout: overrides
                .timeout_ms
                .map_or(self.timeout, |ms| Duration::from_millis(clamp("timeout_ms", ms))),
            max_input_bytes: bytes("max_input_bytes", overrides.max_input_bytes, self.max_input_bytes),
            max_output_bytes: bytes(
                "max_output_bytes",
                overrides.max_output_bytes,
                self.max_output_bytes,
            ),
            max_callouts: overrides
                .max_callouts
                .map_or(self.max_callouts, |n| clamp("max_callouts", n) as u32),
            max_concurrent_callouts: overrides
                .max_concurrent_callouts
                .map_or(self.max_concurrent_callouts, |n| {
                    clamp("max_concurrent_callouts", n) as u32
                }),
        }
    }

    /// Checks the combined limits are usable under an engine-wide memory
    /// ceiling; returns every problem.
    pub fn problems(&self, memory_ceiling_bytes: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.memory_bytes == 0 || self.memory_bytes > memory_ceiling_bytes {
            problems.push(format!(
                "memory limit of {} MiB must be between 1 MiB and the sandbox ceiling of {} MiB",
                self.memory_bytes / MIB,
                memory_ceiling_bytes / MIB
            ));
        }
        problems
    }

    /// Memory limit in whole MiB, for messages.
    pub fn memory_mib(&self) -> u64 {
        self.memory_bytes / MIB
    }

    /// Host memory limit in whole MiB, for messages.
    pub fn host_memory_mib(&self) -> u64 {
        self.host_memory_bytes / MIB
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
        let o = LimitOverrides {
            memory_mib: Some(1024),
            ..Default::default()
        };
        let problems = o.problems(512);
        assert!(
            problems[0].contains("`memory_mib = 1024`") && problems[0].contains("1 to 512 MiB"),
            "{problems:?}"
        );
    }

    /// Values that once wrapped (2^44 MiB became 0 bytes) or overflowed a
    /// deadline (2^64-1 ms) are refused with their range, never converted.
    #[test]
    fn huge_and_zero_limits_are_refused_with_their_range() {
        let o = LimitOverrides {
            memory_mib: Some(1 << 44),
            host_memory_mib: Some(0),
            timeout_ms: Some(u64::MAX),
            max_input_bytes: Some(0),
            max_output_bytes: Some(u64::MAX),
            max_callouts: Some(u64::from(u32::MAX) + 1),
            max_concurrent_callouts: Some(0),
        };
        let problems = o.problems(512);
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(
            problems[2].contains("`timeout_ms = 18446744073709551615`")
                && problems[2].contains("1 to 86400000 ms")
        );
        // Even unchecked, nothing wraps.
        let l = Limits::default().with(&o);
        assert_eq!(l.memory_bytes, MAX_MEMORY_CEILING_MIB * MIB);
        assert_eq!(l.timeout, Duration::from_secs(86_400));
        assert_eq!(l.max_concurrent_callouts, 1);
    }
}
