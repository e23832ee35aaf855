//! The functions and filters header templates may call: encodings, SHA-256
//! and HMAC signatures, and the render time in the formats signing schemes
//! ask for (read from the render's injected clock, never the system's).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use minijinja::{Error, ErrorKind, State};
use sha2::{Digest, Sha256};

use super::NOW_MS;

/// Standard base64 of the text's UTF-8 bytes.
pub(super) fn base64_text(text: String) -> String {
    BASE64.encode(text)
}

/// Lowercase hex of the text's UTF-8 bytes.
pub(super) fn hex_text(text: String) -> String {
    hex::encode(text)
}

/// Lowercase hex SHA-256 of the text's UTF-8 bytes.
pub(super) fn sha256_hex(text: String) -> String {
    hex::encode(Sha256::digest(text))
}

/// HMAC-SHA256 of `message` under `key`, both as UTF-8 text.
pub(super) fn hmac_sha256(key: &str, message: &str) -> Vec<u8> {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `hmac_sha256(key, message)` in lowercase hex.
pub(super) fn hmac_sha256_hex(key: String, message: String) -> String {
    hex::encode(hmac_sha256(&key, &message))
}

/// `hmac_sha256_base64(key, message)` in standard base64.
pub(super) fn hmac_sha256_base64(key: String, message: String) -> String {
    BASE64.encode(hmac_sha256(&key, &message))
}

/// The render time, from the hidden context variable.
pub(super) fn now_ms(state: &State) -> Result<i64, Error> {
    state
        .lookup(NOW_MS)
        .and_then(|value| i64::try_from(value).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "the current time is not available here",
            )
        })
}

/// `now_unix()`: whole seconds since the epoch.
pub(super) fn now_unix(state: &State) -> Result<i64, Error> {
    Ok(now_ms(state)?.div_euclid(1000))
}

/// `now_rfc3339()`: as in `2026-11-18T11:06:40Z`.
pub(super) fn now_rfc3339(state: &State) -> Result<String, Error> {
    Ok(UtcTime::from_unix_ms(now_ms(state)?).rfc3339())
}

/// `now_http_date()`: as in `Wed, 18 Nov 2026 11:06:40 GMT`.
pub(super) fn now_http_date(state: &State) -> Result<String, Error> {
    Ok(UtcTime::from_unix_ms(now_ms(state)?).http_date())
}

/// A UTC calendar time, for formatting `now_*` without a date crate.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UtcTime {
    year: i64,
    month: usize,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    /// 0 is Sunday.
    weekday: usize,
}

impl UtcTime {
    /// Splits milliseconds since the epoch into calendar fields, using Howard
    /// Hinnant's `civil_from_days` (proleptic Gregorian, exact for all years).
    pub(super) fn from_unix_ms(ms: i64) -> UtcTime {
        let secs = ms.div_euclid(1000);
        let (days, secs_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097; // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
        let mp = (5 * doy + 2) / 153; // [0, 11], March is 0
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        UtcTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as usize,
            day: doy - (153 * mp + 2) / 5 + 1,
            hour: secs_of_day / 3600,
            minute: secs_of_day % 3600 / 60,
            second: secs_of_day % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
        }
    }

    /// As in `2026-11-18T11:06:40Z`.
    pub(super) fn rfc3339(&self) -> String {
        let UtcTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            ..
        } = self;
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }

    /// IMF-fixdate (RFC 9110), as in `Wed, 18 Nov 2026 11:06:40 GMT`.
    pub(super) fn http_date(&self) -> String {
        const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let UtcTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            weekday,
        } = self;
        let (weekday, month) = (WEEKDAYS[*weekday], MONTHS[month - 1]);
        format!("{weekday}, {day:02} {month} {year:04} {hour:02}:{minute:02}:{second:02} GMT")
    }
}
