//! The `jwt_bearer` grant's signed assertions (RFC 7523): the signing key,
//! the claims, and the token request oauth2 has no builder for.

use std::time::SystemTime;

use base64::Engine as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;

use super::error::{Failure, SendError};
use super::settings::{ClientAuth, JwtAlgorithm, JwtSettings, OAuthSettings};
use crate::secret::Secret;

/// RFC 7523's grant type.
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl JwtAlgorithm {
    fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            JwtAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }

    /// The key this algorithm needs, in words for error messages.
    fn key_kind(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 | JwtAlgorithm::RS512 => "an RSA private key (PEM, PKCS#1 or PKCS#8)",
            JwtAlgorithm::ES256 => "a P-256 private key (PEM, PKCS#8)",
        }
    }
}

impl OAuthSettings {
    /// Checks that a PEM private key can sign assertions with the configured
    /// algorithm: RSA for `RS256`/`RS512`, P-256 in PKCS#8 for `ES256`. The
    /// key is tried by signing a throwaway token, since parsing the PEM alone
    /// accepts keys the signer then refuses. Errors never contain the key.
    pub fn check_private_key(&self, pem: &Secret) -> Result<(), String> {
        let jwt = self
            .jwt
            .as_ref()
            .ok_or_else(|| format!("grant `{}` does not use a private key", self.grant.name()))?;
        let probe = serde_json::json!({"probe": true});
        let header = jsonwebtoken::Header::new(jwt.algorithm.jsonwebtoken());
        jsonwebtoken::encode(&header, &probe, &encoding_key(jwt.algorithm, pem)?)
            .map(drop)
            .map_err(|_| cannot_sign(jwt.algorithm))
    }
}

fn encoding_key(algorithm: JwtAlgorithm, pem: &Secret) -> Result<jsonwebtoken::EncodingKey, String> {
    let parsed = match algorithm {
        JwtAlgorithm::RS256 | JwtAlgorithm::RS512 => {
            jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes())
        }
        JwtAlgorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem.expose().as_bytes()),
    };
    // jsonwebtoken's errors describe the PEM; only the kind of problem is kept.
    parsed.map_err(|_| cannot_sign(algorithm))
}

fn cannot_sign(algorithm: JwtAlgorithm) -> String {
    format!(
        "the private key cannot sign {algorithm:?} assertions: it must be {}",
        algorithm.key_kind()
    )
}

/// The claims of an RFC 7523 assertion.
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
}

pub(super) fn sign_assertion(
    settings: &OAuthSettings,
    jwt: &JwtSettings,
    key: &Secret,
) -> Result<String, String> {
    let now = crate::time::unix_secs(SystemTime::now());
    let claims = AssertionClaims {
        iss: jwt.issuer.as_deref().unwrap_or(&settings.client_id),
        sub: &jwt.subject,
        aud: &jwt.audience,
        exp: now + jwt.lifetime_secs,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
    };
    let mut header = jsonwebtoken::Header::new(jwt.algorithm.jsonwebtoken());
    header.kid = jwt.key_id.clone();
    jsonwebtoken::encode(&header, &claims, &encoding_key(jwt.algorithm, key)?)
        .map_err(|_| cannot_sign(jwt.algorithm))
}

/// The JWT bearer token request, which oauth2 has no builder for: the
/// assertion, scopes and extra parameters, plus client authentication when a
/// client secret is set (RFC 7523 makes it optional).
pub(super) fn jwt_bearer_request(
    settings: &OAuthSettings,
    client_secret: Option<&Secret>,
    assertion: &str,
) -> Result<oauth2::HttpRequest, Failure> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", JWT_BEARER_GRANT)
        .append_pair("assertion", assertion);
    if !settings.scopes.is_empty() {
        form.append_pair("scope", &settings.scopes.join(" "));
    }
    form.extend_pairs(&settings.token_params);
    let mut builder = http::Request::post(settings.token_url.as_str())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
    match (settings.client_auth, client_secret) {
        (ClientAuth::Basic, Some(secret)) => {
            // RFC 6749 section 2.3.1: each part form-encoded before Basic, as oauth2 does.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(&settings.client_id), encode(secret.expose()));
            let basic = base64::engine::general_purpose::STANDARD.encode(pair);
            builder = builder.header(AUTHORIZATION, format!("Basic {basic}"));
        }
        (ClientAuth::Body, Some(secret)) => {
            form.append_pair("client_id", &settings.client_id)
                .append_pair("client_secret", secret.expose());
        }
        (_, None) => {}
    }
    builder
        .body(form.finish().into_bytes())
        .map_err(|e| Failure::Send(SendError::Build(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::oauth::GrantType;
    use crate::credentials::oauth::settings::tests::settings;

    #[test]
    fn a_key_that_is_not_pem_is_refused_without_quoting_it() {
        let s = settings(GrantType::JwtBearer);
        let err = s
            .check_private_key(&Secret::new("not-a-key-hunter2".into()))
            .unwrap_err();
        assert!(err.contains("RSA private key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = settings(GrantType::ClientCredentials)
            .check_private_key(&Secret::new("x".into()))
            .unwrap_err();
        assert!(err.contains("does not use a private key"), "{err}");
    }
    #[test]
    fn jwt_bearer_request_carries_client_auth_only_with_a_secret() {
        let mut s = settings(GrantType::JwtBearer);
        s.token_params
            .insert("resource".into(), "https://api.example".into());
        let without = jwt_bearer_request(&s, None, "a.b.c").ok().unwrap();
        let body = String::from_utf8(without.body().clone()).unwrap();
        assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"));
        assert!(body.contains("assertion=a.b.c") && body.contains("scope=read"));
        assert!(body.contains("resource=https%3A%2F%2Fapi.example"));
        assert!(without.headers().get(AUTHORIZATION).is_none() && !body.contains("client_id"));
        let secret = Secret::new("s3cret".into());
        let basic = jwt_bearer_request(&s, Some(&secret), "a.b.c").ok().unwrap();
        assert!(
            basic.headers()[AUTHORIZATION]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        s.client_auth = ClientAuth::Body;
        let body_auth = jwt_bearer_request(&s, Some(&secret), "a.b.c").ok().unwrap();
        let body = String::from_utf8(body_auth.body().clone()).unwrap();
        assert!(body.contains("client_id=plugboard") && body.contains("client_secret=s3cret"));
    }
}
