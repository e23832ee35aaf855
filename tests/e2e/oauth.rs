//! OAuth 2.0 named credentials against a loopback authorization server:
//! each grant end to end, the errors operators see, proactive renewal and the
//! single-flight token cache. These drive `TokenSource` directly; no plugin.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use plugboard::credentials::oauth::{
    AccessToken, ClientAuth, GrantType, JwtAlgorithm, JwtSettings, OAuthSettings, StoredTokens, TokenError,
    TokenPersist, TokenSource, exchange_code, start_authorization,
};
use plugboard::outbound::{HttpClient, TlsSettings, build_client};
use plugboard::secret::Secret;
use plugboard_tests::oauth_server::{
    ClientAuthMethod, JWT_BEARER_GRANT, JwtCheck, OAuthServer, OAuthServerConfig,
};
use serde_json::Value;
use url::Url;

const CLIENT_SECRET: &str = "client-s3cret";
const RSA_PRIVATE: &str = include_str!("../fixtures/oauth/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/oauth/rsa-public.pem");
/// The `aud` assertions are made for (providers usually name their token endpoint).
const AUDIENCE: &str = "https://idp.example/oauth/token";

fn client() -> HttpClient {
    build_client(Duration::from_secs(5), &TlsSettings::default()).expect("default client")
}

fn secret(value: &str) -> Secret {
    Secret::from_plaintext(value.to_string())
}

fn settings(server: &OAuthServer, grant: GrantType) -> OAuthSettings {
    OAuthSettings {
        grant,
        token_url: server.url("/token"),
        authorize_url: (grant == GrantType::AuthorizationCode).then(|| server.url("/authorize")),
        client_id: "plugboard".into(),
        client_auth: ClientAuth::Basic,
        scopes: vec![],
        token_params: BTreeMap::new(),
        authorize_params: BTreeMap::new(),
        refresh_on: vec![],
        refresh_before_secs: 60,
        jwt: None,
    }
}

/// Records what a `TokenSource` persists.
#[derive(Default)]
struct Recorder {
    saved: Mutex<Vec<StoredTokens>>,
    reconnects: Mutex<Vec<String>>,
}

impl TokenPersist for Recorder {
    fn save(&self, tokens: &StoredTokens) -> Result<(), String> {
        self.saved.lock().unwrap().push(tokens.clone());
        Ok(())
    }

    fn reconnect_needed(&self, reason: &str) {
        self.reconnects.lock().unwrap().push(reason.to_string());
    }
}

fn token_source(
    settings: OAuthSettings,
    client_secret: Option<&str>,
    stored: StoredTokens,
) -> (TokenSource, Arc<Recorder>) {
    token_source_with_key(settings, client_secret, None, stored)
}

fn token_source_with_key(
    settings: OAuthSettings,
    client_secret: Option<&str>,
    private_key: Option<&str>,
    stored: StoredTokens,
) -> (TokenSource, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let source = TokenSource::new(
        "crm",
        settings,
        client_secret.map(secret),
        private_key.map(secret),
        stored,
        client(),
        recorder.clone(),
    );
    (source, recorder)
}

/// Whether `token` is the last access token the server issued.
fn is_last_issued(server: &OAuthServer, token: &AccessToken) -> bool {
    server
        .last_access_token()
        .is_some_and(|t| token.value == secret(&t))
}

/// Calls the protected API with a bearer token; returns the status and body.
async fn call_api(server: &OAuthServer, bearer: &str) -> (u16, Value) {
    let request = http::Request::get(server.url("/api/orders").as_str())
        .header("authorization", format!("Bearer {bearer}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.expect("API answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Client credentials with Basic authentication obtain a token the API
/// accepts, and the cached token is reused instead of requested again.
#[tokio::test]
async fn client_credentials_with_basic_auth_get_a_cached_token() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(CLIENT_SECRET),
        StoredTokens::default(),
    );
    assert_eq!(source.status().state, "no_token");
    let token = source.token().await.expect("token");
    assert!(is_last_issued(&server, &token));
    assert_eq!(token.generation, 1);
    let again = source.token().await.expect("cached token");
    assert_eq!((again.value, again.generation), (token.value, 1));
    assert_eq!(server.token_requests_for("client_credentials"), 1);
    let seen = server.last_token_request().unwrap();
    assert_eq!(seen.basic, Some(("plugboard".into(), CLIENT_SECRET.into())));
    assert!(
        !seen.params.contains_key("client_secret"),
        "{:?}",
        seen.params.keys()
    );
    assert_eq!(source.status().state, "valid");
    let (status, body) = call_api(&server, &server.last_access_token().unwrap()).await;
    assert_eq!(
        (status, &body["token_valid"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
}

/// `client_auth = "body"` sends the id and secret as form fields, no Basic header.
#[tokio::test]
async fn client_credentials_with_body_auth_send_the_secret_in_the_form() {
    let server = OAuthServer::start(OAuthServerConfig {
        client_auth: ClientAuthMethod::Body,
        ..OAuthServerConfig::default()
    })
    .await;
    let mut s = settings(&server, GrantType::ClientCredentials);
    s.client_auth = ClientAuth::Body;
    let (source, _) = token_source(s, Some(CLIENT_SECRET), StoredTokens::default());
    source.token().await.expect("token");
    let seen = server.last_token_request().unwrap();
    assert_eq!(seen.basic, None);
    assert_eq!(
        seen.params.get("client_id").map(String::as_str),
        Some("plugboard")
    );
    assert_eq!(
        seen.params.get("client_secret").map(String::as_str),
        Some(CLIENT_SECRET)
    );
}

/// Configured scopes and extra token parameters reach the token endpoint.
#[tokio::test]
async fn scopes_and_token_params_reach_the_token_endpoint() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let mut s = settings(&server, GrantType::ClientCredentials);
    s.scopes = vec!["orders.read".into(), "orders.write".into()];
    s.token_params
        .insert("audience".into(), "https://api.example".into());
    let (source, _) = token_source(s, Some(CLIENT_SECRET), StoredTokens::default());
    source.token().await.expect("token");
    let params = server.last_token_request().unwrap().params;
    assert_eq!(params["scope"], "orders.read orders.write");
    assert_eq!(params["audience"], "https://api.example");
}

/// A wrong client secret is a permanent error that names the credential and
/// the provider's `invalid_client`, and never contains the secret.
#[tokio::test]
async fn wrong_client_secret_is_a_permanent_error_without_the_secret() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let wrong = "wrong-s3cret-value";
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(wrong),
        StoredTokens::default(),
    );
    let err = source.token().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TokenError::Unavailable { .. }), "{err:?}");
    assert!(!err.retryable(), "{text}");
    assert!(
        text.contains("`crm`") && text.contains("invalid_client") && text.contains("401"),
        "{text}"
    );
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{text}"
    );
    let status = source.status();
    assert_eq!(status.state, "no_token");
    assert!(
        status
            .detail
            .is_some_and(|d| d.contains("invalid_client") && !d.contains(wrong))
    );
}

/// A token endpoint's free text is never quoted: not `error_description`,
/// not `error_uri`, and not an `error` that is not a registered OAuth code
/// (an endpoint can put anything there, the client secret it was sent
/// included). A registered code is.
#[tokio::test]
async fn token_errors_quote_no_free_text_from_the_endpoint() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(CLIENT_SECRET),
        StoredTokens::default(),
    );
    server.fail_next(
        1,
        400,
        &format!(
            r#"{{"error":"invalid_client","error_description":"secret {CLIENT_SECRET} is wrong","error_uri":"https://idp.example/{CLIENT_SECRET}"}}"#
        ),
    );
    let err = source.token().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "credential `crm` could not obtain an access token: the token endpoint answered 400 `invalid_client`"
    );
    server.fail_next(
        1,
        400,
        &format!(r#"{{"error":"{}"}}"#, CLIENT_SECRET.replace('-', "_")),
    );
    let err = source.token().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not a registered one"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let detail = source.status().detail.unwrap_or_default();
    assert!(
        !detail.contains("s3cret") && !detail.contains("is wrong"),
        "{detail}"
    );
}

/// A token endpoint outage (503) is retryable, and the next call recovers.
#[tokio::test]
async fn token_endpoint_outage_is_retryable() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    server.fail_next(1, 503, r#"{"error":"temporarily_unavailable"}"#);
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(CLIENT_SECRET),
        StoredTokens::default(),
    );
    let err = source.token().await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    source.token().await.expect("recovered");
    assert_eq!(server.token_requests(), 2);
}

/// A token endpoint that cannot be reached is a retryable error naming its origin.
#[tokio::test]
async fn unreachable_token_endpoint_is_retryable() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let mut s = settings(&server, GrantType::ClientCredentials);
    s.token_url = Url::parse(&format!("http://{addr}/token")).unwrap();
    let (source, _) = token_source(s, Some(CLIENT_SECRET), StoredTokens::default());
    let err = source.token().await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains(&format!("http://{addr}")), "{err}");
}

/// A redirecting token endpoint is not followed (the client secret would go
/// wherever it points), and an oversized answer is refused.
#[tokio::test]
async fn token_endpoint_redirects_and_huge_answers_are_refused() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let mut s = settings(&server, GrantType::ClientCredentials);
    s.token_url = server.url("/misbehave/redirect");
    let (source, _) = token_source(s.clone(), Some(CLIENT_SECRET), StoredTokens::default());
    let err = source.token().await.unwrap_err();
    assert!(
        err.to_string().contains("redirect (307), which is not followed"),
        "{err}"
    );
    assert!(!err.retryable());
    assert_eq!(server.token_requests(), 0, "the redirect was followed");
    s.token_url = server.url("/misbehave/huge");
    let (source, _) = token_source(s, Some(CLIENT_SECRET), StoredTokens::default());
    let err = source.token().await.unwrap_err();
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
}

fn jwt_settings(server: &OAuthServer, algorithm: JwtAlgorithm, issuer: Option<&str>) -> OAuthSettings {
    let mut s = settings(server, GrantType::JwtBearer);
    s.scopes = vec!["orders.read".into()];
    s.jwt = Some(JwtSettings {
        algorithm,
        issuer: issuer.map(str::to_string),
        subject: "svc@plugboard".into(),
        audience: AUDIENCE.into(),
        lifetime_secs: 300,
        key_id: Some("key-2024".into()),
    });
    s
}

/// A server accepting assertions signed for `public_pem` from `issuer`.
async fn jwt_server(algorithm: jsonwebtoken::Algorithm, public_pem: &str, issuer: &str) -> OAuthServer {
    OAuthServer::start(OAuthServerConfig {
        jwt: Some(JwtCheck {
            algorithm,
            public_key_pem: public_pem.to_string(),
            issuer: issuer.into(),
            subject: "svc@plugboard".into(),
            audience: AUDIENCE.into(),
        }),
        ..OAuthServerConfig::default()
    })
    .await
}

/// The JWT bearer grant signs an RS256 assertion the server verifies: `iss`
/// defaults to the client id, `kid`, `aud`, and `exp - iat` is the lifetime.
#[tokio::test]
async fn jwt_bearer_rs256_assertion_is_verified_by_the_server() {
    let server = jwt_server(jsonwebtoken::Algorithm::RS256, RSA_PUBLIC, "plugboard").await;
    let s = jwt_settings(&server, JwtAlgorithm::RS256, None);
    s.check_private_key(&secret(RSA_PRIVATE))
        .expect("the RSA key signs RS256");
    let (source, _) = token_source_with_key(s, None, Some(RSA_PRIVATE), StoredTokens::default());
    let token = source.token().await.expect("token");
    assert!(is_last_issued(&server, &token));
    let seen = server.last_token_request().unwrap();
    assert_eq!(seen.grant_type, JWT_BEARER_GRANT);
    assert_eq!(seen.params["scope"], "orders.read");
    assert_eq!(seen.basic, None, "no client secret, no client authentication");
    let header = server.last_jwt_header().unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("key-2024"));
    let claims = server.last_jwt_claims().unwrap();
    assert_eq!(claims["iss"], "plugboard");
    assert_eq!(claims["sub"], "svc@plugboard");
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36), "{claims}");
}

/// ES256 assertions signed with a P-256 key (PKCS#8) verify too, with an
/// explicit issuer; a client secret, when set, authenticates the client.
#[tokio::test]
async fn jwt_bearer_es256_with_a_p256_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let server = jwt_server(
        jsonwebtoken::Algorithm::ES256,
        &key.public_key_pem(),
        "issuer@plugboard",
    )
    .await;
    let s = jwt_settings(&server, JwtAlgorithm::ES256, Some("issuer@plugboard"));
    let private = key.serialize_pem();
    s.check_private_key(&secret(&private))
        .expect("the P-256 key signs ES256");
    let (source, _) = token_source_with_key(s, Some(CLIENT_SECRET), Some(&private), StoredTokens::default());
    source.token().await.expect("token");
    assert_eq!(
        server.last_jwt_header().unwrap().alg,
        jsonwebtoken::Algorithm::ES256
    );
    assert_eq!(server.last_jwt_claims().unwrap()["iss"], "issuer@plugboard");
    assert_eq!(
        server.last_token_request().unwrap().basic.map(|b| b.0),
        Some("plugboard".into())
    );
}

/// A private key that does not fit the algorithm is refused at validation,
/// and the message never quotes the key.
#[tokio::test]
async fn mismatched_private_keys_are_refused_without_quoting_them() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let rs = jwt_settings(&server, JwtAlgorithm::RS256, None);
    let es = jwt_settings(&server, JwtAlgorithm::ES256, None);
    let rs512 = jwt_settings(&server, JwtAlgorithm::RS512, None);
    rs512
        .check_private_key(&secret(RSA_PRIVATE))
        .expect("RSA signs RS512");
    for (s, key) in [(&rs, &p256), (&es, &RSA_PRIVATE.to_string())] {
        let err = s.check_private_key(&secret(key)).unwrap_err();
        assert!(err.contains("cannot sign"), "{err}");
        let body_line = key.lines().nth(1).unwrap();
        assert!(!err.contains(body_line), "{err}");
    }
}

/// Runs the consent flow against the server; returns the stored tokens.
async fn consent(s: &OAuthSettings, client_secret: Option<&str>) -> StoredTokens {
    let redirect = Url::parse("http://127.0.0.1:9/oauth/callback").unwrap();
    let pending = start_authorization(s, &redirect).expect("authorize URL");
    let request = http::Request::get(pending.authorize_url.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.expect("authorize answers");
    assert_eq!(response.status(), 302, "the consent screen redirects back");
    let location = response.headers()["location"].to_str().unwrap();
    let back = Url::parse(location).unwrap();
    assert!(location.starts_with(redirect.as_str()), "{location}");
    let query: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(query["state"], pending.state, "state comes back unchanged");
    let code = &query["code"];
    let stored = exchange_code(
        "crm",
        s,
        client_secret.map(secret).as_ref(),
        &client(),
        &redirect,
        code,
        &pending.pkce_verifier,
    )
    .await
    .expect("code exchange");
    let wrong = exchange_code(
        "crm",
        s,
        client_secret.map(secret).as_ref(),
        &client(),
        &redirect,
        code,
        &pending.pkce_verifier,
    )
    .await
    .expect_err("a code works once");
    assert!(wrong.to_string().contains("invalid_grant"), "{wrong}");
    stored
}

/// The authorization-code flow: PKCE S256 and state on the authorize URL,
/// the code exchanged for tokens that a `TokenSource` uses as they are, then
/// renewed by the refresh token at expiry, the rotated refresh token saved.
#[tokio::test]
async fn authorization_code_flow_refreshes_and_saves_the_rotated_refresh_token() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let mut s = settings(&server, GrantType::AuthorizationCode);
    s.scopes = vec!["offline_access".into(), "orders.read".into()];
    s.authorize_params.insert("prompt".into(), "consent".into());
    s.refresh_before_secs = 1;
    server.set_expires_in(2);
    let stored = consent(&s, Some(CLIENT_SECRET)).await;
    let asked = server.last_authorize_query().unwrap();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["scope"], "offline_access orders.read");
    assert_eq!(asked["prompt"], "consent");
    let first_refresh = server.last_refresh_token().unwrap();
    assert_eq!(stored.refresh_token, Some(secret(&first_refresh)));
    assert!(stored.expires_at_ms.is_some());

    let (source, recorder) = token_source(s, Some(CLIENT_SECRET), stored.clone());
    let token = source.token().await.expect("stored token");
    assert_eq!(Some(token.value.clone()), stored.access_token);
    assert_eq!(server.token_requests_for("refresh_token"), 0);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let renewed = source.token().await.expect("refreshed token");
    assert_eq!(server.token_requests_for("refresh_token"), 1);
    assert!(renewed.value != token.value && renewed.generation > token.generation);
    assert!(is_last_issued(&server, &renewed));
    let rotated = server.last_refresh_token().unwrap();
    assert_ne!(rotated, first_refresh);
    assert!(
        !server.refresh_token_valid(&first_refresh),
        "the server rotated the refresh token"
    );
    let saved = recorder
        .saved
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("tokens saved");
    assert_eq!(saved.refresh_token, Some(secret(&rotated)));
    assert_eq!(saved.access_token, Some(renewed.value));
    assert!(saved.expires_at_ms.is_some());
}

/// A refresh token the provider refuses (`invalid_grant`) means reconnecting:
/// the caller is told once, and no further requests are made.
#[tokio::test]
async fn revoked_refresh_token_needs_reconnecting() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let s = settings(&server, GrantType::AuthorizationCode);
    let stored = consent(&s, Some(CLIENT_SECRET)).await;
    let (source, recorder) = token_source(s, Some(CLIENT_SECRET), stored);
    server.revoke_refresh_tokens();
    let err = source.fetch_new().await.unwrap_err();
    assert!(
        matches!(&err, TokenError::ReconnectNeeded { credential, detail } if credential == "crm" && detail.contains("invalid_grant")),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert_eq!(recorder.reconnects.lock().unwrap().len(), 1);
    assert_eq!(source.status().state, "reconnect_needed");
    let requests = server.token_requests();
    let again = source.fetch_new().await.unwrap_err();
    assert!(matches!(again, TokenError::ReconnectNeeded { .. }), "{again:?}");
    assert_eq!(
        server.token_requests(),
        requests,
        "a refused refresh token is not sent again"
    );
    assert_eq!(recorder.reconnects.lock().unwrap().len(), 1, "told once");
}

/// An authorization-code credential with nothing stored needs the consent
/// flow, and says so without asking the provider.
#[tokio::test]
async fn authorization_code_without_tokens_needs_reconnecting() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let (source, recorder) = token_source(
        settings(&server, GrantType::AuthorizationCode),
        None,
        StoredTokens::default(),
    );
    let err = source.token().await.unwrap_err();
    assert!(matches!(err, TokenError::ReconnectNeeded { .. }), "{err:?}");
    assert_eq!(server.token_requests(), 0);
    assert_eq!(recorder.reconnects.lock().unwrap().len(), 1);
}

/// A public client (no secret) completes the flow with PKCE alone.
#[tokio::test]
async fn public_client_uses_pkce_alone() {
    let server = OAuthServer::start(OAuthServerConfig {
        client_secret: None,
        ..OAuthServerConfig::default()
    })
    .await;
    let s = settings(&server, GrantType::AuthorizationCode);
    let stored = consent(&s, None).await;
    assert!(stored.refresh_token.is_some());
    let (source, _) = token_source(s, None, stored);
    source.fetch_new().await.expect("refresh without a client secret");
}

/// Tokens are renewed `refresh_before_secs` before expiry, but never before
/// half their lifetime: a 4 s token with a 3 s margin is kept for 2 s.
#[tokio::test]
async fn tokens_are_renewed_before_expiry_but_not_before_half_their_lifetime() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    server.set_expires_in(4);
    let mut s = settings(&server, GrantType::ClientCredentials);
    s.refresh_before_secs = 3;
    let (source, _) = token_source(s, Some(CLIENT_SECRET), StoredTokens::default());
    let first = source.token().await.expect("token");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(source.token().await.unwrap().generation, first.generation);
    assert_eq!(server.token_requests(), 1, "renewed before half the lifetime");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let renewed = source.token().await.unwrap();
    assert_eq!(server.token_requests(), 2, "not renewed within the margin");
    assert!(renewed.generation > first.generation);
    assert!(renewed.expires_at.unwrap() > first.expires_at.unwrap());
}

/// Fifty callers on a cold cache wait for one token request and share it.
#[tokio::test]
async fn concurrent_callers_on_a_cold_cache_share_one_token_request() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    server.set_delay(Duration::from_millis(200));
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(CLIENT_SECRET),
        StoredTokens::default(),
    );
    let source = Arc::new(source);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().expect("token").generation, 1);
    }
    assert_eq!(server.token_requests(), 1);
}

/// Fifty callers whose token the API refused cause one new token request,
/// and all get the replacement.
#[tokio::test]
async fn concurrent_refreshes_of_one_rejected_token_cause_one_request() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(CLIENT_SECRET),
        StoredTokens::default(),
    );
    let source = Arc::new(source);
    let old = source.token().await.expect("token");
    server.set_delay(Duration::from_millis(200));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (source, old) = (source.clone(), old.clone());
            tokio::spawn(async move { source.refresh_rejected(&old).await })
        })
        .collect();
    for call in calls {
        let new = call.await.unwrap().expect("replacement");
        assert_eq!(new.generation, old.generation + 1);
    }
    assert_eq!(server.token_requests(), 2);
}

/// A token the API refuses is replaced by one it accepts; the API's
/// `refresh_on` status for an expired token comes through as configured.
#[tokio::test]
async fn refused_token_is_replaced_by_one_the_api_accepts() {
    let server = OAuthServer::start(OAuthServerConfig::default()).await;
    let (source, _) = token_source(
        settings(&server, GrantType::ClientCredentials),
        Some(CLIENT_SECRET),
        StoredTokens::default(),
    );
    let old = source.token().await.expect("token");
    let old_text = server.last_access_token().unwrap();
    assert_eq!(call_api(&server, &old_text).await.0, 200);
    server.revoke_access_tokens();
    let (status, body) = call_api(&server, &old_text).await;
    assert_eq!(
        (status, &body["authorization"]),
        (401, &Value::String(format!("Bearer {old_text}")))
    );
    let new = source.refresh_rejected(&old).await.expect("replacement");
    assert!(is_last_issued(&server, &new));
    assert_eq!(
        call_api(&server, &server.last_access_token().unwrap()).await.0,
        200
    );
    // Another caller holding the same refused token gets the replacement, no new request.
    assert_eq!(
        source.refresh_rejected(&old).await.unwrap().generation,
        new.generation
    );
    assert_eq!(server.token_requests(), 2);

    server.set_expires_in(1);
    server.answer_expired_with(403);
    source.fetch_new().await.expect("short-lived token");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        call_api(&server, &server.last_access_token().unwrap()).await.0,
        403
    );
}
