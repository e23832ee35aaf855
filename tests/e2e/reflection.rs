//! What the callout policy hands a plugin, against upstreams that reflect
//! requests back: no secret the host injected, by any auth type and in any
//! common encoding; no method, header or path that makes a server reflect,
//! reroute or escape; no upstream request the budgets do not count.

use plugboard::credentials::NamedCredential;
use plugboard_tests::oauth_server::{OAuthServer, OAuthServerConfig};
use plugboard_tests::{TestHost, Upstream, credential, secret_ref};
use serde_json::{Value, json};

use crate::util::{call, output};

const TOKEN: &str = "tok-reflected-9f8e7d";
const PASSWORD: &str = "pw/reflected+9f&8e";
const KEY: &str = "key-reflected 9f8e";
/// The loopback identity provider's client secret.
const CLIENT_SECRET: &str = "client-s3cret";

/// A credential named `name` on the upstream's `/api`, with `auth` and more.
fn cred(name: &str, up: &Upstream, auth: &str, extra: &str) -> NamedCredential {
    credential(
        name,
        &format!("base_url = \"{}/api\"\nauth = {auth}\n{extra}", up.url()),
    )
}

/// One credential per static auth type, each holding a known secret.
fn every_auth_type(up: &Upstream) -> Vec<(NamedCredential, Vec<String>)> {
    let basic_blob = base64_basic("svc", PASSWORD);
    vec![
        (
            cred(
                "bearer",
                up,
                &format!("{{ type = \"bearer\", token = \"{}\" }}", secret_ref(TOKEN)),
                "",
            ),
            vec![TOKEN.to_string()],
        ),
        (
            cred(
                "basic",
                up,
                &format!(
                    "{{ type = \"basic\", username = \"svc\", password = \"{}\" }}",
                    secret_ref(PASSWORD)
                ),
                "",
            ),
            vec![PASSWORD.to_string(), basic_blob],
        ),
        (
            cred(
                "key-header",
                up,
                &format!(
                    "{{ type = \"api_key\", name = \"x-api-key\", value = \"{}\" }}",
                    secret_ref(KEY)
                ),
                "",
            ),
            vec![KEY.to_string()],
        ),
        (
            cred(
                "key-query",
                up,
                &format!(
                    "{{ type = \"api_key\", name = \"api_key\", in = \"query\", value = \"{}\" }}",
                    secret_ref(KEY)
                ),
                "",
            ),
            vec![KEY.to_string()],
        ),
        (
            cred(
                "template",
                up,
                &format!(
                    "{{ type = \"template\", secrets = {{ k = \"{}\" }}, headers = {{ \"x-signature\" = \"{{{{ hmac_sha256(secrets.k, request.method ~ request.path) }}}}\", \"x-key\" = \"K{{{{ secrets.k }}}}\" }} }}",
                    secret_ref(KEY)
                ),
                "",
            ),
            vec![KEY.to_string()],
        ),
    ]
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Every form of `secret` a reflecting upstream could hand back.
fn forms(secret: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    vec![
        secret.to_string(),
        form,
        secret.replace(' ', "%20"),
        json[1..json.len() - 1].to_string(),
    ]
}

fn assert_clean(text: &str, secrets: &[String], what: &str) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.to_lowercase().contains(&form.to_lowercase()),
                "{what} carries `{form}`: {text}"
            );
        }
    }
}

/// An upstream reflecting every header, the URL and a session cookie gets
/// each auth type's secret, and the plugin gets none of it back, on either
/// path: not in the body, not in a header, not in a link, not in the record.
#[tokio::test]
async fn reflected_secrets_never_reach_the_guest() {
    let up = Upstream::start().await;
    let creds = every_auth_type(&up);
    let host = TestHost::new(
        &["hostile", "http-fetch"],
        creds.iter().map(|(c, _)| c.clone()).collect(),
    )
    .await;
    for (cred, secrets) in &creds {
        let name = cred.name();
        let bindings = [("api", name)];
        let inv = call(
            &host,
            "hostile",
            "callout",
            json!({"path": "/reflect?page=2"}),
            &bindings,
        )
        .await;
        let out = output(&inv);
        assert_eq!(out["ok"]["status"], 200, "{name}: {out}");
        assert_clean(&out.to_string(), secrets, &format!("{name} (callout)"));
        assert!(
            out.to_string().contains("[REDACTED]"),
            "{name}: nothing was reflected? {out}"
        );
        let headers = out["ok"]["headers"].to_string().to_lowercase();
        assert!(!headers.contains("set-cookie"), "{name}: {headers}");
        let record = serde_json::to_string(&inv.callouts).unwrap();
        assert_clean(&record, secrets, &format!("{name} (record)"));
        assert!(inv.callouts[0].redacted, "{name}");
        let raw = call(
            &host,
            "hostile",
            "wasi-request",
            json!({"path": "/reflect"}),
            &bindings,
        )
        .await;
        let out = output(&raw);
        assert_eq!(out["ok"]["status"], 200, "{name}: {out}");
        assert_clean(&out.to_string(), secrets, &format!("{name} (wasi:http)"));
    }
    // The upstream did receive them: the redaction is of the answer only.
    let seen = up.seen();
    assert!(
        seen.iter()
            .any(|s| s.headers.get("authorization") == Some(&format!("Bearer {TOKEN}")))
    );
    assert!(seen.iter().any(|s| {
        s.query
            .as_deref()
            .is_some_and(|q| q.contains("api_key=key-reflected"))
    }));
}

/// An unfollowed redirect to another origin carries the query's API key in
/// its `Location`; the plugin gets the redirect with the key taken out.
#[tokio::test]
async fn unfollowed_redirects_do_not_carry_the_key() {
    let up = Upstream::start().await;
    let (cred, secrets) = every_auth_type(&up).swap_remove(3);
    let host = TestHost::new(&["hostile"], vec![cred]).await;
    let out = output(
        &call(
            &host,
            "hostile",
            "callout",
            json!({"path": "/redirect-away"}),
            &[("api", "key-query")],
        )
        .await,
    );
    assert_eq!(out["ok"]["status"], 302, "{out}");
    let location = out["ok"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "location")
        .map(|h| h[1].to_string())
        .expect("a location");
    assert!(location.contains("api_key=[REDACTED]"), "{location}");
    assert_clean(&out.to_string(), &secrets, "the redirect");
}

/// OAuth access tokens, which change with every refresh, are taken out too.
#[tokio::test]
async fn reflected_oauth_tokens_never_reach_the_guest() {
    let idp = OAuthServer::start(OAuthServerConfig::default()).await;
    let up = Upstream::start().await;
    let cred = cred(
        "oauth",
        &up,
        &format!(
            "{{ type = \"oauth2\", grant = \"client_credentials\", token_url = \"{}\", client_id = \"plugboard\", client_secret = \"{}\" }}",
            idp.url("/token"),
            secret_ref(CLIENT_SECRET)
        ),
        "",
    );
    let host = TestHost::new(&["hostile"], vec![cred]).await;
    let out = output(
        &call(
            &host,
            "hostile",
            "callout",
            json!({"path": "/reflect"}),
            &[("api", "oauth")],
        )
        .await,
    );
    let token = idp.last_access_token().expect("a token was issued");
    assert_clean(&out.to_string(), &[token, CLIENT_SECRET.into()], "oauth");
    assert_eq!(
        out["ok"]["body"]
            .as_str()
            .map(|b| b.contains("Bearer [REDACTED]")),
        Some(true),
        "{out}"
    );
}

/// `TRACE`, `TRACK`, `CONNECT` and any method outside the standard set are
/// refused before anything is sent; a credential may allow an extension
/// method explicitly, never the reflecting ones.
#[tokio::test]
async fn only_allowed_methods_reach_the_upstream() {
    let up = Upstream::start().await;
    let plain = cred("plain", &up, "{ type = \"none\" }", "");
    let webdav = cred(
        "webdav",
        &up,
        "{ type = \"none\" }",
        "extra_methods = [\"PROPFIND\"]",
    );
    let host = TestHost::new(&["hostile"], vec![plain, webdav]).await;
    for method in ["TRACE", "TRACK", "CONNECT", "PROPFIND", "DEBUG", "trace"] {
        for (slot, via) in [("plain", "callout"), ("plain", "wasi-request")] {
            let out = output(
                &call(
                    &host,
                    "hostile",
                    via,
                    json!({"method": method, "path": "/m"}),
                    &[("api", slot)],
                )
                .await,
            );
            assert!(out.get("err").is_some(), "{method} via {via} passed: {out}");
        }
    }
    let out = output(
        &call(
            &host,
            "hostile",
            "callout",
            json!({"method": "PROPFIND", "path": "/m"}),
            &[("api", "webdav")],
        )
        .await,
    );
    assert_eq!(out["ok"]["status"], 200, "{out}");
    let methods: Vec<String> = up.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["PROPFIND"]);
    let refused = plugboard::credentials::check_extra_method("TRACE").unwrap_err();
    assert!(refused.contains("cannot be allowed"), "{refused}");
}

/// Headers that make a proxy reflect, reroute or re-authorise a request
/// never leave the host, nor do twins of the credential's own headers.
#[tokio::test]
async fn reflection_and_routing_headers_are_stripped() {
    let up = Upstream::start().await;
    let c = cred(
        "crm",
        &up,
        &format!("{{ type = \"bearer\", token = \"{}\" }}", secret_ref(TOKEN)),
        "headers = { \"x-tenant\" = \"acme\" }",
    );
    let host = TestHost::new(&["hostile"], vec![c]).await;
    let names = [
        "max-forwards",
        "via",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "destination",
        "x-http-method-override",
        "x_tenant",
        "X_Tenant",
        "authorization",
        "proxy-authorization",
        "cookie",
        "te",
        "upgrade",
        "accept-encoding",
    ];
    let headers: Vec<Value> = names.iter().map(|n| json!([n, "injected"])).collect();
    for via in ["callout", "wasi-request"] {
        let out = output(
            &call(
                &host,
                "hostile",
                via,
                json!({"path": "/h", "headers": headers}),
                &[("api", "crm")],
            )
            .await,
        );
        assert!(out.get("ok").is_some(), "{via}: {out}");
    }
    for seen in up.seen() {
        for (name, value) in &seen.headers {
            assert!(value != "injected", "`{name}` reached the upstream");
        }
        assert_eq!(seen.headers["x-tenant"], "acme");
        assert_eq!(seen.headers["accept-encoding"], "identity");
    }
}

/// The escapes the review found reach nothing: each is refused before a
/// request goes out, on both paths, and a fragment is refused on `wasi:http`
/// as it is on `callout`.
#[tokio::test]
async fn path_escapes_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let c = cred("crm", &up, "{ type = \"none\" }", "");
    let host = TestHost::new(&["hostile"], vec![c]).await;
    let escapes = [
        "/..;/admin",
        "/%252e%252e/admin",
        "/..%00/admin",
        "/..%20/admin",
        "/..%5cadmin",
        "/%2e%2e/admin",
        "/x/..%2f..%2fadmin",
        "/%ef%bc%8e%ef%bc%8e/admin",
        "/%c0%ae%c0%ae/admin",
        "/x#frag",
        "/..%255cadmin",
    ];
    for path in escapes {
        for via in ["callout", "wasi-request"] {
            let out = output(&call(&host, "hostile", via, json!({"path": path}), &[("api", "crm")]).await);
            assert!(out.get("err").is_some(), "{path} via {via}: {out}");
        }
    }
    assert!(
        up.seen().is_empty(),
        "reached the upstream: {:?}",
        up.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let out = output(
        &call(
            &host,
            "hostile",
            "wasi-request",
            json!({"path": "/x#frag"}),
            &[("api", "crm")],
        )
        .await,
    );
    assert!(
        out["err"]
            .as_str()
            .unwrap()
            .contains("set-path-with-query refused"),
        "{out}"
    );
}

/// Parameters of the base URL's query are the credential's: a plugin cannot
/// set them again in any spelling a server might read as the same name.
#[tokio::test]
async fn base_url_query_parameters_are_owned() {
    let up = Upstream::start().await;
    let c = credential(
        "crm",
        &format!(
            "base_url = \"{}/api?tenant=acme\"\nauth = {{ type = \"none\" }}",
            up.url()
        ),
    );
    let host = TestHost::new(&["hostile"], vec![c]).await;
    for query in [
        "tenant=globex",
        "%74enant=globex",
        "TENANT=globex",
        "tenant[]=globex",
        "a=1;tenant=globex",
    ] {
        let out = output(
            &call(
                &host,
                "hostile",
                "callout",
                json!({"path": format!("/x?{query}")}),
                &[("api", "crm")],
            )
            .await,
        );
        assert!(
            out["err"]["detail"]
                .as_str()
                .unwrap()
                .contains("`tenant` is set by credential `crm`"),
            "{query}: {out}"
        );
    }
    let out = output(
        &call(
            &host,
            "hostile",
            "callout",
            json!({"path": "/x?page=2"}),
            &[("api", "crm")],
        )
        .await,
    );
    assert_eq!(out["ok"]["status"], 200);
    assert_eq!(up.seen().len(), 1);
    assert_eq!(up.seen()[0].query.as_deref(), Some("tenant=acme&page=2"));
}

/// A redirect is judged as the upstream will decode it: `..%2f` inside the
/// base is not followed with credentials.
#[tokio::test]
async fn encoded_redirect_escapes_are_not_followed() {
    let up = Upstream::start().await;
    let c = cred(
        "crm",
        &up,
        &format!("{{ type = \"bearer\", token = \"{}\" }}", secret_ref(TOKEN)),
        "",
    );
    let host = TestHost::new(&["hostile"], vec![c]).await;
    for to in ["/api/..%2fadmin", "/api/%2e%2e/admin", "/api/..;/admin"] {
        let path = format!("/redirect?to={to}");
        let out = output(
            &call(
                &host,
                "hostile",
                "callout",
                json!({"path": path}),
                &[("api", "crm")],
            )
            .await,
        );
        assert_eq!(out["ok"]["status"], 302, "{to}: {out}");
    }
    let paths: Vec<String> = up.seen().iter().map(|s| s.path.clone()).collect();
    assert!(paths.iter().all(|p| p == "/api/redirect"), "{paths:?}");
}

/// Every redirect hop is an upstream request: it counts against the callout
/// budget, so a redirect loop inside the base cannot multiply one callout.
#[tokio::test]
async fn redirect_hops_count_against_the_callout_budget() {
    let up = Upstream::start().await;
    let c = cred("crm", &up, "{ type = \"none\" }", "");
    let host = TestHost::with_config(&["hostile"], vec![c], |config| {
        config.plugin_limits.insert(
            "hostile".into(),
            plugboard::limits::LimitOverrides {
                max_callouts: Some(3),
                ..Default::default()
            },
        );
    })
    .await;
    // Five hops deep, each redirecting to the next, all under the base (the
    // upstream answers with the `to` value as it is).
    let path = format!("/redirect?to={}/api/end", "/api/redirect?to=".repeat(5));
    let inv = call(
        &host,
        "hostile",
        "callout",
        json!({"path": path}),
        &[("api", "crm")],
    )
    .await;
    let out = output(&inv);
    assert_eq!(out["err"]["kind"], "budget-exhausted", "{out}");
    assert_eq!(up.seen().len(), 3, "the budget is 3 upstream requests");
    assert_eq!(inv.callouts[0].upstream_requests, 3);
}

/// Every redirect hop also takes a turn of the credential's rate limit.
#[tokio::test]
async fn redirect_hops_take_turns_of_the_rate_limit() {
    let up = Upstream::start().await;
    let c = cred(
        "crm",
        &up,
        "{ type = \"none\" }",
        "rate_limit = { per_second = 1, burst = 2, max_wait_ms = 100 }",
    );
    let host = TestHost::new(&["hostile"], vec![c]).await;
    let path = format!("/redirect?to={}/api/end", "/api/redirect?to=".repeat(3));
    let out = output(
        &call(
            &host,
            "hostile",
            "callout",
            json!({"path": path}),
            &[("api", "crm")],
        )
        .await,
    );
    assert_eq!(out["err"]["kind"], "unreachable", "{out}");
    assert!(
        out["err"]["detail"].as_str().unwrap().contains("rate limited"),
        "{out}"
    );
    assert_eq!(up.seen().len(), 2, "the burst is 2 requests");
}

/// A path that always answers 401 cannot make the host fetch a token per
/// callout: one forced refresh per invocation, and none again right after.
#[tokio::test]
async fn forced_token_refreshes_are_bounded() {
    let idp = OAuthServer::start(OAuthServerConfig::default()).await;
    let up = Upstream::start().await;
    let c = cred(
        "oauth",
        &up,
        &format!(
            "{{ type = \"oauth2\", grant = \"client_credentials\", token_url = \"{}\", client_id = \"plugboard\", client_secret = \"{}\" }}",
            idp.url("/token"),
            secret_ref(CLIENT_SECRET)
        ),
        "",
    );
    let host = TestHost::new(&["hostile"], vec![c]).await;
    let input = json!({"path": "/status/401", "count": 50});
    let out = output(
        &call(
            &host,
            "hostile",
            "callout-loop",
            input.clone(),
            &[("api", "oauth")],
        )
        .await,
    );
    assert_eq!(out["statuses"].as_array().unwrap().len(), 50, "{out}");
    assert_eq!(idp.token_requests(), 2, "the first token and one forced refresh");
    output(&call(&host, "hostile", "callout-loop", input, &[("api", "oauth")]).await);
    assert_eq!(
        idp.token_requests(),
        2,
        "a second invocation within the interval forces none"
    );
    assert_eq!(up.seen().len(), 101, "100 callouts and one resend");
}
