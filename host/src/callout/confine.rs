//! Pure checks of the callout policy: keeping a guest's path inside the
//! credential's base URL, keeping its query off the parameters the credential
//! owns, and cleaning its headers.
//!
//! They are the line between "a plugin may call this API" and "a plugin may
//! call anything", so they are strict, unit-tested on their own and
//! property-tested against models of how real backends resolve paths
//! (`tests` below).
//!
//! # What "confined" means
//! A path is accepted only when every way a common backend resolves it stays
//! under the base path. Backends disagree: a gateway may decode
//! percent-escapes twice, Tomcat and Spring drop `;parameters` from a segment
//! before resolving `..`, IIS and Windows treat `\` as `/` and trim trailing
//! spaces, dots and NULs, some frameworks apply Unicode compatibility
//! normalisation (a fullwidth `．` becomes `.`). So each segment is decoded
//! until it stops changing, normalised (NFKC), split on `/` and `\`, stripped
//! of `;parameters` and trimmed; if any resulting piece is made only of dots,
//! the path is refused. Encoded control characters, `%u` escapes and bytes
//! that decode to invalid UTF-8 (overlong forms of `.` and `/`) are refused
//! too: no legitimate API path needs them and each is an escape somewhere.

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::percent_decode_str;
use unicode_normalization::UnicodeNormalization;
use url::Url;

/// Headers a guest may never send, by canonical name (lowercase, `_` read
/// as `-`, since CGI-style servers map both to the same variable):
/// - authentication, which is the host's job;
/// - connection-level headers, which belong to the host's HTTP client;
/// - headers that make a proxy reflect the request (`Max-Forwards` with
///   `TRACE` or `OPTIONS`, `Via`);
/// - headers that make a proxy or framework route the request somewhere
///   other than its URL says (`X-Original-URL`, `X-Rewrite-URL`,
///   `Forwarded`, WebDAV's `Destination`, method overrides);
/// - `Accept-Encoding`: the host asks for plain bodies so it can check them
///   for injected secrets before the guest sees them.
///
/// They are stripped here, inside the policy, rather than declared forbidden
/// to `wasi:http`: some guest HTTP clients (componentize-js's `fetch()`) fail
/// outright when the host refuses a header, while stripping is invisible to
/// them and just as safe.
const STRIPPED: &[&str] = &[
    "authorization",
    "cookie",
    "cookie2",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "http2-settings",
    "expect",
    "max-forwards",
    "via",
    "forwarded",
    "destination",
    "accept-encoding",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-original-uri",
    "x-original-host",
    "x-rewrite-url",
    "x-override-url",
    "x-host",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-middleware-subrequest",
];

/// Prefixes of header families a guest may never send, as above.
const STRIPPED_PREFIXES: &[&str] = &["proxy-", "x-forwarded-", "x-envoy-"];

/// How many rounds of percent-decoding a segment may need before it stops
/// changing; more layers than this are refused rather than decoded further.
const MAX_DECODE_ROUNDS: usize = 4;

/// Longest value quoted back in a message; guest paths can be megabytes.
const MAX_QUOTED: usize = 200;

/// `text` for a message: control characters escaped, cut at
/// [`MAX_QUOTED`] characters.
pub fn quoted(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_QUOTED)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX_QUOTED {
        out.push_str("...");
    }
    out
}

/// Joins a guest's `path` (with optional `?query`) onto `base`, refusing
/// anything that could leave it: absolute or scheme-relative URLs,
/// dot-segments in any encoding a backend might decode (see the module
/// docs), backslashes, fragments and control characters.
pub fn join_confined(base: &Url, path: &str) -> Result<Url, String> {
    if path.chars().any(char::is_control) {
        return Err(format!("path `{}` contains control characters", quoted(path)));
    }
    if path.contains('\\') || path.contains('#') {
        return Err(format!("path `{}` contains `\\` or `#`", quoted(path)));
    }
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    if !(path_part.is_empty() || path_part.starts_with('/')) || path_part.starts_with("//") {
        return Err(format!(
            "path `{}` must be relative to the credential's base URL and start with `/`",
            quoted(path)
        ));
    }
    check_segments(path_part).map_err(|why| format!("path `{}` {why}", quoted(path)))?;
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
        return Err(format!(
            "path `{}` tries to leave the credential's base URL",
            quoted(path)
        ));
    }
    Ok(url)
}

/// Checks every segment of a raw (still encoded) path; the error completes
/// "path `...` ".
pub fn check_segments(path: &str) -> Result<(), String> {
    if path.contains("%u") || path.contains("%U") {
        return Err("contains a `%u` escape, which some servers decode and others do not".into());
    }
    for segment in path.split('/') {
        check_segment(segment)?;
    }
    Ok(())
}

fn check_segment(segment: &str) -> Result<(), String> {
    let decoded = decode_fully(segment)?;
    if decoded.chars().any(char::is_control) {
        return Err("contains an encoded control character".into());
    }
    let normalized: String = decoded.nfkc().collect();
    for piece in normalized.split(['/', '\\']) {
        let piece = piece.split(';').next().unwrap_or_default();
        let piece = piece.trim_matches(|c: char| c.is_whitespace() || c.is_control());
        if !piece.is_empty() && piece.chars().all(|c| c == '.') {
            return Err("tries to leave the credential's base URL".into());
        }
    }
    Ok(())
}

/// Percent-decodes until the text stops changing, as a gateway that decodes
/// more than once would; refuses text that needs more than
/// [`MAX_DECODE_ROUNDS`] rounds or decodes to bytes that are not UTF-8.
fn decode_fully(segment: &str) -> Result<String, String> {
    let mut text = segment.to_string();
    for _ in 0..MAX_DECODE_ROUNDS {
        let next = percent_decode_str(&text)
            .decode_utf8()
            .map_err(|_| "contains percent-escapes that do not decode to UTF-8 text".to_string())?
            .into_owned();
        if next == text {
            return Ok(text);
        }
        text = next;
    }
    Err(format!(
        "is percent-encoded more than {MAX_DECODE_ROUNDS} times over"
    ))
}

/// Whether `url` has the same origin as `base` and sits at or below its path
/// on a segment boundary, with no segment a backend could resolve as a
/// dot-segment (a redirect's `Location` is checked with this).
pub fn is_within(base: &Url, url: &Url) -> bool {
    if url.origin() != base.origin() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let prefix = base.path().trim_end_matches('/');
    let path = url.path();
    let below = path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty();
    below && check_segments(path).is_ok()
}

/// The canonical form of a query parameter name for ownership checks: how
/// the most lenient common server reads it. Decoded (also `+` as space)
/// until stable, lowercased (ASP.NET reads names case-insensitively), with
/// a PHP or Rails array suffix (`name[]`, `name[0]`) removed and whitespace
/// trimmed.
fn canonical_param(name: &str) -> String {
    let mut text = name.replace('+', " ");
    for _ in 0..MAX_DECODE_ROUNDS {
        let next = percent_decode_str(&text).decode_utf8_lossy().replace('+', " ");
        if next == text {
            break;
        }
        text = next;
    }
    let text = text.split('[').next().unwrap_or_default();
    text.trim().to_lowercase()
}

/// The names of the parameters in a raw query, as servers split it: on `&`,
/// and on `;` too (older Java and Python servers do).
fn param_names(query: &str) -> impl Iterator<Item = &str> {
    query
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or_default())
}

/// Refuses a guest query that sets a parameter the credential owns: one in
/// the base URL's query (`?tenant=acme`) or an API key placed in the query.
/// Names are compared the way the most lenient server reads them, so
/// `%74enant`, `TENANT` and `tenant[]` are the same parameter. Returns the
/// owned name the guest tried to set.
pub fn owned_param_in<'a>(guest_query: &str, owned: &'a [String]) -> Option<&'a str> {
    if owned.is_empty() {
        return None;
    }
    param_names(guest_query).find_map(|name| {
        let name = canonical_param(name);
        owned
            .iter()
            .find(|o| canonical_param(o) == name)
            .map(String::as_str)
    })
}

/// The canonical form of a header name: lowercase, `_` read as `-`.
fn canonical_header(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn is_stripped(canonical: &str) -> bool {
    STRIPPED.contains(&canonical) || STRIPPED_PREFIXES.iter().any(|p| canonical.starts_with(p))
}

/// The guest's headers after the policy: invalid ones refused, reserved and
/// credential-owned ones removed (also their underscore twins). Returns the
/// kept headers and the names of those removed (recorded with the callout so
/// authors can see why).
pub fn clean_headers(
    guest: &[(String, Vec<u8>)],
    credential_owned: &[HeaderName],
) -> Result<(HeaderMap, Vec<String>), String> {
    let owned: Vec<String> = credential_owned
        .iter()
        .map(|h| canonical_header(h.as_str()))
        .collect();
    let mut kept = HeaderMap::new();
    let mut stripped = Vec::new();
    for (name, value) in guest {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", quoted(name)))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| format!("header `{header}` has an invalid value (CR, LF or NUL)"))?;
        let canonical = canonical_header(header.as_str());
        if is_stripped(&canonical) || owned.contains(&canonical) {
            let lower = header.as_str();
            if !stripped.iter().any(|s| s == lower) {
                stripped.push(lower.to_string());
            }
            continue;
        }
        kept.append(header, value);
    }
    Ok((kept, stripped))
}

/// Response headers a guest never receives: sessions the upstream minted
/// for the credential, and the server's authentication results.
const RESPONSE_DROPPED: &[&str] = &[
    "set-cookie",
    "set-cookie2",
    "authentication-info",
    "proxy-authentication-info",
];

/// Removes from an upstream's response headers what the guest must not see;
/// returns the names removed.
pub fn clean_response_headers(headers: &mut HeaderMap) -> Vec<String> {
    let mut dropped = Vec::new();
    for name in RESPONSE_DROPPED {
        if headers.remove(*name).is_some() {
            dropped.push((*name).to_string());
        }
    }
    dropped
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
    use proptest::prelude::*;

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
        for ok in [
            "/projects/group%2Fproject",
            "/files/report.v2.pdf",
            "/a/.well-known/x",
            "/search;jsessionid=1",
            "/100%25",
            "/caf%C3%A9",
            "/a..b/c.",
        ] {
            assert!(join_confined(&base(), ok).is_ok(), "{ok} was refused");
        }
    }

    /// Every escape the review found, and their relatives, are refused.
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
            // Tomcat and Spring drop `;parameters` before resolving.
            "/..;/admin",
            "/..;x=1/admin",
            // Gateways that decode twice.
            "/%252e%252e/admin",
            "/%25252e%25252e/admin",
            "/%%32%65%%32%65/admin",
            // Trailing NUL, space, tab (IIS, Windows, some C backends).
            "/..%00/admin",
            "/..%20/admin",
            "/..%09/admin",
            "/%20../admin",
            // Backslash and its encodings.
            "/..%5cadmin",
            "/..%255cadmin",
            // Unicode forms that normalise to dots and slashes.
            "/%ef%bc%8e%ef%bc%8e/admin",
            "/\u{ff0e}\u{ff0e}/admin",
            "/..%ef%bc%8fadmin",
            // Overlong UTF-8 and IIS `%u`.
            "/%c0%ae%c0%ae/admin",
            "/%u002e%u002e/admin",
            "/...",
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

    /// A parameter the credential owns cannot be set again, however it is
    /// spelled.
    #[test]
    fn owned_parameters_are_found_in_every_spelling() {
        let owned = vec!["tenant".to_string(), "api_key".to_string()];
        for q in [
            "tenant=globex",
            "a=1&tenant=globex",
            "a=1;tenant=globex",
            "%74enant=globex",
            "%2574enant=globex",
            "TENANT=globex",
            "tenant[]=globex",
            "tenant%5B%5D=globex",
            "api_key=guess",
            "+tenant=globex",
        ] {
            assert!(owned_param_in(q, &owned).is_some(), "{q} passed");
        }
        for q in ["tenants=1", "x=tenant", "page=2&size=10", ""] {
            assert_eq!(owned_param_in(q, &owned), None, "{q}");
        }
    }

    #[test]
    fn sibling_prefix_is_not_within() {
        let b = Url::parse("https://api.example.com/v2").unwrap();
        let within = |u: &str| is_within(&b, &Url::parse(u).unwrap());
        assert!(!within("https://api.example.com/v20/x"));
        assert!(within("https://api.example.com/v2/x"));
        assert!(!within("http://api.example.com/v2/x"));
        // A redirect target is judged decoded, as the upstream will read it.
        assert!(!within("https://api.example.com/v2/..%2fadmin"));
        assert!(!within("https://api.example.com/v2/%2e%2e%2fadmin"));
        assert!(!within("https://api.example.com/v2/..;/admin"));
        assert!(!within("https://user@api.example.com/v2/x"));
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

    /// Routing, reflection and hop-by-hop headers never reach the upstream,
    /// nor do underscore twins of the credential's own headers.
    #[test]
    fn routing_and_reflection_headers_are_stripped() {
        let names = [
            "X-Original-URL",
            "X-Rewrite-URL",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "x_forwarded_proto",
            "Forwarded",
            "Destination",
            "X-HTTP-Method-Override",
            "X-Method-Override",
            "Max-Forwards",
            "Via",
            "TE",
            "Upgrade",
            "Accept-Encoding",
            "X-Envoy-Original-Path",
            "x_tenant",
            "X_API_KEY",
            "Authorization_",
            "x-middleware-subrequest",
        ];
        let guest: Vec<(String, Vec<u8>)> = names.iter().map(|n| (n.to_string(), b"v".to_vec())).collect();
        let owned = [
            HeaderName::from_static("x-tenant"),
            HeaderName::from_static("x-api-key"),
        ];
        let (kept, stripped) = clean_headers(&guest, &owned).unwrap();
        let kept: Vec<&str> = kept.keys().map(|k| k.as_str()).collect();
        assert_eq!(kept, ["authorization_"], "stripped: {stripped:?}");
    }

    #[test]
    fn query_secrets_are_masked() {
        let u = Url::parse("https://x.example/a?api_key=s3cr3t&b=1").unwrap();
        let shown = redact_query(&u, Some("api_key"));
        assert!(!shown.contains("s3cr3t") && shown.contains("b=1"), "{shown}");
    }

    #[test]
    fn messages_quote_at_most_a_little() {
        let long = format!("/{}", "a".repeat(100_000));
        assert!(quoted(&long).len() < 300);
        assert_eq!(quoted("a\u{1b}[31m"), "a\\u{1b}[31m");
    }

    // The oracle: independent models of how common backends resolve a path
    // that reached them. Confinement holds when, for every path the joiner
    // accepts, every model resolves it under the base path.

    /// RFC 3986 section 5.2.4, on `/`-separated segments.
    fn remove_dot_segments(path: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        for seg in path.split('/').skip(1) {
            match seg {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        format!("/{}", out.join("/"))
    }

    fn decode(path: &str, rounds: usize) -> String {
        let mut text = path.to_string();
        for _ in 0..rounds {
            text = percent_decode_str(&text).decode_utf8_lossy().into_owned();
        }
        text
    }

    /// Each backend's reading of the path on the wire.
    fn models(wire: &str) -> Vec<(&'static str, String)> {
        let mut out = vec![("rfc3986", remove_dot_segments(wire))];
        out.push((
            "decode once",
            remove_dot_segments(&decode(wire, 1).replace('\\', "/")),
        ));
        out.push((
            "decode thrice",
            remove_dot_segments(&decode(wire, 3).replace('\\', "/")),
        ));
        let tomcat: Vec<String> = wire
            .split('/')
            .map(|s| decode(s.split(';').next().unwrap_or_default(), 1))
            .collect();
        out.push(("tomcat", remove_dot_segments(&tomcat.join("/"))));
        let iis: Vec<String> = decode(&wire.replace('\\', "/"), 2)
            .replace('\\', "/")
            .split('/')
            .map(|s| {
                let t = s.trim_end_matches([' ', '\0', '\t']).trim_start_matches(' ');
                if t.len() >= 2 && t.chars().all(|c| c == '.') {
                    "..".to_string()
                } else {
                    t.to_string()
                }
            })
            .collect();
        out.push(("iis", remove_dot_segments(&iis.join("/"))));
        let nfkc: String = decode(wire, 2).nfkc().collect();
        out.push(("nfkc", remove_dot_segments(&nfkc.replace('\\', "/"))));
        if let Ok(u) = Url::parse(&format!("https://h{wire}")) {
            out.push(("whatwg", u.path().to_string()));
        }
        out
    }

    fn under(prefix: &str, path: &str) -> bool {
        path == prefix || path.starts_with(&format!("{prefix}/"))
    }

    fn atom() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "..",
            ".",
            "...",
            "a",
            "b",
            "%2e",
            "%2E",
            "%2e%2e",
            "%252e",
            "%25252e",
            "..;",
            ";x",
            ";",
            "%00",
            "%20",
            " ",
            "%09",
            "\\",
            "%5c",
            "%255c",
            "%2f",
            "%252f",
            "\u{ff0e}",
            "%ef%bc%8e",
            "%ef%bc%8f",
            "%c0%ae",
            "%c0%af",
            "%u002e",
            "%",
            "%%32%65",
            "%3b",
            ".%2e",
            "%2e.",
            "x.",
            ".x",
            "%e2%80%a4",
        ])
        .prop_map(str::to_string)
    }

    fn guest_path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::collection::vec(atom(), 1..4), 1..6)
            .prop_map(|segs| segs.iter().map(|s| format!("/{}", s.concat())).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// Whatever the joiner accepts, no modelled backend resolves outside
        /// the base path.
        #[test]
        fn accepted_paths_stay_under_the_base_in_every_backend(path in guest_path()) {
            let base = Url::parse("https://api.example.com/v2/data").unwrap();
            if let Ok(url) = join_confined(&base, &path) {
                for (model, resolved) in models(url.path()) {
                    prop_assert!(
                        under("/v2/data", &resolved),
                        "{path} -> {} resolves to {resolved} in {model}", url.path()
                    );
                }
            }
        }

        /// Ordinary paths are never refused.
        #[test]
        fn ordinary_paths_are_accepted(segs in prop::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,11}", 1..6)) {
            let segs: Vec<String> = segs.into_iter().filter(|s| !s.chars().all(|c| c == '.')).collect();
            let path = format!("/{}", segs.join("/"));
            prop_assert!(join_confined(&base(), &path).is_ok(), "{path}");
        }
    }
}
