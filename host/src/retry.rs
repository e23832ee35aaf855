//! Retry policies: when and how often a failed async run is tried again.
//!
//! A policy is arithmetic over the attempt number: this module owns the
//! schedule, its validation and reading an upstream's `Retry-After`. Deciding
//! whether a failure is retryable, drawing the random jitter, keeping the
//! clock and waiting belong to the queue; the jitter and the current time come
//! in as arguments so every schedule here can be tested exactly.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The most retries a policy may ask for: past this it is a loop, not a policy.
pub const MAX_RETRIES: u32 = 100;

/// The longest a run ever waits between two tries, whatever the policy or the
/// upstream asks: a run queued for longer is more likely stale than late, and
/// an upstream's `Retry-After` must not park a run for a week.
pub const MAX_DELAY: Duration = Duration::from_millis(MAX_DELAY_MS);

const MAX_DELAY_MS: u64 = 24 * 60 * 60 * 1000;

/// When and how often a failed async run is tried again. Only retryable
/// failures are retried.
///
/// In TOML: `policy = "fixed"`, `retries = 3`, `interval_ms = 5000`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetryPolicy {
    /// Fail at the first failure: `policy = "none"`.
    #[serde(deserialize_with = "no_fields")]
    None,
    /// Try again at once, up to `retries` more times: `policy = "immediate"`.
    Immediate {
        /// `retries = 3`: tries after the first, at most [`MAX_RETRIES`].
        #[schema(maximum = 100)]
        retries: u32,
    },
    /// Wait `interval_ms` between tries, up to `retries` more times:
    /// `policy = "fixed"`.
    Fixed {
        /// `retries = 3`: tries after the first, at most [`MAX_RETRIES`].
        #[schema(maximum = 100)]
        retries: u32,
        /// `interval_ms = 5000`: the wait before each retry, 1 ms to 24 h.
        #[schema(minimum = 1, maximum = 86_400_000)]
        interval_ms: u64,
    },
    /// Wait each listed delay in turn, one retry per entry:
    /// `policy = "staggered"`.
    Staggered {
        /// `delays_ms = [1000, 5000, 30000]`: 1 to [`MAX_RETRIES`] delays,
        /// each 1 ms to 24 h.
        #[schema(schema_with = staggered_delays)]
        delays_ms: Vec<u64>,
    },
    /// Wait `initial_ms`, then `multiplier` times longer each time, capped at
    /// `max_ms`, up to `retries` more times: `policy = "exponential"`. With
    /// `jitter` the delay is uniform in `[0, computed]` ("full jitter", from
    /// the AWS architecture blog), so runs that failed together do not all
    /// come back together.
    Exponential {
        /// `retries = 5`: tries after the first, at most [`MAX_RETRIES`].
        #[schema(maximum = 100)]
        retries: u32,
        /// `initial_ms = 1000`: the computed wait before the first retry.
        #[schema(minimum = 1, maximum = 86_400_000)]
        initial_ms: u64,
        /// `multiplier = 2.0` (the default): growth per retry, at least 1.
        #[serde(default = "default_multiplier")]
        #[schema(minimum = 1)]
        multiplier: f64,
        /// `max_ms = 300000`: the cap on the computed wait, at most 24 h and
        /// not below `initial_ms`.
        #[schema(minimum = 1, maximum = 86_400_000)]
        max_ms: u64,
        /// `jitter = true` (the default): full jitter under the computed wait.
        #[serde(default = "default_jitter")]
        jitter: bool,
    },
}

/// Reads `policy = "none"` strictly. Serde ignores the other fields of a unit
/// variant in an internally tagged enum, even with `deny_unknown_fields`, so
/// `policy = "none"` with `retries = 3` would silently mean no retries.
fn no_fields<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    NoFields::deserialize(deserializer).map(|NoFields {}| ())
}

/// The schema of `delays_ms`: 1 to [`MAX_RETRIES`] delays of 1 ms to 24 h.
fn staggered_delays() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::Integer))
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(1))
                .maximum(Some(MAX_DELAY_MS)),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_RETRIES as usize))
        .build()
}

fn default_multiplier() -> f64 {
    2.0
}

fn default_jitter() -> bool {
    true
}

impl Default for RetryPolicy {
    /// Five retries over roughly half a minute (1, 2, 4, 8, 16 s before
    /// jitter): enough to ride out a restart or a short rate limit.
    fn default() -> RetryPolicy {
        RetryPolicy::Exponential {
            retries: 5,
            initial_ms: 1000,
            multiplier: default_multiplier(),
            max_ms: 300_000,
            jitter: default_jitter(),
        }
    }
}

impl RetryPolicy {
    /// Every problem, naming the field: retries above [`MAX_RETRIES`], zero or
    /// over-24 h delays, a multiplier below 1 or not finite, `max_ms` below
    /// `initial_ms`, an empty or over-long staggered list.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            RetryPolicy::None => {}
            RetryPolicy::Immediate { retries } => check_retries(*retries, &mut problems),
            RetryPolicy::Fixed { retries, interval_ms } => {
                check_retries(*retries, &mut problems);
                check_delay("interval_ms", *interval_ms, &mut problems);
            }
            RetryPolicy::Staggered { delays_ms } => check_staggered(delays_ms, &mut problems),
            RetryPolicy::Exponential {
                retries,
                initial_ms,
                multiplier,
                max_ms,
                jitter: _,
            } => {
                check_retries(*retries, &mut problems);
                check_delay("initial_ms", *initial_ms, &mut problems);
                check_delay("max_ms", *max_ms, &mut problems);
                if !multiplier.is_finite() || *multiplier < 1.0 {
                    problems.push(format!(
                        "`multiplier` is `{multiplier}`; it must be a finite number of at least 1"
                    ));
                }
                if max_ms < initial_ms {
                    problems.push(format!(
                        "`max_ms` of `{max_ms}` is less than `initial_ms` of `{initial_ms}`"
                    ));
                }
            }
        }
        problems
    }

    /// The most attempts a run may get: the first try plus the retries.
    pub fn max_attempts(&self) -> u32 {
        self.retries().saturating_add(1)
    }

    /// The delay before attempt `next_attempt` (2 = the first retry), or
    /// `None` when the policy allows no more attempts.
    ///
    /// `retry_after` is the upstream's `Retry-After`, honoured as a lower
    /// bound: the delay is the larger of the two, but never beyond
    /// [`MAX_DELAY`]. `jitter` is a value in `[0, 1)` from the caller (the
    /// queue passes a random one; 1.0 gives the cap), used only by an
    /// exponential policy with `jitter`. Attempt 1, the first try, has no
    /// policy delay.
    pub fn delay_before(
        &self,
        next_attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if next_attempt > self.max_attempts() {
            return None;
        }
        let policy = match next_attempt.checked_sub(2) {
            Some(retry) => Duration::from_millis(self.policy_delay_ms(retry, jitter)),
            None => Duration::ZERO,
        };
        Some(policy.max(retry_after.unwrap_or_default()).min(MAX_DELAY))
    }

    /// The whole schedule without jitter (each delay at its cap), one entry
    /// per retry: for docs, the API and tests. At most [`MAX_RETRIES`]
    /// entries, so even a policy that fails validation stays small.
    pub fn schedule(&self) -> Vec<Duration> {
        (2..=self.max_attempts())
            .take(MAX_RETRIES as usize)
            .filter_map(|attempt| self.delay_before(attempt, None, 1.0))
            .collect()
    }

    fn retries(&self) -> u32 {
        match self {
            RetryPolicy::None => 0,
            RetryPolicy::Immediate { retries }
            | RetryPolicy::Fixed { retries, .. }
            | RetryPolicy::Exponential { retries, .. } => *retries,
            RetryPolicy::Staggered { delays_ms } => u32::try_from(delays_ms.len()).unwrap_or(u32::MAX),
        }
    }

    /// The policy's own delay before retry number `retry` (0 = the first).
    fn policy_delay_ms(&self, retry: u32, jitter: f64) -> u64 {
        match self {
            RetryPolicy::None | RetryPolicy::Immediate { .. } => 0,
            RetryPolicy::Fixed { interval_ms, .. } => *interval_ms,
            RetryPolicy::Staggered { delays_ms } => {
                let index = usize::try_from(retry).unwrap_or(usize::MAX);
                delays_ms.get(index).copied().unwrap_or_default()
            }
            RetryPolicy::Exponential {
                initial_ms,
                multiplier,
                max_ms,
                jitter: jittered,
                ..
            } => {
                let computed = exponential_ms(*initial_ms, *multiplier, *max_ms, retry);
                if *jittered {
                    scale(computed, jitter)
                } else {
                    computed
                }
            }
        }
    }
}

/// `initial * multiplier^retry`, capped at `max`. Float arithmetic keeps an
/// invalid policy from panicking: an infinite or NaN product lands on the cap
/// (`f64::min` ignores NaN) and a negative one saturates to zero.
fn exponential_ms(initial: u64, multiplier: f64, max: u64, retry: u32) -> u64 {
    let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
    let computed = (initial as f64 * multiplier.powi(exponent)).min(max as f64);
    computed.round() as u64
}

/// Full jitter: `ms` scaled by `jitter`, clamped to `[0, 1]`; a NaN from a
/// confused caller means the cap, the safe side for an upstream in trouble.
fn scale(ms: u64, jitter: f64) -> u64 {
    let jitter = if jitter.is_nan() {
        1.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    (ms as f64 * jitter).round() as u64
}

fn check_retries(retries: u32, problems: &mut Vec<String>) {
    if retries > MAX_RETRIES {
        problems.push(format!(
            "`retries` is `{retries}`; at most {MAX_RETRIES} are allowed"
        ));
    }
}

fn check_delay(field: &str, ms: u64, problems: &mut Vec<String>) {
    if ms == 0 || ms > MAX_DELAY_MS {
        problems.push(format!(
            "`{field}` is `{ms}`; a delay must be between 1 ms and 24 h ({MAX_DELAY_MS} ms)"
        ));
    }
}

fn check_staggered(delays_ms: &[u64], problems: &mut Vec<String>) {
    if delays_ms.is_empty() {
        problems.push("`delays_ms` is empty; list at least one delay".to_string());
    }
    if delays_ms.len() > MAX_RETRIES as usize {
        problems.push(format!(
            "`delays_ms` lists {} delays; at most {MAX_RETRIES} are allowed",
            delays_ms.len()
        ));
    }
    for (i, ms) in delays_ms.iter().enumerate() {
        check_delay(&format!("delays_ms[{i}]"), *ms, problems);
    }
}

/// Parses a `Retry-After` header value: delta-seconds or an HTTP-date, the
/// latter relative to `now`. A negative count or a past date is zero (retry
/// now); anything else is `None`. The result is not capped: the caller
/// bounds it (see [`RetryPolicy::delay_before`]).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if negative {
            return Some(Duration::ZERO);
        }
        // Too many seconds for a u64 is still "a long time", not garbage.
        return Some(Duration::from_secs(digits.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    fn exponential(retries: u32, initial_ms: u64, max_ms: u64, jitter: bool) -> RetryPolicy {
        RetryPolicy::Exponential {
            retries,
            initial_ms,
            multiplier: 2.0,
            max_ms,
            jitter,
        }
    }

    /// Each policy waits exactly what it says, once per retry.
    #[test]
    fn each_policy_has_its_schedule() {
        assert_eq!(RetryPolicy::None.schedule(), Vec::<Duration>::new());
        assert_eq!(RetryPolicy::Immediate { retries: 3 }.schedule(), ms(&[0, 0, 0]));
        let fixed = RetryPolicy::Fixed {
            retries: 2,
            interval_ms: 5000,
        };
        assert_eq!(fixed.schedule(), ms(&[5000, 5000]));
        let staggered = RetryPolicy::Staggered {
            delays_ms: vec![1000, 5000, 30_000],
        };
        assert_eq!(staggered.schedule(), ms(&[1000, 5000, 30_000]));
        assert_eq!(
            exponential(6, 100, 1000, false).schedule(),
            ms(&[100, 200, 400, 800, 1000, 1000])
        );
        let tripling = RetryPolicy::Exponential {
            retries: 3,
            initial_ms: 10,
            multiplier: 3.0,
            max_ms: 1000,
            jitter: true,
        };
        assert_eq!(
            tripling.schedule(),
            ms(&[10, 30, 90]),
            "the schedule shows the cap under jitter"
        );
        assert_eq!(
            RetryPolicy::default().schedule(),
            ms(&[1000, 2000, 4000, 8000, 16_000])
        );
    }

    /// A run gets its first try plus one per retry.
    #[test]
    fn max_attempts_is_one_plus_the_retries() {
        assert_eq!(RetryPolicy::None.max_attempts(), 1);
        assert_eq!(RetryPolicy::Immediate { retries: 3 }.max_attempts(), 4);
        let fixed = RetryPolicy::Fixed {
            retries: 2,
            interval_ms: 1,
        };
        assert_eq!(fixed.max_attempts(), 3);
        let staggered = RetryPolicy::Staggered {
            delays_ms: vec![1, 2, 3],
        };
        assert_eq!(staggered.max_attempts(), 4);
        assert_eq!(RetryPolicy::default().max_attempts(), 6);
        assert_eq!(
            RetryPolicy::Immediate { retries: u32::MAX }.max_attempts(),
            u32::MAX
        );
    }

    /// After the last allowed attempt there is no delay, only the end.
    #[test]
    fn no_delay_after_the_last_attempt() {
        assert_eq!(RetryPolicy::None.delay_before(2, None, 0.5), None);
        let fixed = RetryPolicy::Fixed {
            retries: 2,
            interval_ms: 50,
        };
        assert_eq!(fixed.delay_before(3, None, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(fixed.delay_before(4, None, 0.5), None);
        assert_eq!(
            fixed.delay_before(4, Some(Duration::from_secs(1)), 0.5),
            None,
            "retry-after does not add attempts"
        );
        let staggered = RetryPolicy::Staggered { delays_ms: vec![7] };
        assert_eq!(staggered.delay_before(3, None, 0.5), None);
        assert_eq!(exponential(1, 10, 10, true).delay_before(3, None, 0.5), None);
        assert_eq!(
            fixed.delay_before(1, None, 0.5),
            Some(Duration::ZERO),
            "the first try waits for nothing"
        );
    }

    /// Full jitter scales the capped exponential delay by the caller's value.
    #[test]
    fn exponential_jitter_stays_under_the_cap() {
        let policy = exponential(10, 1000, 5000, true);
        assert_eq!(policy.delay_before(2, None, 0.0), Some(Duration::ZERO));
        assert_eq!(
            policy.delay_before(2, None, 0.5),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.delay_before(4, None, 0.5),
            Some(Duration::from_millis(2000))
        );
        assert_eq!(
            policy.delay_before(9, None, 0.5),
            Some(Duration::from_millis(2500)),
            "half the cap"
        );
        assert_eq!(
            policy.delay_before(9, None, 0.999),
            Some(Duration::from_millis(4995))
        );
        let plain = exponential(10, 1000, 5000, false);
        assert_eq!(
            plain.delay_before(3, None, 0.0),
            Some(Duration::from_millis(2000)),
            "no jitter"
        );
        assert_eq!(
            plain.delay_before(11, None, 0.0),
            Some(Duration::from_millis(5000))
        );
    }

    /// Nonsense from a caller or an unvalidated policy never panics.
    #[test]
    fn odd_inputs_stay_in_bounds() {
        let policy = exponential(100, 1000, 5000, true);
        assert_eq!(
            policy.delay_before(2, None, f64::NAN),
            Some(Duration::from_millis(1000))
        );
        assert_eq!(policy.delay_before(2, None, -1.0), Some(Duration::ZERO));
        assert_eq!(
            policy.delay_before(2, None, 7.0),
            Some(Duration::from_millis(1000))
        );
        let wild = RetryPolicy::Exponential {
            retries: u32::MAX,
            initial_ms: u64::MAX,
            multiplier: f64::INFINITY,
            max_ms: u64::MAX,
            jitter: false,
        };
        assert_eq!(wild.delay_before(u32::MAX, None, 0.5), Some(MAX_DELAY));
        assert_eq!(wild.schedule().len(), MAX_RETRIES as usize);
        let nan = RetryPolicy::Exponential {
            retries: 3,
            initial_ms: 10,
            multiplier: f64::NAN,
            max_ms: 70,
            jitter: false,
        };
        assert_eq!(nan.schedule(), ms(&[10, 70, 70]), "NaN^0 is 1, then the cap");
    }

    /// The upstream's Retry-After lengthens a wait but never shortens it, and
    /// never parks a run for more than a day.
    #[test]
    fn retry_after_is_a_lower_bound_capped_at_a_day() {
        let fixed = RetryPolicy::Fixed {
            retries: 3,
            interval_ms: 5000,
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            fixed.delay_before(2, secs(1), 0.5),
            secs(5),
            "shorter than the policy"
        );
        assert_eq!(fixed.delay_before(2, secs(60), 0.5), secs(60));
        assert_eq!(fixed.delay_before(2, secs(7 * 24 * 3600), 0.5), Some(MAX_DELAY));
        assert_eq!(fixed.delay_before(2, Some(Duration::MAX), 0.5), Some(MAX_DELAY));
        let jittered = exponential(3, 10_000, 10_000, true);
        assert_eq!(
            jittered.delay_before(2, secs(3), 0.0),
            secs(3),
            "jitter cannot undercut it"
        );
        assert_eq!(
            RetryPolicy::Immediate { retries: 1 }.delay_before(2, secs(2), 0.5),
            secs(2)
        );
    }

    /// Each policy reads back what it wrote, under its `policy` tag.
    #[test]
    fn policies_round_trip_through_json() {
        let policies = [
            RetryPolicy::None,
            RetryPolicy::Immediate { retries: 2 },
            RetryPolicy::Fixed {
                retries: 3,
                interval_ms: 250,
            },
            RetryPolicy::Staggered {
                delays_ms: vec![1000, 5000, 30_000],
            },
            RetryPolicy::default(),
        ];
        for policy in policies {
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(
                serde_json::from_str::<RetryPolicy>(&json).unwrap(),
                policy,
                "{json}"
            );
        }
        assert_eq!(
            serde_json::to_value(RetryPolicy::default()).unwrap(),
            serde_json::json!({
                "policy": "exponential", "retries": 5, "initial_ms": 1000,
                "multiplier": 2.0, "max_ms": 300_000, "jitter": true,
            })
        );
        assert_eq!(
            serde_json::to_value(RetryPolicy::None).unwrap(),
            serde_json::json!({"policy": "none"})
        );
    }

    /// An exponential policy that leaves out `multiplier` and `jitter` gets 2 and true.
    #[test]
    fn exponential_defaults_fill_in() {
        let json = r#"{"policy":"exponential","retries":3,"initial_ms":100,"max_ms":1000}"#;
        let parsed: RetryPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, exponential(3, 100, 1000, true));
        let toml = "policy = \"exponential\"\nretries = 3\ninitial_ms = 100\nmax_ms = 1000\nmultiplier = 3\n";
        let parsed: RetryPolicy = toml::from_str(toml).unwrap();
        let RetryPolicy::Exponential {
            multiplier, jitter, ..
        } = parsed
        else {
            panic!("not exponential: {parsed:?}");
        };
        assert_eq!(
            (multiplier, jitter),
            (3.0, true),
            "a whole-number multiplier is read as a float"
        );
    }

    /// A misspelled field or policy is refused rather than silently ignored.
    #[test]
    fn unknown_fields_and_policies_are_refused() {
        for json in [
            r#"{"policy":"fixed","retries":1,"interval_ms":5,"interval":5}"#,
            r#"{"policy":"exponential","retries":3,"initial_ms":100,"max_ms":1000,"factor":3}"#,
            r#"{"policy":"staggered","delays_ms":[1],"retries":1}"#,
            r#"{"policy":"immediate","retries":1,"interval_ms":5}"#,
            r#"{"policy":"linear","retries":1}"#,
            r#"{"policy":"none","retries":3}"#,
            r#"{"retries":1}"#,
            r#"{"policy":"fixed","retries":1}"#,
        ] {
            let err = serde_json::from_str::<RetryPolicy>(json);
            assert!(err.is_err(), "accepted {json}: {err:?}");
        }
        let none = toml::from_str::<RetryPolicy>("policy = \"none\"\n");
        assert_eq!(none.unwrap(), RetryPolicy::None);
        let none = toml::from_str::<RetryPolicy>("policy = \"none\"\nretries = 3\n");
        assert!(none.is_err(), "accepted retries on `none`: {none:?}");
    }

    /// Valid policies, the default included, have no problems.
    #[test]
    fn sensible_policies_have_no_problems() {
        let policies = [
            RetryPolicy::None,
            RetryPolicy::Immediate { retries: 0 },
            RetryPolicy::Immediate { retries: MAX_RETRIES },
            RetryPolicy::Fixed {
                retries: 3,
                interval_ms: MAX_DELAY_MS,
            },
            RetryPolicy::Staggered {
                delays_ms: vec![1; MAX_RETRIES as usize],
            },
            RetryPolicy::default(),
            exponential(3, 1000, 1000, false),
        ];
        for policy in policies {
            assert_eq!(policy.problems(), Vec::<String>::new(), "{policy:?}");
        }
    }

    /// Every problem is reported, each naming its field and value.
    #[test]
    fn problems_name_the_field() {
        let fixed = RetryPolicy::Fixed {
            retries: 101,
            interval_ms: 0,
        };
        assert_eq!(
            fixed.problems(),
            [
                "`retries` is `101`; at most 100 are allowed",
                "`interval_ms` is `0`; a delay must be between 1 ms and 24 h (86400000 ms)",
            ]
        );
        let immediate = RetryPolicy::Immediate { retries: 1000 };
        assert_eq!(
            immediate.problems(),
            ["`retries` is `1000`; at most 100 are allowed"]
        );
        let empty = RetryPolicy::Staggered { delays_ms: vec![] };
        assert_eq!(
            empty.problems(),
            ["`delays_ms` is empty; list at least one delay"]
        );
        let staggered = RetryPolicy::Staggered {
            delays_ms: vec![1000, 0, MAX_DELAY_MS + 1],
        };
        let problems = staggered.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("`delays_ms[1]` is `0`"), "{problems:?}");
        assert!(
            problems[1].starts_with("`delays_ms[2]` is `86400001`"),
            "{problems:?}"
        );
        let long = RetryPolicy::Staggered {
            delays_ms: vec![1; 101],
        };
        assert_eq!(
            long.problems(),
            ["`delays_ms` lists 101 delays; at most 100 are allowed"]
        );
    }

    /// An exponential policy's multiplier, bounds and their order are each checked.
    #[test]
    fn exponential_problems_name_the_field() {
        let shrinking = RetryPolicy::Exponential {
            retries: 3,
            initial_ms: 5000,
            multiplier: 0.5,
            max_ms: 1000,
            jitter: true,
        };
        assert_eq!(
            shrinking.problems(),
            [
                "`multiplier` is `0.5`; it must be a finite number of at least 1",
                "`max_ms` of `1000` is less than `initial_ms` of `5000`",
            ]
        );
        for multiplier in [f64::NAN, f64::INFINITY] {
            let problems = RetryPolicy::Exponential {
                retries: 3,
                initial_ms: 100,
                multiplier,
                max_ms: 1000,
                jitter: true,
            }
            .problems();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("`multiplier`"), "{problems:?}");
        }
        let zero = exponential(3, 0, MAX_DELAY_MS + 1, true).problems();
        assert_eq!(zero.len(), 2, "{zero:?}");
        assert!(zero[0].starts_with("`initial_ms` is `0`"), "{zero:?}");
        assert!(zero[1].starts_with("`max_ms` is `86400001`"), "{zero:?}");
    }

    /// Retry-After in seconds or as a date; the past is now; garbage is nothing.
    #[test]
    fn retry_after_values_parse() {
        // Wed, 21 Oct 2015 07:28:00 GMT: HTTP dates have whole seconds.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_retry_after("120", now), secs(120));
        assert_eq!(parse_retry_after(" 120 ", now), secs(120));
        assert_eq!(parse_retry_after("0", now), secs(0));
        assert_eq!(parse_retry_after("-5", now), secs(0));
        assert_eq!(parse_retry_after("99999999999999999999999", now), secs(u64::MAX));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), secs(30));
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now),
            secs(30)
        );
        assert_eq!(parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now), secs(0));
        for garbage in [
            "",
            "-",
            "soon",
            "1.5",
            "+5",
            "12s",
            "Wed, 32 Oct 2015 07:28:30 GMT",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }
}
