//! Wall-clock time as the host stores and signs it: milliseconds or seconds
//! since the Unix epoch. A leaf module: every part that reads the clock
//! uses these instead of its own copy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch for `t` (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> u64 {
    checked_unix_ms(t).unwrap_or(0)
}

/// Milliseconds since the Unix epoch for `t`, or `None` when `t` is before
/// the epoch or too far after it for a `u64`: for callers that must refuse
/// such a clock rather than read it as the epoch.
pub fn checked_unix_ms(t: SystemTime) -> Option<u64> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Whole seconds since the Unix epoch for `t` (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_seconds_round_trip() {
        let t = from_unix_ms(1_795_000_000_123);
        assert_eq!(unix_ms(t), 1_795_000_000_123);
        assert_eq!(unix_secs(t), 1_795_000_000);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(checked_unix_ms(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(checked_unix_ms(t), Some(1_795_000_000_123));
    }
}
