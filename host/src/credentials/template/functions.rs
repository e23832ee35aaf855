//! The functions and filters header templates may call: encodings, SHA-256
//! and HMAC signatures, and the render time in the formats signing schemes
//! ask for (read from the render's injected clock, never the system's).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use minijinja::{Error, ErrorKind, State};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

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
    format_ms(now_ms(state)?, RFC3339)
}

/// `now_http_date()`: as in `Wed, 18 Nov 2026 11:06:40 GMT`.
pub(super) fn now_http_date(state: &State) -> Result<String, Error> {
    format_ms(now_ms(state)?, HTTP_DATE)
}

/// RFC 3339 in UTC with whole seconds, as in `2026-11-18T11:06:40Z`.
/// (`time`'s own `Rfc3339` would add fractional seconds, which signing
/// schemes that ask for this form do not expect.)
pub(super) const RFC3339: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// IMF-fixdate (RFC 9110), as in `Wed, 18 Nov 2026 11:06:40 GMT`.
pub(super) const HTTP_DATE: &[BorrowedFormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

/// The whole second containing `ms` (milliseconds since the epoch), in UTC,
/// as `format` says.
pub(super) fn format_ms(ms: i64, format: &[BorrowedFormatItem<'_>]) -> Result<String, Error> {
    let out_of_range = || {
        Error::new(
            ErrorKind::InvalidOperation,
            "the current time is outside what header templates can express",
        )
    };
    let at = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).map_err(|_| out_of_range())?;
    at.format(format).map_err(|_| out_of_range())
}
