//! The token endpoint client: oauth2's HTTP client over the credential's
//! pooled client (no redirects, a timeout, a size cap), the oauth2 client
//! with the configured client authentication, and reading its answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, TokenResponse, TokenUrl,
};

use super::error::{Failure, SendError};
use super::settings::{ClientAuth, OAuthSettings};
use super::{MAX_TOKEN_RESPONSE_BYTES, TOKEN_TIMEOUT};
use crate::outbound::HttpClient;
use crate::secret::Secret;

/// What one successful token request produced.
pub(super) struct Obtained {
    pub(super) access: Secret,
    pub(super) expires_in: Option<Duration>,
    pub(super) refresh_token: Option<Secret>,
    /// When the request was sent: the expiry counts from then, erring early.
    pub(super) requested_at: SystemTime,
}

impl Obtained {
    pub(super) fn from_response(
        response: &BasicTokenResponse,
        requested_at: SystemTime,
    ) -> Result<Obtained, Failure> {
        if response.access_token().secret().is_empty() {
            return Err(Failure::Malformed {
                status: 200,
                what: "an empty `access_token`".into(),
            });
        }
        Ok(Obtained {
            access: Secret::new(response.access_token().secret().clone()),
            expires_in: response.expires_in(),
            refresh_token: response.refresh_token().map(|t| Secret::new(t.secret().clone())),
            requested_at,
        })
    }

    pub(super) fn expires_at(&self) -> Option<SystemTime> {
        self.expires_in.map(|d| self.requested_at + d)
    }
}

/// An oauth2 client for the token endpoint with the configured client authentication.
type TokenClient = BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub(super) fn token_client(settings: &OAuthSettings, client_secret: Option<&Secret>) -> TokenClient {
    let auth_type = match settings.client_auth {
        ClientAuth::Basic => AuthType::BasicAuth,
        ClientAuth::Body => AuthType::RequestBody,
    };
    let mut oauth = BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_token_uri(TokenUrl::from_url(settings.token_url.clone()))
        .set_auth_type(auth_type);
    if let Some(secret) = client_secret {
        oauth = oauth.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }
    oauth
}

/// Reads a token endpoint's answer with oauth2's types.
pub(super) fn parse_token_response(response: &oauth2::HttpResponse) -> Result<BasicTokenResponse, Failure> {
    let status = response.status().as_u16();
    let body = response.body().as_slice();
    if status == 200 {
        // serde_json's messages can quote values (the token itself): keep only the kind.
        return serde_json::from_slice(body).map_err(|_| Failure::Malformed {
            status,
            what: "a body that is not an OAuth token response".into(),
        });
    }
    match serde_json::from_slice::<BasicErrorResponse>(body) {
        Ok(error) => Err(Failure::Refused { status, error }),
        Err(_) => Err(Failure::Malformed {
            status,
            what: "a body that is not an OAuth error response".into(),
        }),
    }
}

/// oauth2's HTTP client over the credential's pooled client. It remembers the
/// last status, which oauth2 drops when an error answer does not parse.
pub(super) struct Exchange<'a> {
    client: &'a HttpClient,
    status: AtomicU16,
}

impl<'a> Exchange<'a> {
    pub(super) fn new(client: &'a HttpClient) -> Exchange<'a> {
        Exchange {
            client,
            status: AtomicU16::new(0),
        }
    }

    pub(super) fn failure(&self, error: RequestTokenError<SendError, BasicErrorResponse>) -> Failure {
        let status = self.status.load(Ordering::Relaxed);
        match error {
            RequestTokenError::ServerResponse(error) => Failure::Refused { status, error },
            RequestTokenError::Request(e) => Failure::Send(e),
            // The body is not quoted (a 200 body holds the token); the path of
            // the field that did not parse is.
            RequestTokenError::Parse(e, _) if status == 200 => Failure::Malformed {
                status,
                what: format!("a body that is not an OAuth token response (at `{}`)", e.path()),
            },
            RequestTokenError::Parse(..) => Failure::Malformed {
                status,
                what: "a body that is not an OAuth error response".into(),
            },
            // oauth2's own words (an empty body, a content type that is not JSON).
            RequestTokenError::Other(what) => Failure::Malformed { status, what },
        }
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for Exchange<'_> {
    type Error = SendError;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, SendError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = send(self.client, request).await?;
            self.status.store(response.status().as_u16(), Ordering::Relaxed);
            Ok(response)
        })
    }
}

/// Sends one request to a token endpoint: no redirects, [`TOKEN_TIMEOUT`],
/// at most [`MAX_TOKEN_RESPONSE_BYTES`] read.
pub(super) async fn send(
    client: &HttpClient,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, SendError> {
    // Errors name the origin only: never a path or query, never user info.
    let uri = request.uri();
    let origin = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.host().unwrap_or("?"),
        uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let request = request.map(|body| Full::new(Bytes::from(body)));
    let exchange = async {
        let response = client.request(request).await.map_err(|e| SendError::Connect {
            origin: origin.clone(),
            cause: root_cause(&e),
        })?;
        let (parts, body) = response.into_parts();
        if parts.status.is_redirection() {
            return Err(SendError::Redirect {
                origin: origin.clone(),
                status: parts.status.as_u16(),
            });
        }
        let body = Limited::new(body, MAX_TOKEN_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    SendError::TooLarge {
                        origin: origin.clone(),
                    }
                } else {
                    SendError::Connect {
                        origin: origin.clone(),
                        cause: format!("reading the answer failed: {e}"),
                    }
                }
            })?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    };
    tokio::time::timeout(TOKEN_TIMEOUT, exchange)
        .await
        .map_err(|_| SendError::Timeout {
            origin: origin.clone(),
        })?
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
