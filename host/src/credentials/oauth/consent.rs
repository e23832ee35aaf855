//! The authorization-code grant's consent flow: the authorize URL with PKCE
//! and `state`, and exchanging the code the redirect brings back. The HTTP
//! routes around it are the API's.

use std::time::SystemTime;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use url::Url;

use super::endpoint::{Exchange, Obtained, token_client};
use super::error::TokenError;
use super::settings::{GrantType, OAuthSettings};
use super::source::StoredTokens;
use crate::outbound::HttpClient;
use crate::secret::Secret;
use crate::time::unix_ms;

/// authorization_code: the start of a consent flow. The caller keeps `state`
/// and `pkce_verifier` until the redirect comes back.
#[derive(Debug)]
pub struct PendingAuthorization {
    /// Where to send the person's browser.
    pub authorize_url: Url,
    /// The `state` the redirect must carry back (CSRF protection).
    pub state: String,
    /// The PKCE verifier [`exchange_code`] needs.
    pub pkce_verifier: Secret,
}

/// Starts a consent flow: the authorize URL with PKCE (S256) over a random
/// verifier, a random `state`, the scopes and the extra `authorize_params`.
pub fn start_authorization(
    settings: &OAuthSettings,
    redirect_url: &Url,
) -> Result<PendingAuthorization, String> {
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = CsrfToken::new_random().secret().clone();
    start_authorization_with(
        settings,
        redirect_url,
        state,
        Secret::new(verifier.secret().clone()),
    )
}

/// [`start_authorization`] with the `state` and the PKCE verifier given:
/// ones the caller can derive again when the redirect comes back, so they
/// need not be kept. `state` must be unguessable; the verifier is 43 to 128
/// characters of `[A-Za-z0-9-._~]` (RFC 7636).
pub fn start_authorization_with(
    settings: &OAuthSettings,
    redirect_url: &Url,
    state: String,
    pkce_verifier: Secret,
) -> Result<PendingAuthorization, String> {
    if settings.grant != GrantType::AuthorizationCode {
        return Err(format!(
            "grant `{}` has no consent flow: only `authorization_code` does",
            settings.grant.name()
        ));
    }
    let problems = settings.problems(true);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let authorize_url = settings
        .authorize_url
        .clone()
        .ok_or("`authorize_url` is required for grant `authorization_code`")?;
    let oauth = BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(authorize_url))
        .set_redirect_uri(RedirectUrl::from_url(redirect_url.clone()));
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
        pkce_verifier.expose().to_string(),
    ));
    let mut request = oauth
        .authorize_url(|| CsrfToken::new(state))
        .set_pkce_challenge(challenge)
        .add_scopes(settings.scopes.iter().cloned().map(Scope::new));
    for (name, value) in &settings.authorize_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let (url, state) = request.url();
    Ok(PendingAuthorization {
        authorize_url: url,
        state: state.secret().clone(),
        pkce_verifier,
    })
}

/// Exchanges the code the consent redirect brought back (with the PKCE
/// verifier, the same redirect URL and the client authentication) for the
/// tokens to store. A refresh token is expected; without one the access token
/// alone is stored, and the credential needs reconnecting when it expires.
pub async fn exchange_code(
    credential: &str,
    settings: &OAuthSettings,
    client_secret: Option<&Secret>,
    client: &HttpClient,
    redirect_url: &Url,
    code: &str,
    pkce_verifier: &Secret,
) -> Result<StoredTokens, TokenError> {
    if settings.grant != GrantType::AuthorizationCode {
        return Err(TokenError::Unavailable {
            credential: credential.to_string(),
            detail: format!(
                "grant `{}` has no consent flow: only `authorization_code` does",
                settings.grant.name()
            ),
            retryable: false,
        });
    }
    let oauth =
        token_client(settings, client_secret).set_redirect_uri(RedirectUrl::from_url(redirect_url.clone()));
    let mut request = oauth
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_string()));
    for (name, value) in &settings.token_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let exchange = Exchange::new(client);
    let requested_at = SystemTime::now();
    let result = request.request_async(&exchange).await;
    let response = result.map_err(|e| exchange.failure(e).into_error(credential, false))?;
    let obtained =
        Obtained::from_response(&response, requested_at).map_err(|f| f.into_error(credential, false))?;
    if obtained.refresh_token.is_none() {
        tracing::warn!(
            credential,
            "the token endpoint issued no refresh token: the credential must be reconnected when the access token expires"
        );
    }
    Ok(StoredTokens {
        expires_at_ms: obtained.expires_at().map(unix_ms),
        access_token: Some(obtained.access),
        refresh_token: obtained.refresh_token,
    })
}
