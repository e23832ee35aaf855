//! Header templates: custom authentication header values rendered per request.
//!
//! Some APIs authenticate with a signature computed over the request instead of
//! a static token: an HMAC of the method, path and a timestamp under a signing
//! key, sent in a header of the API's own design. A credential describes such a
//! header as a [minijinja](https://docs.rs/minijinja) template over its secrets
//! (`secrets.NAME`), its parameters (`params.NAME`) and the outgoing request
//! (`request.method`, `request.path`, `request.host`, `request.body_sha256`),
//! with a few signing helpers (`hmac_sha256`, `sha256`, `base64`, `now_unix`, ...).
//!
//! This module owns compiling those templates (once, when the credential is
//! saved, so that a typo in a secret name is refused then rather than on the
//! first request) and rendering them for one request. It leaves resolving the
//! secrets, hashing the body and attaching the headers to the callout policy.
//!
//! Rendered values and render errors are the two places a secret could escape:
//! values are marked sensitive, and a render error is the header name, the
//! error kind and the line, never minijinja's detail (which quotes values,
//! and a value computed from a secret is as good as the secret). A template
//! cannot load another template: `include`, `import`, `from` and `extends`
//! are refused when the credential is saved, and minijinja is built without
//! them (no `multi_template` feature, no loader), so no template name, and
//! hence no secret turned into one, is ever looked up.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::SystemTime;

use http::{HeaderName, HeaderValue};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::secret::Secret;

mod functions;
use functions::{
    base64_text, hex_text, hmac_sha256_base64, hmac_sha256_hex, now_http_date, now_ms, now_rfc3339, now_unix,
    sha256_hex,
};

/// The hidden context variable carrying the render time in milliseconds since
/// the epoch. The `now_*` functions read it so that time is injected per render
/// (and fixed in tests) instead of read from the system clock.
const NOW_MS: &str = "__now_ms";

/// The fields of `request` a template may read.
const REQUEST_FIELDS: [&str; 4] = ["method", "path", "host", "body_sha256"];

/// The statements that load a template by name. A name can be computed
/// (`{% include secrets.key %}`), and the lookup's failure would quote it.
const LOADING_STATEMENTS: [&str; 4] = ["include", "import", "from", "extends"];

/// The functions a template may call. Everything else a template names is
/// refused at compile time: this keeps minijinja's `debug()`, which would dump
/// every secret into the header, out of reach.
const FUNCTIONS: [&str; 9] = [
    "base64",
    "hex",
    "sha256",
    "hmac_sha256",
    "hmac_sha256_base64",
    "now_unix",
    "now_unix_ms",
    "now_rfc3339",
    "now_http_date",
];

/// What a template can see when rendering one request's header.
pub struct TemplateContext<'a> {
    /// The credential's secrets by name (values are secret; they appear only in the rendered header).
    pub secrets: &'a BTreeMap<String, Secret>,
    /// The credential's non-secret parameters by name (account ids, key ids).
    pub params: &'a BTreeMap<String, String>,
    /// The outgoing request's method, as in `POST`.
    pub method: &'a str,
    /// The path with query as sent upstream, as in `/api/v1/orders?x=1`.
    pub path: &'a str,
    /// The upstream host, as in `crm.example.com`.
    pub host: &'a str,
    /// The lowercase hex SHA-256 of the request body.
    pub body_sha256: &'a str,
    /// The time to use for `now_*` (injected so tests are deterministic).
    pub now: SystemTime,
}

/// Compiled templates for one credential's headers, checked once when the credential is saved.
///
/// Template functions take their arguments as UTF-8 text (numbers are
/// converted to their decimal form); keys are never hex- or base64-decoded:
///
/// - `base64(s)`, `hex(s)`, `sha256(s)`, also as filters (`s | sha256`):
///   standard base64, lowercase hex, and the lowercase hex SHA-256 of the bytes of `s`;
/// - `hmac_sha256(key, message)`: the HMAC-SHA256 of `message` under `key`, in lowercase hex;
/// - `hmac_sha256_base64(key, message)`: the same, in standard base64;
/// - `now_unix()`, `now_unix_ms()`: seconds and milliseconds since the epoch;
/// - `now_rfc3339()`: UTC, as in `2026-11-18T11:06:40Z`;
/// - `now_http_date()`: IMF-fixdate, as in `Wed, 18 Nov 2026 11:06:40 GMT`.
pub struct HeaderTemplates {
    /// One template per header, named by the header's (lowercase) name.
    env: Environment<'static>,
    /// The headers, in the order they were given.
    names: Vec<HeaderName>,
}

impl fmt::Debug for HeaderTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderTemplates")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl HeaderTemplates {
    /// Compiles each (header name, template).
    ///
    /// Errors: one message per bad template naming the header and the problem:
    /// a statement that loads another template, a syntax error, a secret or
    /// parameter not in `secret_names` / `param_names`, an unknown request
    /// field, function, filter or variable.
    pub fn compile(
        headers: &[(String, String)],
        secret_names: &BTreeSet<String>,
        param_names: &BTreeSet<String>,
    ) -> Result<HeaderTemplates, Vec<String>> {
        let mut env = new_environment();
        let mut names: Vec<HeaderName> = Vec::new();
        let mut errors = Vec::new();
        for (header, source) in headers {
            let name = match HeaderName::from_bytes(header.as_bytes()) {
                Ok(name) => name,
                Err(_) => {
                    errors.push(format!("header `{header}`: not a valid header name"));
                    continue;
                }
            };
            if names.contains(&name) {
                errors.push(format!("header `{name}` is given more than once"));
                continue;
            }
            let problems = compile_one(&mut env, &name, source, secret_names, param_names);
            errors.extend(
                problems
                    .into_iter()
                    .map(|problem| format!("header `{name}`: {problem}")),
            );
            names.push(name);
        }
        if errors.is_empty() {
            Ok(HeaderTemplates { env, names })
        } else {
            Err(errors)
        }
    }

    /// Renders every header for one request. The error names the header, the kind of failure
    /// and the line, and nothing computed while rendering.
    pub fn render(&self, ctx: &TemplateContext<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let now_ms = crate::time::checked_unix_ms(ctx.now)
            .and_then(|ms| i64::try_from(ms).ok())
            .ok_or_else(|| "the clock reads a time outside what header templates can express".to_string())?;
        let secrets = ctx
            .secrets
            .iter()
            .map(|(name, secret)| (name.as_str(), secret.expose()));
        let params = ctx
            .params
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let request = [ctx.method, ctx.path, ctx.host, ctx.body_sha256];
        let context = render_context(secrets.collect(), params.collect(), request, now_ms);
        self.names
            .iter()
            .map(|name| self.render_one(name, &context))
            .collect()
    }

    /// Header names these templates set.
    pub fn names(&self) -> Vec<HeaderName> {
        self.names.clone()
    }

    /// Renders one header and checks the result is a valid header value.
    fn render_one(&self, name: &HeaderName, context: &Value) -> Result<(HeaderName, HeaderValue), String> {
        let rendered = self
            .env
            .get_template(name.as_str())
            .and_then(|template| template.render(context))
            .map_err(|err| format!("header `{name}`: {}", describe_render(&err)))?;
        // The value is not quoted: it may well contain a secret.
        let mut value = HeaderValue::from_str(&rendered).map_err(|_| {
            format!(
                "header `{name}`: the rendered value is not a valid header value \
                 (it contains a line break or another control character)"
            )
        })?;
        value.set_sensitive(true);
        Ok((name.clone(), value))
    }
}

/// The environment every credential's templates compile into: strict about
/// undefined values (a missing secret is an error, not an empty signature), no
/// HTML escaping (header values are not HTML), and the signing helpers. It has
/// no loader, and minijinja is built without template loading, so a template
/// can reach nothing but its own text.
fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_function("base64", base64_text);
    env.add_filter("base64", base64_text);
    env.add_function("hex", hex_text);
    env.add_filter("hex", hex_text);
    env.add_function("sha256", sha256_hex);
    env.add_filter("sha256", sha256_hex);
    env.add_function("hmac_sha256", hmac_sha256_hex);
    env.add_function("hmac_sha256_base64", hmac_sha256_base64);
    env.add_function("now_unix", now_unix);
    env.add_function("now_unix_ms", now_ms);
    env.add_function("now_rfc3339", now_rfc3339);
    env.add_function("now_http_date", now_http_date);
    env
}

/// Adds one header's template to `env` and returns what is wrong with it.
fn compile_one(
    env: &mut Environment<'static>,
    name: &HeaderName,
    source: &str,
    secret_names: &BTreeSet<String>,
    param_names: &BTreeSet<String>,
) -> Vec<String> {
    let loading = loading_statements(source);
    if !loading.is_empty() {
        return loading;
    }
    if let Err(err) = env.add_template_owned(name.as_str().to_owned(), source.to_owned()) {
        return vec![describe(&err)];
    }
    let template = match env.get_template(name.as_str()) {
        Ok(template) => template,
        Err(err) => return vec![describe(&err)],
    };
    let problems = check_references(
        source,
        template.undeclared_variables(true),
        secret_names,
        param_names,
    );
    if !problems.is_empty() {
        return problems;
    }
    // Filters are looked up only when a template runs, so try it once with
    // placeholder values. Only "unknown" errors count here: others may depend
    // on the real values, and render will report them if they occur.
    let request = ["GET", "/", "example.invalid", "0"];
    let context = render_context(placeholders(secret_names), placeholders(param_names), request, 0);
    match template.render(context) {
        Err(err) if is_unknown_name(err.kind()) => vec![describe(&err)],
        _ => Vec::new(),
    }
}

/// The statements of `source` that would load another template, each as a
/// refusal. Every `{%` is checked, comments and `raw` blocks included: a
/// template that only mentions `include` there is refused too, which costs
/// nothing a header needs.
fn loading_statements(source: &str) -> Vec<String> {
    source
        .match_indices("{%")
        .filter_map(|(at, _)| {
            let rest = source[at + 2..].trim_start_matches(['-', '+']).trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let keyword = &rest[..end];
            LOADING_STATEMENTS.contains(&keyword).then(|| {
                let line = source[..at].matches('\n').count() + 1;
                format!(
                    "`{{% {keyword} %}}` is not available: a header template cannot load other templates (line {line})"
                )
            })
        })
        .collect()
}

/// Stand-in values for a trial render at compile time.
fn placeholders(names: &BTreeSet<String>) -> BTreeMap<&str, &str> {
    names.iter().map(|name| (name.as_str(), "placeholder")).collect()
}

/// Checks the variables a template reads (`secrets.signing_key`, `now_unix`, ...)
/// against what the credential declares and what this module provides.
fn check_references(
    source: &str,
    referenced: HashSet<String>,
    secret_names: &BTreeSet<String>,
    param_names: &BTreeSet<String>,
) -> Vec<String> {
    let mut referenced: Vec<String> = referenced.into_iter().collect();
    referenced.sort();
    let mut problems = Vec::new();
    for reference in &referenced {
        let mut parts = reference.split('.');
        let root = parts.next().unwrap_or_default();
        let problem = match (root, parts.next()) {
            ("secrets", Some(n)) if !secret_names.contains(n) => {
                Some(format!("unknown secret `{n}` (declared: {})", list(secret_names)))
            }
            ("params", Some(n)) if !param_names.contains(n) => Some(format!(
                "unknown parameter `{n}` (declared: {})",
                list(param_names)
            )),
            ("request", Some(f)) if !REQUEST_FIELDS.contains(&f) => Some(format!(
                "unknown request field `{f}` (known: method, path, host, body_sha256)"
            )),
            ("secrets" | "params" | "request", _) => None,
            (name, _) if FUNCTIONS.contains(&name) => None,
            (name, _) if is_called(source, name) => Some(format!(
                "unknown function `{name}` (known: {})",
                FUNCTIONS.join(", ")
            )),
            (name, _) => Some(format!(
                "unknown variable `{name}` (known: secrets, params, request)"
            )),
        };
        problems.extend(problem);
    }
    problems
}

/// Whether `source` calls `name` as a function somewhere; used only to word
/// the refusal of an unknown name.
fn is_called(source: &str, name: &str) -> bool {
    source.match_indices(name).any(|(at, _)| {
        let before = source[..at].chars().next_back();
        let joined = before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        !joined && source[at + name.len()..].trim_start().starts_with('(')
    })
}

/// A declared-names list for an error message.
fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error kinds that mean the template names something that does not exist.
fn is_unknown_name(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnknownFunction
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownMethod
    )
}

/// Builds the root value templates render against.
fn render_context(
    secrets: BTreeMap<&str, &str>,
    params: BTreeMap<&str, &str>,
    [method, path, host, body_sha256]: [&str; 4],
    now_ms: i64,
) -> Value {
    let request = Value::from_iter(REQUEST_FIELDS.into_iter().zip([method, path, host, body_sha256]));
    Value::from_iter([
        ("secrets", Value::from_iter(secrets)),
        ("params", Value::from_iter(params)),
        ("request", request),
        (NOW_MS, Value::from(now_ms)),
    ])
}

/// A compile-time error message: kind, detail and line. Not built with
/// `Display`, whose alternate form can dump the render context.
fn describe(err: &Error) -> String {
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text = format!("{text}: {detail}");
    }
    if let Some(line) = err.line() {
        text = format!("{text} (line {line})");
    }
    text
}

/// A render-time error message: the kind (a fixed phrase, as in `invalid
/// operation`) and the line, never minijinja's detail. Details quote values
/// (`tried to include non-existing template "<secret minus a character>"`),
/// and checking them for the secret misses anything computed from it.
fn describe_render(err: &Error) -> String {
    let kind = err.kind();
    match err.line() {
        Some(line) => format!("{kind} (line {line}; details withheld, as they can quote secret values)"),
        None => format!("{kind} (details withheld, as they can quote secret values)"),
    }
}

#[cfg(test)]
mod tests {
    use super::functions::{HTTP_DATE, RFC3339, format_ms};
    use super::*;
    use std::time::Duration;

    const KEY: &str = "s3cr3t-key-0123";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn compile(headers: &[(&str, &str)]) -> Result<HeaderTemplates, Vec<String>> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(h, t)| (h.to_string(), t.to_string()))
            .collect();
        HeaderTemplates::compile(&headers, &names(&["signing_key"]), &names(&["key_id"]))
    }

    /// Renders one header against a fixed request, key and time (2026-11-18T11:06:40Z).
    fn render_with(template: &str, key: &str) -> Result<String, String> {
        let templates = compile(&[("x-test", template)]).expect("template compiles");
        let secrets = BTreeMap::from([("signing_key".to_string(), Secret::new(key.to_string()))]);
        let params = BTreeMap::from([("key_id".to_string(), "key-7".to_string())]);
        let ctx = TemplateContext {
            secrets: &secrets,
            params: &params,
            method: "POST",
            path: "/api/v1/orders?x=1",
            host: "crm.example.com",
            body_sha256: EMPTY_SHA256,
            now: std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        };
        let rendered = templates.render(&ctx)?;
        assert_eq!(rendered.len(), 1);
        assert!(
            rendered[0].1.is_sensitive(),
            "rendered values are marked sensitive"
        );
        Ok(rendered[0].1.to_str().expect("ascii value").to_string())
    }

    fn render(template: &str) -> Result<String, String> {
        render_with(template, KEY)
    }

    fn compile_errors(template: &str) -> Vec<String> {
        compile(&[("x-signature", template)]).expect_err("template is refused")
    }

    /// RFC 4231 test case 2, in hex and in base64.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            render(r#"{{ hmac_sha256("Jefe", "what do ya want for nothing?") }}"#).unwrap(),
            hex
        );
        let b64 = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";
        assert_eq!(
            render(r#"{{ hmac_sha256_base64("Jefe", "what do ya want for nothing?") }}"#).unwrap(),
            b64
        );
    }

    /// A Stripe-like signature over method, path and time renders as an external tool computes it.
    #[test]
    fn signing_header_combines_request_time_and_secret() {
        let template = r#"t={{ now_unix() }},v1={{ hmac_sha256(secrets.signing_key,
            request.method ~ "\n" ~ request.path ~ "\n" ~ now_unix()) }}"#;
        // printf 'POST\n/api/v1/orders?x=1\n1795000000' | openssl dgst -sha256 -hmac s3cr3t-key-0123
        let expected = "t=1795000000,v1=30486ec5dfed3e4ce20ab3f2b012098094c692b235253c96a601ec27d9ec5cd7";
        assert_eq!(render(template).unwrap(), expected);
    }

    /// Params, host and body hash are visible, and a base64 HMAC over them matches openssl.
    #[test]
    fn params_and_request_fields_render() {
        let template = "{{ params.key_id }}@{{ request.host }}:{{ request.body_sha256[:8] }}";
        assert_eq!(render(template).unwrap(), "key-7@crm.example.com:e3b0c442");
        let template = r#"{{ hmac_sha256_base64(secrets.signing_key, [request.method, request.path,
            now_unix(), request.body_sha256] | join(" ")) }}"#;
        assert_eq!(
            render(template).unwrap(),
            "OikBxubaxAL8tEl6VC3v67lWP60b6TlKvE7ed9MhgaA="
        );
    }

    /// The encoding helpers work as filters and as functions.
    #[test]
    fn base64_hex_and_sha256_encode_utf8_text() {
        assert_eq!(
            render(r#"{{ "hello" | base64 }} {{ base64("hello") }}"#).unwrap(),
            "aGVsbG8= aGVsbG8="
        );
        assert_eq!(
            render(r#"{{ "hi" | hex }} {{ hex("hi") }}"#).unwrap(),
            "6869 6869"
        );
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(render(r#"{{ "abc" | sha256 }}"#).unwrap(), abc);
        assert_eq!(render(r#"{{ sha256("") }}"#).unwrap(), EMPTY_SHA256);
    }

    /// The `now_*` functions use the injected time, not the system clock.
    #[test]
    fn now_functions_use_the_injected_time() {
        let template = "{{ now_unix() }}|{{ now_unix_ms() }}|{{ now_rfc3339() }}|{{ now_http_date() }}";
        assert_eq!(
            render(template).unwrap(),
            "1795000000|1795000000000|2026-11-18T11:06:40Z|Wed, 18 Nov 2026 11:06:40 GMT"
        );
    }

    /// Calendar conversion is right at the epoch, on a leap day and across a century leap year.
    #[test]
    fn calendar_conversion_handles_epoch_and_leap_days() {
        let http = |ms| format_ms(ms, HTTP_DATE).unwrap();
        let rfc3339 = |ms| format_ms(ms, RFC3339).unwrap();
        assert_eq!(http(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(http(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(rfc3339(951_868_799_999), "2000-02-29T23:59:59Z");
        // 2100 is a century year that is not a leap year.
        assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00Z");
        assert_eq!(http(4_107_542_400_000), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    /// Times are cut to the whole second below them, before the epoch too,
    /// and a time no four-digit year can hold is refused rather than misprinted.
    #[test]
    fn calendar_conversion_floors_and_refuses_out_of_range() {
        assert_eq!(format_ms(-1, RFC3339).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(format_ms(-1, HTTP_DATE).unwrap(), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(
            format_ms(1_795_000_000_999, RFC3339).unwrap(),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(
            format_ms(253_402_300_799_999, RFC3339).unwrap(),
            "9999-12-31T23:59:59Z"
        );
        assert!(format_ms(253_402_300_800_000, RFC3339).is_err());
    }

    /// The HTTP date agrees with an independent implementation (`httpdate`)
    /// across four centuries, one step a little over 13 days at a time.
    #[test]
    fn http_date_agrees_with_httpdate() {
        let step = 1_123_456_789_i64;
        for ms in (0..13_000_000_000_000_i64).step_by(step as usize) {
            let at = crate::time::from_unix_ms(ms as u64);
            assert_eq!(
                format_ms(ms, HTTP_DATE).unwrap(),
                httpdate::fmt_http_date(at),
                "{ms}"
            );
        }
    }

    /// A misspelt secret is refused when the credential is saved, naming the header and secret.
    #[test]
    fn unknown_secret_is_refused_at_compile() {
        let errors = compile_errors("{{ hmac_sha256(secrets.signing_kye, request.path) }}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("header `x-signature`: unknown secret `signing_kye`"),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("`signing_key`"),
            "lists the declared secrets: {errors:?}"
        );
    }

    /// Unknown params, request fields and variables are refused too, each reported.
    #[test]
    fn unknown_param_field_and_variable_are_refused_at_compile() {
        let errors = compile_errors("{{ params.account }}{{ request.url }}{{ token }}");
        assert_eq!(errors.len(), 3, "{errors:?}");
        let all = errors.join("\n");
        assert!(all.contains("unknown parameter `account`"), "{all}");
        assert!(all.contains("unknown request field `url`"), "{all}");
        assert!(all.contains("unknown variable `token`"), "{all}");
    }

    /// A template that does not parse is refused with minijinja's syntax message.
    #[test]
    fn syntax_error_is_refused_at_compile() {
        let errors = compile_errors("{{ hmac_sha256(secrets.signing_key, ) ");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("header `x-signature`: syntax error"),
            "{errors:?}"
        );
    }

    /// Calling a function or filter that does not exist is refused at compile, by name.
    #[test]
    fn unknown_function_and_filter_are_refused_at_compile() {
        let errors = compile_errors("{{ hmac(secrets.signing_key, request.path) }}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("header `x-signature`: unknown function `hmac`"),
            "{errors:?}"
        );
        let errors = compile_errors("{{ request.path | sha512 }}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("header `x-signature`: unknown filter"),
            "{errors:?}"
        );
        assert!(errors[0].contains("sha512"), "{errors:?}");
    }

    /// minijinja's `debug()` would print every secret; it is not available.
    #[test]
    fn debug_function_is_refused() {
        let errors = compile_errors("{{ debug() }}");
        assert!(errors[0].contains("unknown function `debug`"), "{errors:?}");
    }

    /// Bad header names and duplicates are refused; good names come back in order.
    #[test]
    fn header_names_are_checked_and_kept_in_order() {
        let errors = compile(&[("bad header", "x"), ("X-A", "a"), ("x-a", "b")]).unwrap_err();
        assert_eq!(
            errors,
            [
                "header `bad header`: not a valid header name",
                "header `x-a` is given more than once"
            ]
        );
        let templates = compile(&[("X-B", "b"), ("x-a", "a")]).unwrap();
        assert_eq!(templates.names(), ["x-b", "x-a"]);
    }

    /// Whether `text` contains any 4-character piece of `secret`.
    fn quotes_part_of(text: &str, secret: &str) -> Option<String> {
        let chars: Vec<char> = secret.chars().collect();
        chars
            .windows(4)
            .map(|w| w.iter().collect::<String>())
            .find(|piece| text.contains(piece.as_str()))
    }

    /// No render error quotes the secret or anything computed from it: not a
    /// slice, a failed conversion, an index or attribute past its end, a
    /// division by zero; each says only the header, the kind and the line.
    #[test]
    fn render_errors_quote_no_part_of_a_secret() {
        let key = "Qz8Kx3Vw7Jp2Lm5Rt9Y";
        let failing = [
            "{{ secrets.signing_key[1:] | int }}",
            "{{ secrets.signing_key | int }}",
            "{{ secrets.signing_key[99] }}",
            "{{ secrets.signing_key.missing }}",
            "{{ secrets.signing_key[1:] + 1 }}",
            "{{ (secrets.signing_key | length) // 0 }}",
            "{{ (secrets.signing_key | length) % 0 }}",
            "{{ 1 // ((secrets.signing_key | length) - 19) }}",
            "{{ secrets.signing_key[2:] * secrets.signing_key }}",
            "{{ hmac_sha256(secrets.signing_key[1:]) }}",
            "{{ secrets.signing_key[1:] | list | first | int }}",
            "{{ params.key_id ~ secrets.signing_key[4:] | round }}",
            "line one\n{{ secrets.signing_key[1:] | int }}",
        ];
        for template in failing {
            let err = render_with(template, key).expect_err(template);
            assert!(err.starts_with("header `x-test`: "), "{template}: {err}");
            assert!(err.contains("(line "), "{template}: {err}");
            if let Some(piece) = quotes_part_of(&err, key) {
                panic!("{template}: the error quotes `{piece}` of the secret: {err}");
            }
        }
        let errors = compile_errors("{{ secrets.signing_key ~ undefined_fn() }}");
        assert!(
            errors[0].contains("unknown function `undefined_fn`"),
            "{errors:?}"
        );
        let err = render_with("line one\n{{ secrets.signing_key | int }}", key).unwrap_err();
        assert_eq!(
            err,
            "header `x-test`: invalid operation (line 2; details withheld, as they can quote secret values)"
        );
    }

    /// Statements that load a template by name are refused when the
    /// credential is saved, in every spelling minijinja accepts, naming the
    /// statement and the line.
    #[test]
    fn templates_that_load_other_templates_are_refused() {
        let loading = [
            ("{% include secrets.signing_key[1:] %}", "include"),
            ("{%- include \"x-other\" -%}", "include"),
            ("{%+include secrets.signing_key%}", "include"),
            ("{% import secrets.signing_key as m %}{{ m.x }}", "import"),
            ("{% from secrets.signing_key import x %}", "from"),
            ("a\n{%   extends secrets.signing_key %}", "extends"),
            (
                "{{ request.path }}{% include [secrets.signing_key, 'x'] ignore missing %}",
                "include",
            ),
        ];
        for (template, statement) in loading {
            let errors = compile_errors(template);
            assert_eq!(errors.len(), 1, "{template}: {errors:?}");
            assert!(
                errors[0].starts_with(&format!(
                    "header `x-signature`: `{{% {statement} %}}` is not available: a header template cannot load other templates"
                )),
                "{template}: {errors:?}"
            );
        }
        let errors = compile_errors("a\n{%   extends secrets.signing_key %}");
        assert!(errors[0].ends_with("(line 2)"), "{errors:?}");
        // Words that merely contain a statement name are fine.
        assert!(compile(&[("x-a", "{% if request.path %}included{% endif %}")]).is_ok());
    }

    /// Even past the check above, the engine has no way to load a template:
    /// minijinja is built without it, so the statements do not parse.
    #[test]
    fn the_engine_itself_cannot_load_templates() {
        let mut env = new_environment();
        env.add_template_owned("x-other", "other".to_string()).unwrap();
        for source in [
            "{% include 'x-other' %}",
            "{% import 'x-other' as m %}",
            "{% from 'x-other' import m %}",
            "{% extends 'x-other' %}",
        ] {
            let err = env
                .add_template_owned("x-test", source.to_string())
                .expect_err(source);
            assert_eq!(err.kind(), ErrorKind::SyntaxError, "{source}: {err:?}");
        }
    }

    /// A value with a line break could smuggle a second header; it is refused without quoting it.
    #[test]
    fn line_breaks_in_the_result_are_refused() {
        let err = render_with("{{ secrets.signing_key }}", "abc\r\nx-evil: 1").unwrap_err();
        assert!(
            err.starts_with("header `x-test`: the rendered value is not a valid header value"),
            "{err}"
        );
        assert!(!err.contains("x-evil"), "{err}");
        let err = render("a\nb").unwrap_err();
        assert!(err.contains("not a valid header value"), "{err}");
    }
}
