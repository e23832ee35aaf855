//! Named-credential authentication end to end, through real connector
//! plugins (`rest-json` and the `hostile` fixture): header templates, OAuth
//! 2.0 grants and refresh, mutual TLS, rate limits, and edits, enablement and
//! plugin restrictions taking effect. Each test asserts on what the upstream
//! received and on what the plugin could observe: the secrets never reach
//! the guest, its output, its logs or the callout records.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use plugboard::credentials::NamedCredential;
use plugboard::credentials::live::{LiveCredential, Source};
use plugboard::sandbox::Invocation;
use plugboard_tests::oauth_server::{JwtCheck, OAuthServer, OAuthServerConfig};
use plugboard_tests::tls_server::{CLIENT_CN, TestPki, TlsUpstream};
use plugboard_tests::{TestHost, Upstream, credential, secret_ref};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::util::{call, call_crm, error, output};

/// The OAuth fixture's registered client secret.
const CLIENT_SECRET: &str = "client-s3cret";
const RSA_PRIVATE: &str = include_str!("../fixtures/oauth/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/oauth/rsa-public.pem");
const JWT_SUBJECT: &str = "svc@plugboard";
const JWT_AUDIENCE: &str = "https://idp.example/oauth/token";

/// Panics when `secret` shows anywhere the guest or an operator reading the
/// invocation could see it: the output (or error and its details), the
/// plugin's logs, the callout records.
fn assert_hidden(inv: &Invocation, secret: &str) {
    let seen = [
        ("output", format!("{:?}", inv.output)),
        ("logs", format!("{:?}", inv.logs)),
        ("callout records", format!("{:?}", inv.callouts)),
    ];
    for (place, text) in seen {
        assert!(!text.contains(secret), "the secret shows in the {place}: {text}");
    }
}

/// A credential exactly as written: no `allow_http` or `allowed_plugins` added.
fn credential_as_written(name: &str, toml_text: &str) -> Result<NamedCredential, Vec<String>> {
    let raw = toml::from_str(toml_text).expect("credential TOML parses");
    plugboard::config::credential_from_raw(name, raw)
}

/// Replaces the credential of the same name in the host's live set, as an
/// edit through the store does.
fn swap_in(host: &TestHost, named: NamedCredential, version: i64) {
    let live = LiveCredential::build(named, Source::Store, version, None, None).expect("credential builds");
    host.registry.sandbox().policy().credential_set().insert(live);
}

/// GETs `path` through rest-json's `api` slot bound to `crm`.
async fn rest_get(host: &TestHost, path: &str) -> Invocation {
    call_crm(host, "rest-json", "get", json!({ "path": path })).await
}

/// A template credential signing method, path and body hash with an HMAC.
const SIGNED: &str = r#"
base_url = "@UP@/api"
[auth]
type = "template"
params = { key_id = "k-42" }
secrets = { signing_key = "@KEY@" }
[auth.headers]
x-signature = "{{ hmac_sha256(secrets.signing_key, request.method ~ \"\\n\" ~ request.path ~ \"\\n\" ~ request.body_sha256) }}"
x-key-id = "{{ params.key_id }}"
"#;

/// The signature the upstream must receive: HMAC-SHA256 (hex) over
/// `METHOD\nPATH?QUERY\nhex(sha256(body))` of the request it got.
fn expected_signature(key: &str, req: &plugboard_tests::Seen) -> String {
    let target = match &req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.clone(),
    };
    let body_hash = hex(&Sha256::digest(&req.body));
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{}\n{target}\n{body_hash}", req.method).as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A template credential signs each request over what the upstream receives
/// (method, path with query, body hash); the guest cannot set the signature
/// itself and never sees the signing key.
#[tokio::test]
async fn template_auth_signs_requests_and_guests_cannot_forge_the_signature() {
    let up = Upstream::start().await;
    let key = "sign-k3y-do-not-leak";
    let toml = SIGNED
        .replace("@UP@", &up.url())
        .replace("@KEY@", &secret_ref(key));
    let host = TestHost::new(&["rest-json"], vec![credential("crm", &toml)]).await;
    let input = json!({
        "path": "/orders",
        "query": {"page": "2"},
        "headers": {"X-Signature": "forged", "x-key-id": "forged"},
        "body": {"item": "widget", "qty": 3},
    });
    let inv = call_crm(&host, "rest-json", "post", input).await;
    let out = output(&inv);
    assert_eq!(out["status"], 200, "{out}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let req = &seen[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/api/orders"));
    assert_eq!(req.query.as_deref(), Some("page=2"));
    assert!(!req.body.is_empty());
    assert_eq!(req.headers["x-signature"], expected_signature(key, req));
    assert_eq!(req.headers["x-key-id"], "k-42");
    let stripped = &inv.callouts[0].stripped_headers;
    assert!(
        stripped.contains(&"x-signature".to_string()) && stripped.contains(&"x-key-id".to_string()),
        "{stripped:?}"
    );
    assert_hidden(&inv, key);
    // A different body gets a different signature: the body is really signed.
    let inv = call_crm(
        &host,
        "rest-json",
        "post",
        json!({"path": "/orders", "body": {"qty": 4}}),
    )
    .await;
    output(&inv);
    let second = up.seen().pop().unwrap();
    assert_eq!(second.headers["x-signature"], expected_signature(key, &second));
    assert_ne!(second.headers["x-signature"], req.headers["x-signature"]);
}

/// An OAuth credential on the fixture: `[auth]` with the given grant lines.
fn oauth_credential(name: &str, server: &OAuthServer, base_url: &str, auth: &str) -> NamedCredential {
    let toml = format!(
        "base_url = \"{base_url}\"\n[auth]\ntype = \"oauth2\"\n\
         token_url = \"{}\"\nclient_id = \"plugboard\"\n{auth}",
        server.url("/token")
    );
    credential(name, &toml)
}

/// `client_credentials` with the fixture's client secret.
fn client_credentials(name: &str, server: &OAuthServer, base_url: &str, extra: &str) -> NamedCredential {
    let auth = format!(
        "grant = \"client_credentials\"\nclient_secret = \"{}\"\n{extra}",
        secret_ref(CLIENT_SECRET)
    );
    oauth_credential(name, server, base_url, &auth)
}

/// The fixture's protected API accepted the token the host sent: it was
/// valid, and it is the one the token endpoint issued last.
fn assert_api_accepted(server: &OAuthServer, out: &Value) {
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"]["token_valid"], true, "{out}");
    let issued = server.last_access_token().expect("a token was issued");
    assert_eq!(server.last_api_authorization(), Some(format!("Bearer {issued}")));
    // The API echoes the header; the plugin gets it with the token taken out.
    assert_eq!(out["body"]["authorization"], "Bearer [REDACTED]", "{out}");
}

/// The client-credentials grant gets a token the protected API accepts,
/// caches it across invocations, and keeps the client secret from the guest.
#[tokio::test]
async fn oauth_client_credentials_reach_the_protected_api() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let cred = client_credentials("crm", &server, &format!("{}/api", server.base_url()), "");
    let host = TestHost::new(&["rest-json"], vec![cred]).await;
    for _ in 0..2 {
        let inv = rest_get(&host, "/orders").await;
        assert_api_accepted(&server, &output(&inv));
        assert_eq!(output(&inv)["body"]["path"], "/api/orders");
        assert_hidden(&inv, CLIENT_SECRET);
        let token = server.last_access_token().unwrap();
        assert!(!format!("{:?}", inv.callouts).contains(&token));
        assert!(!format!("{:?}", inv.logs).contains(&token));
    }
    assert_eq!(
        server.token_requests_for("client_credentials"),
        1,
        "the token is cached"
    );
}

/// The guest never sees the access token: against an upstream that does not
/// echo headers, the token appears in the request it received and nowhere
/// the guest can look, and a guest's own Authorization header is replaced.
#[tokio::test]
async fn oauth_access_token_never_reaches_the_guest() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let up = Upstream::start().await;
    let cred = client_credentials("crm", &server, &up.url(), "");
    let host = TestHost::new(&["rest-json", "hostile"], vec![cred]).await;
    let inv = call_crm(
        &host,
        "rest-json",
        "get",
        json!({"path": "/orders", "headers": {"authorization": "Bearer forged"}}),
    )
    .await;
    assert_eq!(output(&inv)["status"], 200);
    let probe = call_crm(&host, "hostile", "callout", json!({"path": "/status/200"})).await;
    assert_eq!(output(&probe)["ok"]["status"], 200, "{:?}", probe.output);
    let token = server.last_access_token().expect("a token was issued");
    for req in up.seen() {
        assert_eq!(req.headers["authorization"], format!("Bearer {token}"));
    }
    assert_eq!(up.seen().len(), 2);
    for inv in [&inv, &probe] {
        assert_hidden(inv, &token);
        assert_hidden(inv, CLIENT_SECRET);
    }
    assert!(
        inv.callouts[0]
            .stripped_headers
            .contains(&"authorization".to_string())
    );
}

/// The JWT bearer grant: the host signs an RS256 assertion the fixture
/// verifies (issuer, subject, audience, signature), and the API accepts the
/// token it gets for it; the private key never reaches the guest.
#[tokio::test]
async fn oauth_jwt_bearer_rs256_reaches_the_protected_api() {
    let server = OAuthServer::start(OAuthServerConfig {
        jwt: Some(JwtCheck {
            algorithm: jsonwebtoken::Algorithm::RS256,
            public_key_pem: RSA_PUBLIC.into(),
            issuer: "plugboard".into(),
            subject: JWT_SUBJECT.into(),
            audience: JWT_AUDIENCE.into(),
        }),
        ..OAuthServerConfig::default()
    })
    .await;
    let auth = format!(
        "grant = \"jwt_bearer\"\nprivate_key = \"{}\"\n\
         [auth.jwt]\nsubject = \"{JWT_SUBJECT}\"\naudience = \"{JWT_AUDIENCE}\"",
        secret_ref(RSA_PRIVATE)
    );
    let cred = oauth_credential("crm", &server, &format!("{}/api", server.base_url()), &auth);
    let host = TestHost::new(&["rest-json"], vec![cred]).await;
    let inv = rest_get(&host, "/orders").await;
    assert_api_accepted(&server, &output(&inv));
    assert_eq!(
        server.token_requests_for(plugboard_tests::oauth_server::JWT_BEARER_GRANT),
        1
    );
    assert_eq!(
        server.last_jwt_header().unwrap().alg,
        jsonwebtoken::Algorithm::RS256
    );
    let claims = server.last_jwt_claims().expect("the assertion verified");
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some("plugboard"), Some(JWT_SUBJECT))
    );
    for line in RSA_PRIVATE.lines().filter(|l| !l.starts_with("-----")) {
        assert_hidden(&inv, line);
    }
}

/// A token the API refuses with 401 (revoked) is replaced by one new token
/// request and the callout sent again; the record says so.
#[tokio::test]
async fn rejected_token_is_refreshed_once_and_the_callout_retried() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let cred = client_credentials("crm", &server, &format!("{}/api", server.base_url()), "");
    let host = TestHost::new(&["rest-json"], vec![cred]).await;
    let first = rest_get(&host, "/orders").await;
    assert_api_accepted(&server, &output(&first));
    assert!(!first.callouts[0].token_refreshed);
    let old = server.last_access_token().unwrap();
    server.revoke_access_tokens();
    let inv = rest_get(&host, "/orders").await;
    assert_api_accepted(&server, &output(&inv));
    assert_eq!(server.token_requests(), 2, "one new token request");
    assert_ne!(server.last_access_token().unwrap(), old);
    assert_eq!(inv.callouts.len(), 1, "{:?}", inv.callouts);
    assert!(inv.callouts[0].token_refreshed, "{:?}", inv.callouts);
    assert_eq!(inv.callouts[0].status, Some(200));
}

/// An API that says 403 for an expired token: a status listed in
/// `refresh_on` gets a new token and a retry; without the listing the 403
/// goes to the plugin as it is.
#[tokio::test]
async fn refresh_on_listed_status_renews_the_token() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    server.answer_expired_with(403);
    let api = format!("{}/api", server.base_url());
    let listed = |name: &str| client_credentials(name, &server, &api, "refresh_on = [403]");
    let host = TestHost::new(
        &["rest-json"],
        vec![listed("crm"), client_credentials("plain", &server, &api, "")],
    )
    .await;
    // A token that has expired at the provider but that the host holds with
    // no known expiry (as one stored by a consent flow is), so the host sends it.
    server.set_expires_in(0);
    let policy = host.registry.sandbox().policy();
    let tokens = policy.credential("crm").unwrap();
    tokens.tokens().unwrap().fetch_new().await.expect("token");
    let expired = server.last_access_token().unwrap();
    server.set_expires_in(3600);
    for mut named in [listed("crm"), client_credentials("plain", &server, &api, "")] {
        named.secrets.insert(
            plugboard::credentials::ACCESS_TOKEN.into(),
            plugboard::secret::Secret::from_plaintext(expired.clone()),
        );
        swap_in(&host, named, 2);
    }
    let inv = call(
        &host,
        "rest-json",
        "get",
        json!({"path": "/orders"}),
        &[("api", "plain")],
    )
    .await;
    let err = error(&inv);
    assert_eq!(err.code(), "upstream_status", "{err}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!inv.callouts[0].token_refreshed);
    assert_eq!(server.token_requests(), 1, "no refresh without `refresh_on`");
    let inv = rest_get(&host, "/orders").await;
    assert_api_accepted(&server, &output(&inv));
    assert!(inv.callouts[0].token_refreshed, "{:?}", inv.callouts);
    assert_eq!(server.token_requests(), 2);
    assert_hidden(&inv, &expired);
}

/// `count` rest-json GETs at once, each in its own invocation on its own task.
async fn concurrent_gets(host: &Arc<TestHost>, count: usize) -> Vec<Invocation> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move { rest_get(&host, &format!("/orders/{i}")).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task finishes"));
    }
    out
}

/// Fifty invocations through one credential cause one token request on a
/// cold cache, and one more when the API refuses the token they all hold.
#[tokio::test]
async fn concurrent_invocations_share_one_token_request() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    server.set_delay(Duration::from_millis(200));
    let cred = client_credentials("crm", &server, &format!("{}/api", server.base_url()), "");
    let host =
        Arc::new(TestHost::with_config(&["rest-json"], vec![cred], |c| c.sandbox.max_instances = 64).await);
    for inv in concurrent_gets(&host, 50).await {
        let out = output(&inv);
        assert_eq!(
            (out["status"].as_u64(), &out["body"]["token_valid"]),
            (Some(200), &json!(true)),
            "{out}"
        );
    }
    assert_eq!(server.token_requests(), 1, "cold cache");
    server.revoke_access_tokens();
    let invs = concurrent_gets(&host, 50).await;
    let mut refreshed = 0;
    for inv in &invs {
        let out = output(inv);
        assert_eq!(out["body"]["token_valid"], true, "{out}");
        refreshed += usize::from(inv.callouts[0].token_refreshed);
    }
    assert!(refreshed >= 1, "no callout saw the revoked token");
    assert_eq!(
        server.token_requests(),
        2,
        "after revocation ({refreshed} callouts refreshed)"
    );
}

/// Writes `text` to `name` in `dir`; returns its `file:` reference.
fn file_ref(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write PEM file");
    format!("file:{}", path.display())
}

/// Mutual TLS: a credential with the private CA and a client identity
/// reaches a server requiring client certificates, over https without
/// `allow_http`; without the identity the handshake fails and the plugin
/// sees the upstream as unreachable.
#[tokio::test]
async fn mutual_tls_credential_presents_its_client_certificate() {
    let pki = TestPki::generate();
    let up = TlsUpstream::start(&pki, true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = file_ref(&dir, "ca.pem", &pki.ca_pem);
    let cert = file_ref(&dir, "client.pem", &pki.client_cert_pem);
    let key = secret_ref(&pki.client_key_pem);
    let mutual = |base: &str| {
        format!(
            "base_url = \"{base}\"\nallowed_plugins = [\"*\"]\n\
             tls = {{ ca = \"{ca}\", client_cert = \"{cert}\", client_key = \"{key}\" }}"
        )
    };
    let plain_http = credential_as_written("crm", &mutual(&format!("http://localhost:{}", up.addr.port())));
    assert!(
        plain_http
            .as_ref()
            .is_err_and(|e| e.iter().any(|p| p.contains("allow_http"))),
        "{plain_http:?}"
    );
    let with_identity = credential_as_written("crm", &mutual(&up.base_url())).expect("valid");
    assert!(!with_identity.spec.allow_http);
    // The CA inline this time, as PEM text.
    let ca_only = credential_as_written(
        "anon",
        &format!(
            "base_url = \"{}\"\nallowed_plugins = [\"*\"]\n[tls]\nca = \"\"\"\n{}\"\"\"",
            up.base_url(),
            pki.ca_pem
        ),
    )
    .expect("valid");
    let host = TestHost::new(&["rest-json"], vec![with_identity, ca_only]).await;

    let inv = rest_get(&host, "/v1/accounts").await;
    let out = output(&inv);
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"]["client_cn"], CLIENT_CN, "{out}");
    assert_eq!(out["body"]["path"], "/v1/accounts");
    assert_eq!(up.failed_handshakes(), 0);
    for line in pki.client_key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert_hidden(&inv, line);
    }

    let inv = call(
        &host,
        "rest-json",
        "get",
        json!({"path": "/v1/accounts"}),
        &[("api", "anon")],
    )
    .await;
    let err = error(&inv);
    assert_eq!(err.code(), "upstream_unreachable", "{err}");
    let recorded = inv.callouts[0].error.as_deref().unwrap_or_default();
    assert!(recorded.starts_with("upstream unreachable"), "{recorded}");
    let mut failed = up.failed_handshakes();
    for _ in 0..100 {
        if failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        failed = up.failed_handshakes();
    }
    assert!(
        failed >= 1,
        "the server did not refuse a handshake without a client certificate"
    );
}

/// A bearer credential on `up` with `token` and extra TOML lines.
fn bearer(up: &Upstream, token: &str, extra: &str) -> NamedCredential {
    credential(
        "crm",
        &format!(
            "base_url = \"{}/api\"\n{extra}\nauth = {{ type = \"bearer\", token = \"{}\" }}",
            up.url(),
            secret_ref(token)
        ),
    )
}

/// A GET through the hostile plugin: what the guest observed.
async fn guest_get(host: &TestHost, path: &str) -> Value {
    output(&call_crm(host, "hostile", "callout", json!({"path": path})).await)
}

/// Over its rate limit, a callout that cannot get a turn within
/// `max_wait_ms` fails at once with a message naming the limit, which the
/// guest receives as `unreachable` (retryable), and nothing is sent.
#[tokio::test]
async fn rate_limit_refuses_callouts_past_the_wait() {
    let up = Upstream::start().await;
    let limit = "rate_limit = { per_second = 1, burst = 1, max_wait_ms = 50 }";
    let host = TestHost::new(&["hostile"], vec![bearer(&up, "tok-rl", limit)]).await;
    let first = guest_get(&host, "/a").await;
    assert_eq!(first["ok"]["status"], 200, "{first}");
    let inv = call_crm(&host, "hostile", "callout", json!({"path": "/b"})).await;
    let second = output(&inv);
    assert_eq!(second["err"]["kind"], "unreachable", "{second}");
    assert!(
        second["err"]["detail"].as_str().unwrap().contains("rate"),
        "{second}"
    );
    assert!(
        inv.callouts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("rate limited")),
        "{:?}",
        inv.callouts
    );
    assert_eq!(up.seen().len(), 1, "{:?}", up.seen());
}

/// With a long enough `max_wait_ms`, a callout over the limit waits for its
/// turn instead of failing.
#[tokio::test]
async fn rate_limit_waits_for_a_turn_within_max_wait() {
    let up = Upstream::start().await;
    let limit = "rate_limit = { per_second = 1, burst = 1, max_wait_ms = 2000 }";
    let host = TestHost::new(&["hostile"], vec![bearer(&up, "tok-rl", limit)]).await;
    let inv = call_crm(
        &host,
        "hostile",
        "callout-loop",
        json!({"path": "/n", "count": 2}),
    )
    .await;
    let out = output(&inv);
    assert_eq!(out, json!({"statuses": [200, 200], "errors": []}));
    assert_eq!(up.seen().len(), 2);
    let waited = inv.callouts[1].duration_ms;
    assert!(waited >= 500, "the second callout took only {waited} ms");
}

/// A disabled credential refuses callouts, naming why; nothing is sent.
#[tokio::test]
async fn disabled_credential_refuses_callouts() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["rest-json"], vec![bearer(&up, "tok-off", "enabled = false")]).await;
    let inv = rest_get(&host, "/orders").await;
    let err = error(&inv);
    assert_eq!(err.code(), "denied", "{err}");
    assert!(
        err.to_string()
            .contains("credential `crm` is disabled for callouts"),
        "{err}"
    );
    assert!(up.seen().is_empty(), "{:?}", up.seen());
}

/// An edit takes effect on the next callout: a new token is sent by the
/// next invocation, and disabling stops the one after.
#[tokio::test]
async fn credential_edits_apply_to_the_next_callout() {
    let up = Upstream::start().await;
    let host = TestHost::new(&["rest-json"], vec![bearer(&up, "tok-before", "")]).await;
    output(&rest_get(&host, "/one").await);
    swap_in(&host, bearer(&up, "tok-after", ""), 2);
    output(&rest_get(&host, "/two").await);
    let auth: Vec<_> = up
        .seen()
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, ["Bearer tok-before", "Bearer tok-after"]);
    swap_in(&host, bearer(&up, "tok-after", "enabled = false"), 3);
    let inv = rest_get(&host, "/three").await;
    assert!(
        error(&inv).to_string().contains("disabled for callouts"),
        "{:?}",
        inv.output
    );
    assert_eq!(up.seen().len(), 2);
}

/// A plugin the credential does not list is refused even though the
/// invocation binds the credential to its slot; a listed plugin is not.
#[tokio::test]
async fn plugins_not_in_allowed_plugins_are_refused() {
    let up = Upstream::start().await;
    let host = TestHost::new(
        &["rest-json", "hostile"],
        vec![bearer(&up, "tok-only", "allowed_plugins = [\"hostile\"]")],
    )
    .await;
    let inv = rest_get(&host, "/orders").await;
    let err = error(&inv);
    assert_eq!(err.code(), "denied", "{err}");
    assert!(
        err.to_string()
            .contains("credential `crm` does not allow plugin `rest-json`"),
        "{err}"
    );
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    let allowed = guest_get(&host, "/orders").await;
    assert_eq!(allowed["ok"]["status"], 200, "{allowed}");
    assert_eq!(up.seen().len(), 1);
}
