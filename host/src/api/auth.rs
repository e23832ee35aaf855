//! Bearer-token authentication and the two roles, as extractors.
//!
//! `admin` tokens may do everything; `invoker` tokens may only invoke (only
//! the integrations they list, when they list any) and follow the runs they
//! started. Which of these a route allows is part of its handler's
//! signature, not a check its body must remember:
//! - [`AdminToken`]: admin tokens only (invokers get 403);
//! - [`InvokeGrant`]: a token that may invoke the integration named in the
//!   path (`/v1/integrations/{name}/...`);
//! - [`RunReader`]: any valid token; the handler reads the run and asks
//!   [`RunReader::may_follow`], which answers 404 for another invoker's run.
//!
//! A handler with none of them has no token check at all (health,
//! readiness, the OAuth browser callback): the route-walk test in the suite
//! lists every route with the answers each kind of token must get.
//! Tokens are stored hashed by [`crate::store`]; this module only reads
//! the header and asks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use sha2::{Digest, Sha256};

use crate::store::{Role, TokenRecord};

/// How long a verified token is trusted from memory before the store is
/// asked again: a token revoked by another process (`plugboard tokens
/// revoke`) is refused at most this much later.
pub const TOKEN_CHECK_FOR: Duration = Duration::from_millis(500);

/// Most tokens remembered at once; past it the memory starts over.
const MAX_REMEMBERED: usize = 10_000;

/// Tokens verified recently, by the SHA-256 of their secret (never the
/// secret itself). Only valid tokens are remembered: an unknown token is
/// looked up every time, so guessing cannot fill the memory.
#[derive(Default)]
pub struct TokenCache {
    verified: Mutex<HashMap<[u8; 32], (Instant, TokenRecord)>>,
}

impl TokenCache {
    fn get(&self, digest: &[u8; 32]) -> Option<TokenRecord> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        match verified.get(digest) {
            Some((at, token)) if at.elapsed() < TOKEN_CHECK_FOR => Some(token.clone()),
            _ => None,
        }
    }

    fn put(&self, digest: [u8; 32], token: TokenRecord) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, (at, _)| at.elapsed() < TOKEN_CHECK_FOR);
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(digest, (Instant::now(), token));
    }
}

/// The token of a request: from [`TokenCache`] when verified less than
/// [`TOKEN_CHECK_FOR`] ago, else checked against the store on a blocking
/// thread.
async fn authenticate(parts: &Parts, state: &Arc<AppState>) -> Result<TokenRecord, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the `Authorization` header must be `Bearer <token>`"))?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if let Some(known) = state.tokens.get(&digest) {
        return Ok(known);
    }
    let store = state.store.clone();
    let token = token.to_string();
    let record = super::blocking("the token check", move || store.verify_token(&token)).await?;
    let record = record.ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
    state.tokens.put(digest, record.clone());
    Ok(record)
}

/// An admin token: the route refuses every other token with 403.
#[derive(Debug, Clone)]
pub struct AdminToken(pub TokenRecord);

impl FromRequestParts<Arc<AppState>> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = authenticate(parts, state).await?;
        match token.role {
            Role::Admin => Ok(AdminToken(token)),
            Role::Invoker => Err(ApiError::forbidden(format!(
                "token `{}` has the `invoker` role; this needs an `admin` token",
                token.name
            ))),
        }
    }
}

/// A token that may invoke the integration named in the path.
#[derive(Debug, Clone)]
pub struct InvokeGrant {
    /// The token.
    pub token: TokenRecord,
    /// The integration it may invoke (the path's `{name}`).
    pub integration: String,
}

impl InvokeGrant {
    /// Whether this is an admin token (admins may test-invoke drafts).
    pub fn is_admin(&self) -> bool {
        self.token.role == Role::Admin
    }
}

/// Whether `token` may invoke `integration`.
fn may_invoke(token: &TokenRecord, integration: &str) -> bool {
    match (&token.role, &token.integrations) {
        (Role::Admin, _) | (Role::Invoker, None) => true,
        (Role::Invoker, Some(list)) => list.iter().any(|i| i == integration),
    }
}

impl FromRequestParts<Arc<AppState>> for InvokeGrant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = authenticate(parts, state).await?;
        let Path(integration) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        if !may_invoke(&token, &integration) {
            return Err(ApiError::forbidden(format!(
                "token `{}` may not invoke integration `{integration}`",
                token.name
            )));
        }
        Ok(InvokeGrant { token, integration })
    }
}

/// Any valid token, on a route about one run: admins may read every run,
/// invokers only the runs they started.
#[derive(Debug, Clone)]
pub struct RunReader(pub TokenRecord);

impl RunReader {
    /// Refuses unless the token is an admin token or `owner` (the token that
    /// started run `id`). Another invoker's run answers 404, as a missing
    /// one does, so run ids cannot be probed.
    pub fn may_follow(&self, owner: Option<&str>, id: &str) -> Result<(), ApiError> {
        if self.is_admin() || owner == Some(self.0.id.as_str()) {
            return Ok(());
        }
        Err(ApiError::not_found(format!("no run `{id}`")))
    }

    /// Whether this is an admin token.
    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }
}

impl FromRequestParts<Arc<AppState>> for RunReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        Ok(RunReader(authenticate(parts, state).await?))
    }
}

/// Any valid token, on a route every token may use (the API document).
#[derive(Debug, Clone)]
pub struct AnyToken(pub TokenRecord);

impl FromRequestParts<Arc<AppState>> for AnyToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        Ok(AnyToken(authenticate(parts, state).await?))
    }
}
