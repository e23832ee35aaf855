//! Bearer-token authentication and the two roles.
//!
//! `admin` tokens may do everything; `invoker` tokens may only invoke, and
//! only the integrations they list when they list any. Tokens are stored
//! hashed by [`crate::store`]; this module only reads the header and asks.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::store::{Role, TokenRecord};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub TokenRecord);

impl Authenticated {
    /// Refuses unless the token is an admin token.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.0.role {
            Role::Admin => Ok(()),
            Role::Invoker => Err(ApiError::forbidden(format!(
                "token `{}` has the `invoker` role; this needs an `admin` token",
                self.0.name
            ))),
        }
    }

    /// Refuses unless the token is an admin token or `owner` (the token that
    /// started run `id`). Another invoker's run answers 404, as a missing
    /// one does, so run ids cannot be probed.
    pub fn may_follow(&self, owner: Option<&str>, id: &str) -> Result<(), ApiError> {
        if self.is_admin() || owner == Some(self.0.id.as_str()) {
            return Ok(());
        }
        Err(ApiError::not_found(format!("no run `{id}`")))
    }

    /// Refuses unless the token may invoke `integration`.
    pub fn require_invoke(&self, integration: &str) -> Result<(), ApiError> {
        let allowed = match (&self.0.role, &self.0.integrations) {
            (Role::Admin, _) | (Role::Invoker, None) => true,
            (Role::Invoker, Some(list)) => list.iter().any(|i| i == integration),
        };
        if allowed {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "token `{}` may not invoke integration `{integration}`",
            self.0.name
        )))
    }

    /// Whether this is an admin token.
    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }
}

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
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
        let store = state.store.clone();
        let token = token.to_string();
        let record = super::blocking("the token check", move || store.verify_token(&token)).await?;
        record
            .map(Authenticated)
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))
    }
}
