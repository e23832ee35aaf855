//! One token request per grant: `client_credentials` and `jwt_bearer` ask
//! for a new token, `authorization_code` spends the refresh token.

use std::time::SystemTime;

use oauth2::{RefreshToken, Scope};

use super::endpoint::{Exchange, Obtained, parse_token_response, send, token_client};
use super::error::{Failure, TokenError};
use super::jwt::{jwt_bearer_request, sign_assertion};
use super::settings::{GrantType, OAuthSettings};
use crate::outbound::HttpClient;
use crate::secret::Secret;

/// What one token request needs from the [`TokenSource`](super::TokenSource)
/// asking: its credential's name (for errors), settings, secrets and client.
pub(super) struct GrantRequest<'a> {
    pub(super) credential: &'a str,
    pub(super) settings: &'a OAuthSettings,
    pub(super) client_secret: Option<&'a Secret>,
    pub(super) private_key: Option<&'a Secret>,
    pub(super) client: &'a HttpClient,
}

impl GrantRequest<'_> {
    /// Sends the configured grant's token request; `refresh_token` is the
    /// stored one, which only `authorization_code` spends.
    pub(super) async fn request_token(&self, refresh_token: Option<&Secret>) -> Result<Obtained, TokenError> {
        match self.settings.grant {
            GrantType::ClientCredentials => self.client_credentials().await,
            GrantType::JwtBearer => self.jwt_bearer().await,
            GrantType::AuthorizationCode => self.refresh(refresh_token).await,
        }
    }

    async fn client_credentials(&self) -> Result<Obtained, TokenError> {
        if self.client_secret.is_none() {
            return Err(self.unavailable("no `client_secret` is set"));
        }
        let oauth = token_client(self.settings, self.client_secret);
        let mut request = oauth
            .exchange_client_credentials()
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new));
        for (name, value) in &self.settings.token_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let exchange = Exchange::new(self.client);
        let requested_at = SystemTime::now();
        let result = request.request_async(&exchange).await;
        let response = result.map_err(|e| exchange.failure(e).into_error(self.credential, false))?;
        Obtained::from_response(&response, requested_at).map_err(|f| f.into_error(self.credential, false))
    }

    async fn jwt_bearer(&self) -> Result<Obtained, TokenError> {
        let (Some(jwt), Some(key)) = (&self.settings.jwt, self.private_key) else {
            return Err(self.unavailable("no `private_key` is set"));
        };
        let assertion = sign_assertion(self.settings, jwt, key).map_err(|e| self.unavailable(e))?;
        let request = jwt_bearer_request(self.settings, self.client_secret, &assertion)
            .map_err(|f| f.into_error(self.credential, false))?;
        let requested_at = SystemTime::now();
        let response = send(self.client, request)
            .await
            .map_err(|e| Failure::Send(e).into_error(self.credential, false))?;
        let parsed = parse_token_response(&response).map_err(|f| f.into_error(self.credential, false))?;
        Obtained::from_response(&parsed, requested_at).map_err(|f| f.into_error(self.credential, false))
    }

    async fn refresh(&self, refresh_token: Option<&Secret>) -> Result<Obtained, TokenError> {
        let Some(refresh) = refresh_token else {
            return Err(TokenError::ReconnectNeeded {
                credential: self.credential.to_string(),
                detail: "no refresh token is stored: run the consent flow".to_string(),
            });
        };
        let oauth = token_client(self.settings, self.client_secret);
        let refresh = RefreshToken::new(refresh.expose().to_string());
        let mut request = oauth.exchange_refresh_token(&refresh);
        for (name, value) in &self.settings.token_params {
            request = request.add_extra_param(name.as_str(), value.as_str());
        }
        let exchange = Exchange::new(self.client);
        let requested_at = SystemTime::now();
        let result = request.request_async(&exchange).await;
        let response = result.map_err(|e| exchange.failure(e).into_error(self.credential, true))?;
        Obtained::from_response(&response, requested_at).map_err(|f| f.into_error(self.credential, true))
    }

    fn unavailable(&self, detail: impl Into<String>) -> TokenError {
        TokenError::Unavailable {
            credential: self.credential.to_string(),
            detail: detail.into(),
            retryable: false,
        }
    }
}
