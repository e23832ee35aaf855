//! A credential's grant settings as configured, and their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

/// Longest assertion lifetime accepted: RFC 7523 assertions are meant to be
/// short-lived, and most providers refuse anything over an hour.
const MAX_JWT_LIFETIME_SECS: u64 = 3600;
/// Token request parameters the grants set themselves.
const RESERVED_TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "assertion",
    "code",
    "code_verifier",
    "redirect_uri",
    "refresh_token",
];
/// Authorize request parameters the consent flow sets itself.
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
];

/// The OAuth 2.0 grant a credential obtains its access tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `grant = "client_credentials"`: the client's own id and secret (RFC 6749 section 4.4).
    ClientCredentials,
    /// `grant = "jwt_bearer"`: a JWT signed with the credential's private key (RFC 7523).
    JwtBearer,
    /// `grant = "authorization_code"`: a person consents once; the refresh
    /// token obtained then keeps the credential working (RFC 6749 section 4.1, PKCE).
    AuthorizationCode,
}

impl GrantType {
    /// The grant's name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::JwtBearer => "jwt_bearer",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}

/// How `client_id` and `client_secret` reach the token endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_auth = "basic"`: HTTP Basic (`client_secret_basic`), the default.
    #[default]
    Basic,
    /// `client_auth = "body"`: form fields of the request (`client_secret_post`).
    Body,
}

/// The algorithm a JWT bearer assertion is signed with; named as in JOSE.
#[allow(clippy::upper_case_acronyms)] // JOSE's own names, as written in configuration
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// `algorithm = "RS256"`: RSA PKCS#1 v1.5 with SHA-256, the default.
    #[default]
    RS256,
    /// `algorithm = "RS512"`: RSA PKCS#1 v1.5 with SHA-512.
    RS512,
    /// `algorithm = "ES256"`: ECDSA on P-256 with SHA-256.
    ES256,
}

/// The signed assertion of the `jwt_bearer` grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// `algorithm = "RS256"` (or `RS512`, `ES256`).
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// `issuer = "svc@project.iam"`: the `iss` claim; `client_id` when unset.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `subject = "svc@project.iam"`: the `sub` claim (the account acted as).
    pub subject: String,
    /// `audience = "https://login.example/token"`: the `aud` claim.
    pub audience: String,
    /// `lifetime_secs = 120`: the assertion's lifetime (`exp - iat`).
    #[serde(default = "default_jwt_lifetime")]
    pub lifetime_secs: u64,
    /// `key_id = "k1"`: the header's `kid`, for providers holding several keys.
    #[serde(default)]
    pub key_id: Option<String>,
}

fn default_jwt_lifetime() -> u64 {
    120
}

fn default_refresh_before() -> u64 {
    60
}

// `url::Url` (de)serializes through url's `serde` feature, which oauth2 enables.
/// How a credential obtains OAuth 2.0 access tokens. Not secret: the client
/// secret and private key are the credential's secrets, by name (see
/// [`OAuthSettings::secret_names`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// `grant = "client_credentials"` (or `jwt_bearer`, `authorization_code`).
    pub grant: GrantType,
    /// `token_url = "https://login.example/oauth/token"`.
    pub token_url: Url,
    /// `authorize_url = "https://login.example/oauth/authorize"`: the consent
    /// screen; `authorization_code` only, and required there.
    #[serde(default)]
    pub authorize_url: Option<Url>,
    /// `client_id = "plugboard"`.
    pub client_id: String,
    /// `client_auth = "basic"` (or `body`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// `scopes = ["read", "write"]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `token_params = { audience = "https://api.example" }`: extra token request parameters.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// `authorize_params = { prompt = "consent", access_type = "offline" }`: extra authorize parameters.
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// `refresh_on = [403]`: statuses besides 401 by which the API says the token expired.
    #[serde(default)]
    pub refresh_on: Vec<u16>,
    /// `refresh_before_secs = 60`: renew a token this long before it expires
    /// (never more than half its lifetime, so short-lived tokens are still used).
    #[serde(default = "default_refresh_before")]
    pub refresh_before_secs: u64,
    /// `[auth.jwt]`: the assertion; `jwt_bearer` only, and required there.
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
}

impl OAuthSettings {
    /// Every problem with these settings, each naming its field: a missing
    /// `authorize_url` for `authorization_code`, `jwt` missing for
    /// `jwt_bearer` or present for another grant, an empty `client_id`, an
    /// endpoint that is not https (plain http only with `allow_http`), a
    /// parameter the grant sets itself, and so on. The private key is checked
    /// separately, by [`OAuthSettings::check_private_key`].
    pub fn problems(&self, allow_http: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let grant = self.grant.name();
        if self.client_id.trim().is_empty() {
            problems.push("`client_id` must not be empty".to_string());
        }
        check_endpoint("token_url", &self.token_url, allow_http, &mut problems);
        match (self.grant, &self.authorize_url) {
            (GrantType::AuthorizationCode, None) => {
                problems.push("`authorize_url` is required for grant `authorization_code`".to_string())
            }
            (GrantType::AuthorizationCode, Some(url)) => {
                check_endpoint("authorize_url", url, allow_http, &mut problems)
            }
            (_, Some(_)) => problems.push(format!(
                "`authorize_url` is only used by grant `authorization_code`, not `{grant}`"
            )),
            (_, None) => {}
        }
        if self.grant != GrantType::AuthorizationCode && !self.authorize_params.is_empty() {
            problems.push(format!(
                "`authorize_params` are only used by grant `authorization_code`, not `{grant}`"
            ));
        }
        match (self.grant, &self.jwt) {
            (GrantType::JwtBearer, None) => {
                problems.push("`jwt` settings are required for grant `jwt_bearer`".to_string())
            }
            (GrantType::JwtBearer, Some(jwt)) => jwt.check(&mut problems),
            (_, Some(_)) => problems.push(format!(
                "`jwt` settings are only used by grant `jwt_bearer`, not `{grant}`"
            )),
            (_, None) => {}
        }
        for scope in &self.scopes {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                problems.push(format!(
                    "`scopes` entry `{scope}` must be one word: list each scope separately"
                ));
            }
        }
        check_params(
            "token_params",
            &self.token_params,
            RESERVED_TOKEN_PARAMS,
            &mut problems,
        );
        check_params(
            "authorize_params",
            &self.authorize_params,
            RESERVED_AUTHORIZE_PARAMS,
            &mut problems,
        );
        for status in &self.refresh_on {
            if !(400..=599).contains(status) {
                problems.push(format!(
                    "`refresh_on` status `{status}` is not an error status (400-599)"
                ));
            }
        }
        problems
    }

    /// The secrets this grant uses, each with whether it is required:
    /// `client_credentials` needs `client_secret`; `jwt_bearer` needs
    /// `private_key` and may add `client_secret`; `authorization_code` may use
    /// `client_secret` (public clients rely on PKCE alone). The tokens the
    /// consent flow stores (`access_token`, `refresh_token`) are not listed.
    pub fn secret_names(&self) -> Vec<(&'static str, bool)> {
        match self.grant {
            GrantType::ClientCredentials => vec![("client_secret", true)],
            GrantType::JwtBearer => vec![("private_key", true), ("client_secret", false)],
            GrantType::AuthorizationCode => vec![("client_secret", false)],
        }
    }
}

impl JwtSettings {
    fn check(&self, problems: &mut Vec<String>) {
        if self.subject.trim().is_empty() {
            problems.push("`jwt.subject` must not be empty".to_string());
        }
        if self.audience.trim().is_empty() {
            problems.push("`jwt.audience` must not be empty".to_string());
        }
        if self.issuer.as_deref().is_some_and(|i| i.trim().is_empty()) {
            problems.push("`jwt.issuer` must not be empty when set (leave it out to use `client_id`)".into());
        }
        if self.key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
            problems.push("`jwt.key_id` must not be empty when set".to_string());
        }
        if !(1..=MAX_JWT_LIFETIME_SECS).contains(&self.lifetime_secs) {
            problems.push(format!(
                "`jwt.lifetime_secs` is `{}`: it must be between 1 and {MAX_JWT_LIFETIME_SECS}",
                self.lifetime_secs
            ));
        }
    }
}

/// Checks an endpoint URL: https (plain http only with `allow_http`), no
/// user info (it would be sent along), no fragment.
fn check_endpoint(field: &str, url: &Url, allow_http: bool, problems: &mut Vec<String>) {
    if !url.username().is_empty() || url.password().is_some() {
        // The URL is not quoted: its user info may be a password.
        problems.push(format!("`{field}` must not contain a user name or password"));
        return;
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => problems.push(format!(
            "`{field}` `{url}` uses plain http: use https, or set `allow_http = true` for a system on a trusted local network"
        )),
        _ => problems.push(format!("`{field}` `{url}` must be an https URL")),
    }
    if url.fragment().is_some() {
        problems.push(format!("`{field}` `{url}` must not have a fragment"));
    }
}

fn check_params(field: &str, params: &BTreeMap<String, String>, reserved: &[&str], out: &mut Vec<String>) {
    for name in params.keys() {
        if name.is_empty() {
            out.push(format!("`{field}` has an empty parameter name"));
        } else if reserved.contains(&name.as_str()) {
            out.push(format!("`{field}` cannot set `{name}`: the grant sets it itself"));
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::credentials::oauth) fn settings(grant: GrantType) -> OAuthSettings {
        OAuthSettings {
            grant,
            token_url: Url::parse("https://login.example/token").unwrap(),
            authorize_url: (grant == GrantType::AuthorizationCode)
                .then(|| Url::parse("https://login.example/authorize").unwrap()),
            client_id: "plugboard".into(),
            client_auth: ClientAuth::Basic,
            scopes: vec!["read".into()],
            token_params: BTreeMap::new(),
            authorize_params: BTreeMap::new(),
            refresh_on: vec![],
            refresh_before_secs: 60,
            jwt: (grant == GrantType::JwtBearer).then(|| JwtSettings {
                algorithm: JwtAlgorithm::RS256,
                issuer: None,
                subject: "svc".into(),
                audience: "https://login.example/token".into(),
                lifetime_secs: 120,
                key_id: None,
            }),
        }
    }

    fn has(problems: &[String], needle: &str) -> bool {
        problems.iter().any(|p| p.contains(needle))
    }
    #[test]
    fn complete_settings_have_no_problems() {
        for grant in [
            GrantType::ClientCredentials,
            GrantType::JwtBearer,
            GrantType::AuthorizationCode,
        ] {
            assert_eq!(settings(grant).problems(false), Vec::<String>::new(), "{grant:?}");
        }
    }
    #[test]
    fn authorization_code_needs_an_authorize_url() {
        let mut s = settings(GrantType::AuthorizationCode);
        s.authorize_url = None;
        assert!(has(&s.problems(false), "`authorize_url` is required"));
    }
    #[test]
    fn jwt_settings_belong_to_jwt_bearer_only() {
        let mut s = settings(GrantType::JwtBearer);
        s.jwt = None;
        assert!(has(&s.problems(false), "`jwt` settings are required"));
        let mut s = settings(GrantType::ClientCredentials);
        s.jwt = settings(GrantType::JwtBearer).jwt;
        s.authorize_url = Some(Url::parse("https://login.example/authorize").unwrap());
        let problems = s.problems(false);
        assert!(has(
            &problems,
            "`jwt` settings are only used by grant `jwt_bearer`, not `client_credentials`"
        ));
        assert!(has(&problems, "`authorize_url` is only used"));
    }
    #[test]
    fn empty_client_id_is_named() {
        let mut s = settings(GrantType::ClientCredentials);
        s.client_id = " ".into();
        assert_eq!(
            s.problems(false),
            vec!["`client_id` must not be empty".to_string()]
        );
    }
    #[test]
    fn plain_http_token_url_needs_allow_http() {
        let mut s = settings(GrantType::ClientCredentials);
        s.token_url = Url::parse("http://127.0.0.1:8080/token").unwrap();
        assert!(has(
            &s.problems(false),
            "`token_url` `http://127.0.0.1:8080/token` uses plain http"
        ));
        assert!(s.problems(true).is_empty());
        s.token_url = Url::parse("ftp://login.example/token").unwrap();
        assert!(has(&s.problems(true), "must be an https URL"));
    }
    #[test]
    fn user_info_in_an_endpoint_is_refused_without_quoting_it() {
        let mut s = settings(GrantType::ClientCredentials);
        s.token_url = Url::parse("https://me:hunter2@login.example/token").unwrap();
        let problems = s.problems(false);
        assert!(has(
            &problems,
            "`token_url` must not contain a user name or password"
        ));
        assert!(!problems.join(" ").contains("hunter2"));
    }
    #[test]
    fn parameters_the_grant_sets_cannot_be_overridden() {
        let mut s = settings(GrantType::AuthorizationCode);
        s.token_params.insert("grant_type".into(), "password".into());
        s.token_params
            .insert("audience".into(), "https://api.example".into());
        s.authorize_params
            .insert("redirect_uri".into(), "https://evil.example".into());
        s.authorize_params.insert("prompt".into(), "consent".into());
        let problems = s.problems(false);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(has(&problems, "`token_params` cannot set `grant_type`"));
        assert!(has(&problems, "`authorize_params` cannot set `redirect_uri`"));
    }
    #[test]
    fn jwt_fields_are_checked() {
        let mut s = settings(GrantType::JwtBearer);
        let jwt = s.jwt.as_mut().unwrap();
        jwt.subject.clear();
        jwt.audience.clear();
        jwt.lifetime_secs = 0;
        jwt.key_id = Some(String::new());
        let problems = s.problems(false);
        for field in ["jwt.subject", "jwt.audience", "jwt.lifetime_secs", "jwt.key_id"] {
            assert!(has(&problems, &format!("`{field}`")), "{field}: {problems:?}");
        }
    }
    #[test]
    fn odd_scopes_and_statuses_are_named() {
        let mut s = settings(GrantType::ClientCredentials);
        s.scopes = vec!["read write".into()];
        s.refresh_on = vec![403, 200];
        let problems = s.problems(false);
        assert!(has(&problems, "`scopes` entry `read write`"));
        assert!(has(&problems, "`refresh_on` status `200`"));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
    #[test]
    fn secret_names_follow_the_grant() {
        assert_eq!(
            settings(GrantType::ClientCredentials).secret_names(),
            vec![("client_secret", true)]
        );
        assert_eq!(
            settings(GrantType::JwtBearer).secret_names(),
            vec![("private_key", true), ("client_secret", false)]
        );
        assert_eq!(
            settings(GrantType::AuthorizationCode).secret_names(),
            vec![("client_secret", false)]
        );
    }
    #[test]
    fn settings_deserialize_with_defaults_and_refuse_unknown_fields() {
        let s: OAuthSettings = serde_json::from_value(serde_json::json!({
            "grant": "jwt_bearer", "token_url": "https://login.example/token", "client_id": "c",
            "jwt": {"subject": "svc", "audience": "aud"}
        }))
        .unwrap();
        assert_eq!(s.client_auth, ClientAuth::Basic);
        assert_eq!(s.refresh_before_secs, 60);
        let jwt = s.jwt.unwrap();
        assert_eq!((jwt.algorithm, jwt.lifetime_secs), (JwtAlgorithm::RS256, 120));
        let err = serde_json::from_value::<OAuthSettings>(serde_json::json!({
            "grant": "client_credentials", "token_url": "https://login.example/token", "client_id": "c",
            "client_secret": "hunter2"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `client_secret`"), "{err}");
    }
}
