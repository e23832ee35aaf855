//! Taking injected secrets back out of what an upstream answers.
//!
//! An upstream may reflect the request it received: an echo endpoint, a
//! proxy answering `TRACE`, an error page quoting the URL, a pagination
//! `next` link carrying an API key placed in the query, a `Location` header
//! of a redirect the policy did not follow. Whatever the host added to a
//! request (tokens, keys, Basic blobs, rendered template headers) and every
//! secret of the credential is replaced by [`REDACTED`] in the response
//! headers and body before the guest, the run record or a log sees them.
//!
//! Each value is searched for as it is and in the encodings an upstream
//! commonly reflects it in: percent-encoded (form and strict), JSON-escaped
//! and HTML-escaped, ignoring ASCII case (hex digits of percent-escapes,
//! servers that lowercase). A value transformed any other way (reversed,
//! split, hashed) is not found: the method allow-list and the header policy
//! are what keep upstreams from reflecting in the first place.
//!
//! A leaf: the credentials build a redactor from their secrets, the callout
//! policy applies it to each answer.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// What a found secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// A set of values to take out of responses.
#[derive(Clone, Debug)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// A redactor for `values` and their common encodings. Empty values are
    /// ignored.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut needles: Vec<String> = Vec::new();
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            for form in encodings(value) {
                if !needles.iter().any(|n| n.eq_ignore_ascii_case(&form)) {
                    needles.push(form);
                }
            }
        }
        if needles.is_empty() {
            return Redactor { matcher: None };
        }
        // Longest first, so an encoded form is replaced whole rather than
        // leaving pieces of it around a replaced raw form.
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)
            .expect("literal needles always build");
        Redactor {
            matcher: Some(matcher),
        }
    }

    /// Whether there is anything to look for.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every value replaced, or `None` when none occurs.
    pub fn redact(&self, text: &[u8]) -> Option<Vec<u8>> {
        let matcher = self.matcher.as_ref()?;
        matcher.find(text)?;
        Some(matcher.replace_all_bytes(text, &vec![REDACTED.as_bytes(); matcher.patterns_len()]))
    }

    /// `body` redacted; the same bytes when nothing occurs.
    pub fn redact_body(&self, body: Bytes) -> Bytes {
        match self.redact(&body) {
            Some(clean) => Bytes::from(clean),
            None => body,
        }
    }

    /// Redacts every header value in place; returns how many were changed.
    pub fn redact_headers(&self, headers: &mut HeaderMap) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut changed = 0;
        for value in headers.values_mut() {
            if let Some(clean) = self.redact(value.as_bytes()) {
                *value = HeaderValue::from_bytes(&clean).unwrap_or(HeaderValue::from_static(REDACTED));
                changed += 1;
            }
        }
        changed
    }
}

/// `value` as upstreams reflect it.
fn encodings(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
    forms.push(utf8_percent_encode(value, NON_ALPHANUMERIC).to_string());
    let json = serde_json::to_string(value).expect("a string serializes");
    forms.push(json[1..json.len() - 1].to_string());
    forms.push(json[1..json.len() - 1].replace('/', "\\/"));
    forms.push(
        value
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;"),
    );
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_in_every_common_encoding() {
        let secret = "s3cr3t/+=&\"key";
        let r = Redactor::new([secret]);
        let reflected = [
            format!("authorization: Bearer {secret}"),
            format!(
                "next=https://api/x?api_key={}",
                url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
            ),
            format!("{{\"echo\": {}}}", serde_json::to_string(secret).unwrap()),
            format!("<p>{}</p>", secret.replace('&', "&amp;").replace('"', "&quot;")),
            utf8_percent_encode(secret, NON_ALPHANUMERIC)
                .to_string()
                .to_lowercase(),
            secret.to_uppercase(),
        ];
        for text in reflected {
            let clean = String::from_utf8(r.redact(text.as_bytes()).expect("found")).unwrap();
            assert!(!clean.to_lowercase().contains("s3cr3t"), "{text} -> {clean}");
            assert!(clean.contains(REDACTED));
        }
        assert_eq!(r.redact(b"nothing here"), None);
    }

    #[test]
    fn header_values_are_redacted() {
        let r = Redactor::new(["tok-123"]);
        let mut h = HeaderMap::new();
        h.insert("location", "https://api/x?key=tok-123".parse().unwrap());
        h.insert("x-other", "fine".parse().unwrap());
        assert_eq!(r.redact_headers(&mut h), 1);
        assert_eq!(h["location"], "https://api/x?key=[REDACTED]");
        assert!(Redactor::new([""]).is_empty());
    }
}
