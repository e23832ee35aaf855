//! Pure checks of the callout policy: keeping a guest's path inside the
//! credential's base URL and cleaning the guest's headers.
//!
//! Both are deliberately strict and unit-tested on their own: they are the
//! line between "a plugin may call this API" and "a plugin may call anything".

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::percent_decode_str;
use url::Url;

/// Headers a guest may never set: authentication is the host's job, and the
/// connection-level ones belong to the host's HTTP client.
///
/// They are stripped here, inside the policy, rather than declared forbidden
/// to `wasi:http`: some guest HTTP clients (componentize-js's `fetch()`) fail
/// outright when the host refuses a header, while stripping is invisible to
/// them and just as safe.
const STRIPPED: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "http2-settings",
];

/// Joins a guest's `path` (with optional `?query`) onto `base`, refusing
/// anything that could leave it: absolute or scheme-relative URLs, `.` and
/// `..` segments (also percent-encoded), backslashes, fragments and control
/// characters.
pub fn join_confined(base: &Url, path: &str) -> Result<Url, String> {
    if path.chars().any(|c| c.is_control()) {
        return Err("path contains control characters".into());
    }
    if path.contains('\\') || path.contains('#') {
        return Err(format!("path `{path}` contains `\\` or `#`"));
    }
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    if !(path_part.is_empty() || path_part.starts_with('/')) || path_part.starts_with("//") {
        return Err(format!(
            "path `{path}` must be relative to the credential's base URL and start with `/`"
        ));
    }
    for segment in path_part.split('/') {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        if decoded
            .split(['/', '\\'])
            .any(|piece| piece == "." || piece == "..")
        {
            return Err(format!("path `{path}` tries to leave the credential's base URL"));
        }
    }
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path_part);
    url.set_path(if joined.is_empty() { "/" } else { &joined });
    let merged_query = match (base.query(), query) {
        (Some(b), Some(q)) if !q.is_empty() => Some(format!("{b}&{q}")),
        (Some(b), _) => Some(b.to_string()),
        (None, Some(q)) if !q.is_empty() => Some(q.to_string()),
        _ => None,
    };
    url.set_query(merged_query.as_deref());
    if !is_within(base, &url) {
        return Err(format!("path `{path}` tries to leave the credential's base URL"));
    }
    Ok(url)
}

/// Whether `url` has the same origin as `base` and sits at or below its path.
pub fn is_within(base: &Url, url: &Url) -> bool {
    if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let prefix = base.path().trim_end_matches('/');
    let path = url.path();
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
}

/// The guest's headers after the policy: invalid ones refused, reserved and
/// credential-owned ones removed. Returns the kept headers and the names of
/// those removed (recorded with the callout so authors can see why).
pub fn clean_headers(
    guest: &[(String, Vec<u8>)],
    credential_owned: &[HeaderName],
) -> Result<(HeaderMap, Vec<String>), String> {
    let mut kept = HeaderMap::new();
    let mut stripped = Vec::new();
    for (name, value) in guest {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", name.escape_debug()))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| format!("header `{header}` has an invalid value (CR, LF or NUL)"))?;
        let lower = header.as_str();
        if STRIPPED.contains(&lower) || lower.starts_with("proxy-") || credential_owned.contains(&header) {
            if !stripped.iter().any(|s| s == lower) {
                stripped.push(lower.to_string());
            }
            continue;
        }
        kept.append(header, value);
    }
    Ok((kept, stripped))
}

/// `url` with every query parameter value named `secret_param` masked, for
/// records and messages.
pub fn redact_query(url: &Url, secret_param: Option<&str>) -> String {
    let Some(param) = secret_param else {
        return url.to_string();
    };
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == param {
                "***".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs.is_empty() {
        return shown.to_string();
    }
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://api.example.com/v2/").unwrap()
    }

    #[test]
    fn paths_join_under_the_base() {
        let u = join_confined(&base(), "/orders/7?expand=lines").unwrap();
        assert_eq!(u.as_str(), "https://api.example.com/v2/orders/7?expand=lines");
        let u = join_confined(&base(), "").unwrap();
        assert_eq!(u.as_str(), "https://api.example.com/v2");
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "/../admin",
            "/a/%2e%2e/admin",
            "/a/%2E%2e%2fadmin",
            "//evil.example.com/x",
            "https://evil.example.com/x",
            "evil",
            "/a\\..\\b",
            "/x#frag",
            "/x\r\nHost: evil",
            "/./x",
        ] {
            assert!(join_confined(&base(), bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn base_query_is_kept() {
        let b = Url::parse("https://api.example.com/v1?tenant=acme").unwrap();
        let u = join_confined(&b, "/x?y=1").unwrap();
        assert_eq!(u.query(), Some("tenant=acme&y=1"));
    }

    #[test]
    fn sibling_prefix_is_not_within() {
        let b = Url::parse("https://api.example.com/v2").unwrap();
        assert!(!is_within(
            &b,
            &Url::parse("https://api.example.com/v20/x").unwrap()
        ));
        assert!(is_within(
            &b,
            &Url::parse("https://api.example.com/v2/x").unwrap()
        ));
        assert!(!is_within(
            &b,
            &Url::parse("http://api.example.com/v2/x").unwrap()
        ));
    }

    #[test]
    fn auth_headers_are_stripped_and_bad_values_refused() {
        let guest = vec![
            ("Authorization".to_string(), b"Bearer stolen".to_vec()),
            ("Proxy-Authorization".to_string(), b"x".to_vec()),
            ("Cookie".to_string(), b"a=b".to_vec()),
            ("X-Api-Key".to_string(), b"guess".to_vec()),
            ("Accept".to_string(), b"application/json".to_vec()),
        ];
        let owned = [HeaderName::from_static("x-api-key")];
        let (kept, stripped) = clean_headers(&guest, &owned).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            stripped,
            ["authorization", "proxy-authorization", "cookie", "x-api-key"]
        );
        let bad = vec![("X-A".to_string(), b"a\r\nInjected: 1".to_vec())];
        assert!(clean_headers(&bad, &[]).unwrap_err().contains("invalid value"));
    }

    #[test]
    fn query_secrets_are_masked() {
        let u = Url::parse("https://x.example/a?api_key=s3cr3t&b=1").unwrap();
        let shown = redact_query(&u, Some("api_key"));
        assert!(!shown.contains("s3cr3t") && shown.contains("b=1"), "{shown}");
    }
}
