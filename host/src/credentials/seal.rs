//! Sealing credential secrets at rest.
//!
//! Secrets the host stores itself (passwords and tokens entered through the admin API, refreshed
//! OAuth tokens) are kept in the database only in sealed form: encrypted and authenticated with
//! XChaCha20-Poly1305 under the operator's [`SealKey`]. The key comes from a file or from
//! [`KEY_ENV`], never from the config file, and never reaches the database; only its
//! [`check_value`](SealKey::check_value) is stored, so the host can refuse to start with a key other
//! than the one the store was sealed with.
//!
//! This module owns the key's parsing and the sealed format. Deciding which values are sealed, and
//! with which associated data, is left to the store.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Environment variable holding the key (base64 or hex).
pub const KEY_ENV: &str = "PLUGBOARD_SECRET_KEY";

/// Marks a sealed value and its format version, so a later format can be told apart.
const PREFIX: &[u8; 4] = b"pbs1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The HMAC message behind [`SealKey::check_value`]; versioned so it can change without ambiguity.
/// Version 2 marks a store whose secrets are bound to their credentials' destinations.
const CHECK_MESSAGE: &[u8] = b"plugboard secret key check v2";
/// The message of the check value stores recorded before secrets were bound to destinations.
const LEGACY_CHECK_MESSAGE: &[u8] = b"plugboard secret key check v1";

/// Operators paste keys from many tools: accept either base64 alphabet, with or without padding.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The operator's 32-byte key that seals secrets at rest. Debug prints `SealKey(***)`.
pub struct SealKey([u8; 32]);

impl SealKey {
    /// Parses base64 (standard or URL-safe, padded or not) of exactly 32 bytes, or 64 hex digits.
    /// Surrounding whitespace is ignored.
    ///
    /// Errors describe the problem ("the secret key must be 32 bytes, given as base64 or 64 hex
    /// digits; this one decodes to 16 bytes") and never contain the text itself.
    pub fn parse(text: &str) -> Result<SealKey, String> {
        const EXPECTED: &str = "the secret key must be 32 bytes, given as base64 or 64 hex digits";
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("{EXPECTED}; this one is empty"));
        }
        // Hex first: 64 hex digits are also valid base64 (of 48 bytes).
        let all_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
        if all_hex && text.len() == 64 {
            let mut key = [0u8; 32];
            if hex::decode_to_slice(text, &mut key).is_ok() {
                return Ok(SealKey(key));
            }
        }
        let decoded = BASE64_STANDARD
            .decode(text)
            .or_else(|_| BASE64_URL_SAFE.decode(text));
        match decoded {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(SealKey(key))
            }
            // Checked before the base64 length: text of hex digits was almost surely meant as hex.
            _ if all_hex => Err(format!(
                "{EXPECTED}; this one has {} hex digits, not 64",
                text.len()
            )),
            Ok(bytes) => Err(format!("{EXPECTED}; this one decodes to {} bytes", bytes.len())),
            // The decoder's own message quotes the offending character: keep it out.
            Err(_) => Err(format!("{EXPECTED}; this one is neither valid base64 nor hex")),
        }
    }

    /// Reads the key from `file` when given (errors name the path), else from [`KEY_ENV`];
    /// `Ok(None)` when neither is set.
    pub fn load(file: Option<&Path>) -> Result<Option<SealKey>, String> {
        let env_value = match std::env::var(KEY_ENV) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("environment variable `{KEY_ENV}` is not valid UTF-8"));
            }
        };
        load_from(file, env_value)
    }

    /// A new random key (from the operating system's random source).
    ///
    /// # Panics
    /// When the operating system has no random source; the host cannot work safely without one.
    pub fn generate() -> SealKey {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system provides no random source");
        SealKey(key)
    }

    /// The key as standard base64, for `plugboard credentials generate-key` to print once.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// A short identifier safe to store and show: hex of the first 8 bytes of
    /// HMAC-SHA256(key, "plugboard secret key check v2").
    ///
    /// Lets the host tell at startup that it was given a different key than the store was sealed
    /// with. Eight bytes tell keys apart without giving an attacker a useful check on guesses of a
    /// random 32-byte key.
    ///
    /// It also tells which associated data the store's secrets are sealed with: a store records
    /// this value once its secrets are bound to their credentials' destinations, and
    /// [`legacy_check_value`](SealKey::legacy_check_value) before.
    pub fn check_value(&self) -> String {
        self.check(CHECK_MESSAGE)
    }

    /// The check value a store recorded for this key before its secrets were bound to their
    /// credentials' destinations: seeing it means the store must be upgraded once.
    pub fn legacy_check_value(&self) -> String {
        self.check(LEGACY_CHECK_MESSAGE)
    }

    fn check(&self, message: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(message);
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// Seals `plaintext` with XChaCha20-Poly1305 under a fresh random 24-byte nonce.
    ///
    /// `aad` binds the ciphertext to its place (the caller passes the credential, the secret's
    /// name and the credential's destination) so a sealed value moved to another credential or
    /// field, or left in place while its credential is pointed elsewhere, fails to open. Output:
    /// `b"pbs1" || nonce || ciphertext+tag`.
    ///
    /// # Panics
    /// When the operating system has no random source.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        // A random 24-byte nonce never repeats in practice, so no counter has to be kept in the store.
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system provides no random source");
        let payload = Payload {
            msg: plaintext,
            aad: aad.as_bytes(),
        };
        let ciphertext = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("XChaCha20-Poly1305 seals any secret smaller than 256 GiB");
        let mut sealed = Vec::with_capacity(PREFIX.len() + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(PREFIX);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a value sealed by [`seal`](SealKey::seal) with the same key and `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let rest = sealed
            .strip_prefix(PREFIX.as_slice())
            .ok_or(SealError::Malformed)?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: aad.as_bytes(),
        };
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| SealError::WrongKeyOrTampered)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(***)")
    }
}

impl Drop for SealKey {
    fn drop(&mut self) {
        // Unsafe code is denied, so no volatile write: `black_box` keeps the compiler from
        // treating the overwrite as a dead store. Best effort; moved-from copies are not covered.
        self.0 = [0; 32];
        std::hint::black_box(&mut self.0);
    }
}

/// Why a sealed value cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not a sealed value (wrong prefix or too short): the stored value is corrupt.
    #[error("cannot open a sealed secret: the stored value is corrupt (not a sealed value)")]
    Malformed,
    /// Authentication failed: wrong key, or the value was altered or moved.
    #[error("cannot open a sealed secret: it was sealed with another key, or altered")]
    WrongKeyOrTampered,
}

/// [`SealKey::load`] with the environment variable's value passed in, so tests need not touch the
/// process environment (which other tests share).
fn load_from(file: Option<&Path>, env_value: Option<String>) -> Result<Option<SealKey>, String> {
    if let Some(path) = file {
        let path_text = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret key file `{path_text}`: {e}"))?;
        return SealKey::parse(&text)
            .map(Some)
            .map_err(|e| format!("secret key file `{path_text}`: {e}"));
    }
    match env_value {
        Some(text) => SealKey::parse(&text)
            .map(Some)
            .map_err(|e| format!("`{KEY_ENV}`: {e}")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &str = "credential:crm:password";

    #[test]
    fn sealed_value_opens_to_the_plaintext() {
        let key = SealKey::generate();
        let sealed = key.seal(AAD, b"hunter2");
        assert!(sealed.starts_with(b"pbs1"));
        assert_eq!(sealed.len(), 4 + 24 + 7 + 16);
        assert_eq!(key.open(AAD, &sealed).unwrap(), b"hunter2");
        assert_eq!(key.open(AAD, &key.seal(AAD, b"")).unwrap(), b"");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let key = SealKey::generate();
        let a = key.seal(AAD, b"same");
        let b = key.seal(AAD, b"same");
        assert_ne!(a[4..28], b[4..28]);
        assert_ne!(a, b);
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = SealKey::generate().seal(AAD, b"hunter2");
        let err = SealKey::generate().open(AAD, &sealed).unwrap_err();
        assert_eq!(err, SealError::WrongKeyOrTampered);
        assert_eq!(
            err.to_string(),
            "cannot open a sealed secret: it was sealed with another key, or altered"
        );
    }

    #[test]
    fn value_moved_to_another_place_cannot_open() {
        let key = SealKey::generate();
        let sealed = key.seal(AAD, b"hunter2");
        assert_eq!(
            key.open("credential:crm:token", &sealed),
            Err(SealError::WrongKeyOrTampered)
        );
        assert_eq!(
            key.open("credential:erp:password", &sealed),
            Err(SealError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let key = SealKey::generate();
        let sealed = key.seal(AAD, b"hunter2");
        for i in 4..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert_eq!(
                key.open(AAD, &altered),
                Err(SealError::WrongKeyOrTampered),
                "byte {i}"
            );
        }
        assert_eq!(
            key.open(AAD, &sealed[..sealed.len() - 1]),
            Err(SealError::WrongKeyOrTampered)
        );
    }

    #[test]
    fn malformed_values_are_reported_as_corrupt() {
        let key = SealKey::generate();
        let sealed = key.seal(AAD, b"hunter2");
        let mut wrong_prefix = sealed.clone();
        wrong_prefix[3] = b'2';
        assert_eq!(key.open(AAD, &wrong_prefix), Err(SealError::Malformed));
        assert_eq!(key.open(AAD, b""), Err(SealError::Malformed));
        assert_eq!(key.open(AAD, b"hunter2"), Err(SealError::Malformed));
        assert_eq!(key.open(AAD, &sealed[..4 + 24 + 15]), Err(SealError::Malformed));
        assert!(SealError::Malformed.to_string().contains("corrupt"));
    }

    #[test]
    fn parse_accepts_base64_base64url_and_hex() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(0xfb));
        let expected = hex::encode(bytes);
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            let text = engine.encode(bytes);
            let key = SealKey::parse(&format!("  {text}\n")).unwrap();
            assert_eq!(hex::encode(key.0), expected, "{text}");
        }
        assert_eq!(hex::encode(SealKey::parse(&expected).unwrap().0), expected);
        let upper = format!("\t{}\n", expected.to_uppercase());
        assert_eq!(hex::encode(SealKey::parse(&upper).unwrap().0), expected);
    }

    #[test]
    fn parse_rejects_wrong_lengths_without_echoing_the_text() {
        let short = base64::engine::general_purpose::STANDARD.encode([0x5au8; 16]);
        let err = SealKey::parse(&short).unwrap_err();
        assert_eq!(
            err,
            "the secret key must be 32 bytes, given as base64 or 64 hex digits; this one decodes to 16 bytes"
        );
        let long = base64::engine::general_purpose::STANDARD.encode([0x5au8; 33]);
        let short_hex = hex::encode([0xc3u8; 31]);
        let not_encoded = "pa$$word!pa$$word!pa$$word!pa$$word!pa$$w0rd";
        for text in [
            short.as_str(),
            long.as_str(),
            short_hex.as_str(),
            not_encoded,
            "   ",
        ] {
            let err = SealKey::parse(text).unwrap_err();
            assert!(err.starts_with("the secret key must be 32 bytes"), "{err}");
            if !text.trim().is_empty() {
                assert!(!err.contains(text.trim()), "{err}");
            }
        }
        assert!(
            SealKey::parse(&short_hex)
                .unwrap_err()
                .ends_with("this one has 62 hex digits, not 64")
        );
        assert!(
            SealKey::parse(not_encoded)
                .unwrap_err()
                .ends_with("neither valid base64 nor hex")
        );
    }

    #[test]
    fn generated_key_survives_encode_and_parse() {
        let key = SealKey::generate();
        let parsed = SealKey::parse(&key.encode()).unwrap();
        assert_eq!(parsed.0, key.0);
        assert_ne!(SealKey::generate().0, key.0);
    }

    #[test]
    fn check_value_is_stable_and_tells_keys_apart() {
        let key = SealKey::parse(&"ab".repeat(32)).unwrap();
        let again = SealKey::parse(&"ab".repeat(32)).unwrap();
        let other = SealKey::parse(&"ac".repeat(32)).unwrap();
        assert_eq!(key.check_value().len(), 16);
        assert_eq!(key.check_value(), again.check_value());
        assert_ne!(key.check_value(), other.check_value());
        assert_ne!(key.check_value(), key.legacy_check_value());
        assert_eq!(key.legacy_check_value().len(), 16);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = SealKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "SealKey(***)");
        assert_eq!(format!("{key:#?}"), "SealKey(***)");
    }

    #[test]
    fn load_reads_the_file_before_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let from_file = SealKey::generate();
        std::fs::write(&path, format!("{}\n", from_file.encode())).unwrap();
        let from_env = SealKey::generate().encode();
        let key = load_from(Some(&path), Some(from_env)).unwrap().unwrap();
        assert_eq!(key.0, from_file.0);
    }

    #[test]
    fn load_file_errors_name_the_path_but_not_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let err = load_from(Some(&missing), None).unwrap_err();
        assert!(
            err.contains("cannot read secret key file") && err.contains("missing.key"),
            "{err}"
        );

        let short = dir.path().join("short.key");
        let text = hex::encode([0x7eu8; 16]);
        std::fs::write(&short, &text).unwrap();
        let err = load_from(Some(&short), None).unwrap_err();
        assert!(err.contains("short.key") && err.contains("32 bytes"), "{err}");
        assert!(!err.contains(&text), "{err}");
    }

    #[test]
    fn load_falls_back_to_the_environment_value() {
        let key = SealKey::generate();
        let loaded = load_from(None, Some(format!(" {} ", key.encode())))
            .unwrap()
            .unwrap();
        assert_eq!(loaded.0, key.0);
        assert!(load_from(None, None).unwrap().is_none());
        let err = load_from(None, Some("too-short".into())).unwrap_err();
        assert!(
            err.starts_with("`PLUGBOARD_SECRET_KEY`: the secret key must be 32 bytes"),
            "{err}"
        );
        assert!(!err.contains("too-short"), "{err}");
    }
}
