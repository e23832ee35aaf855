//! OAuth 2.0 access tokens for named credentials: client credentials, JWT
//! bearer assertions (RFC 7523) and the authorization-code flow with PKCE.
//!
//! This module owns a credential's grant settings and their validation, the
//! requests to the token endpoint, and [`TokenSource`], the per-credential
//! token cache the callout policy asks for a bearer token. It leaves to
//! others: sealing and storing the tokens of the authorization-code flow (the
//! caller, through [`TokenPersist`]), the consent flow's HTTP routes (they call
//! [`start_authorization`] and [`exchange_code`]), and putting the token on a
//! request (the callout policy).
//!
//! Token endpoints are reached through the credential's own pooled client,
//! never following a redirect (a redirected token request would carry the
//! client's secret to wherever the redirect points), with each exchange capped
//! at [`TOKEN_TIMEOUT`] and each answer at [`MAX_TOKEN_RESPONSE_BYTES`]. No
//! secret, token, assertion or code appears in an error, a log line or `Debug`
//! output: errors quote only the status and a registered OAuth error code
//! ([`quotable_error_code`]), never the endpoint's free text.

mod consent;
mod endpoint;
mod error;
mod grants;
mod jwt;
mod settings;
mod source;

use std::time::Duration;

pub use consent::{PendingAuthorization, exchange_code, start_authorization, start_authorization_with};
pub use error::{TokenError, quotable_error_code};
pub use settings::{ClientAuth, GrantType, JwtAlgorithm, JwtSettings, OAuthSettings};
pub use source::{
    AccessToken, FORCED_REFRESH_INTERVAL, StoredTokens, TokenPersist, TokenSource, TokenStatus,
};

/// Longest one token-endpoint exchange may take, connection included: a
/// callout waits for its token, so a hung identity provider must not hold it
/// for the credential's whole timeout.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token-endpoint answer read; real ones are a few hundred bytes.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;
