//! [`TokenSource`], one credential's token cache: renewal before expiry, a
//! single token request in flight, refusals that force a new token, and the
//! sticky "reconnect needed" state of the authorization-code grant.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::endpoint::Obtained;
use super::error::TokenError;
use super::grants::GrantRequest;
use super::settings::{GrantType, OAuthSettings};
use crate::outbound::HttpClient;
use crate::secret::Secret;
use crate::time::unix_ms;

/// Tokens the authorization-code flow stores (sealed by the caller), so the
/// credential survives restarts.
#[derive(Clone, Debug, Default)]
pub struct StoredTokens {
    /// The last access token.
    pub access_token: Option<Secret>,
    /// The refresh token, which obtains new access tokens.
    pub refresh_token: Option<Secret>,
    /// When the access token expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// Where a [`TokenSource`] persists the tokens it obtains by refresh: a
/// provider that rotates refresh tokens invalidates the old one, so the new
/// one must be saved before the next restart.
pub trait TokenPersist: Send + Sync + 'static {
    /// Saves the tokens after a refresh (the refresh token is the newest one).
    fn save(&self, tokens: &StoredTokens) -> Result<(), String>;
    /// The refresh token was refused or none is stored: someone must run the
    /// consent flow again. `reason` is safe to show.
    fn reconnect_needed(&self, reason: &str);
}

/// An access token with its expiry.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The bearer token.
    pub value: Secret,
    /// When it expires, if the token endpoint said.
    pub expires_at: Option<SystemTime>,
    /// Which token of this source it is (1, 2, ...): tells a caller holding a
    /// refused token whether another caller already replaced it.
    pub generation: u64,
}

/// A credential's token state, for status pages.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenStatus {
    /// `no_token`, `valid`, `expired` or `reconnect_needed`.
    pub state: &'static str,
    /// When the current token expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The last error, or why reconnecting is needed.
    pub detail: Option<String>,
}

/// A token the source holds, with when to stop handing it out.
struct Cached {
    token: AccessToken,
    /// From this moment on the token is renewed instead of used; `None` when
    /// its expiry is unknown (it is used until an API refuses it).
    renew_at: Option<SystemTime>,
}

#[derive(Default)]
struct TokenState {
    current: Option<Cached>,
    refresh_token: Option<Secret>,
    generation: u64,
    /// Token requests completed. A caller that waited for the request in
    /// flight sees it changed and shares that request's result.
    attempts: u64,
    last_error: Option<TokenError>,
    /// Set once the refresh token is refused or missing; sticky, because no
    /// request can succeed until the consent flow runs again.
    reconnect: Option<String>,
    /// When a refusal last made this source request a token.
    last_forced: Option<std::time::Instant>,
}

/// Least time between two token requests forced by an API refusing a token.
/// A token refused right after it was issued is almost never expired: the
/// plugin is calling something the token cannot reach, and a new token would
/// be refused too. Without this bound a plugin could make the host request a
/// token on every callout, tripping the identity provider's own limits (and,
/// with a rotating refresh token, risk the credential).
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

impl TokenState {
    fn fresh(&self, now: SystemTime) -> Option<AccessToken> {
        let cached = self.current.as_ref()?;
        cached
            .renew_at
            .is_none_or(|at| now < at)
            .then(|| cached.token.clone())
    }
}

/// One credential's token cache. Reads are cheap; at most one token request
/// is in flight: concurrent callers wait for it and share its result, so 50
/// callers around an expiry cause one request.
pub struct TokenSource {
    credential: String,
    settings: OAuthSettings,
    client_secret: Option<Secret>,
    private_key: Option<Secret>,
    client: HttpClient,
    persist: Arc<dyn TokenPersist>,
    /// A std mutex: held only to read or swap a few fields, never across an await.
    state: Mutex<TokenState>,
    /// A tokio mutex: held across the token request, which makes it single flight.
    flight: tokio::sync::Mutex<()>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credential", &self.credential)
            .field("grant", &self.settings.grant)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `credential`, starting from the `stored` tokens (those of
    /// the authorization-code flow; empty for the other grants).
    pub fn new(
        credential: &str,
        settings: OAuthSettings,
        client_secret: Option<Secret>,
        private_key: Option<Secret>,
        stored: StoredTokens,
        client: HttpClient,
        persist: Arc<dyn TokenPersist>,
    ) -> TokenSource {
        let before = Duration::from_secs(settings.refresh_before_secs);
        let mut state = TokenState {
            refresh_token: stored.refresh_token,
            ..TokenState::default()
        };
        if let Some(value) = stored.access_token {
            let expires_at = stored.expires_at_ms.map(crate::time::from_unix_ms);
            state.generation = 1;
            state.current = Some(Cached {
                token: AccessToken {
                    value,
                    expires_at,
                    generation: 1,
                },
                // A stored token's lifetime is unknown: renew it the full margin early.
                renew_at: renew_at(expires_at, None, before),
            });
        }
        TokenSource {
            credential: credential.to_string(),
            settings,
            client_secret,
            private_key,
            client,
            persist,
            state: Mutex::new(state),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    /// A valid token: the cached one unless it expires within
    /// `refresh_before_secs` (capped at half its lifetime), else a new one
    /// (`client_credentials` and `jwt_bearer` request one; `authorization_code`
    /// uses the refresh token, and with none stored answers
    /// [`TokenError::ReconnectNeeded`]).
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let seen = {
            let state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now()) {
                return Ok(token);
            }
            if let Some(detail) = &state.reconnect {
                return Err(self.reconnect_error(detail));
            }
            state.attempts
        };
        let _flight = self.flight.lock().await;
        {
            let state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now()) {
                return Ok(token);
            }
            if let Some(shared) = self.shared_failure(&state, seen) {
                return Err(shared);
            }
        }
        self.obtain().await
    }

    /// The upstream refused `rejected` (401, or a status in `refresh_on`): get
    /// a new token, unless another caller already replaced it (its generation
    /// differs), in which case the current one is returned. Many concurrent
    /// callers with the same refused token still cause one request.
    pub async fn refresh_rejected(&self, rejected: &AccessToken) -> Result<AccessToken, TokenError> {
        let seen = {
            let state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now())
                && token.generation != rejected.generation
            {
                return Ok(token);
            }
            state.attempts
        };
        let _flight = self.flight.lock().await;
        {
            let mut state = self.lock();
            if let Some(token) = state.fresh(SystemTime::now())
                && token.generation != rejected.generation
            {
                return Ok(token);
            }
            if let Some(shared) = self.shared_failure(&state, seen) {
                return Err(shared);
            }
            // The refused token must not be handed out again, even if the
            // request below fails.
            if state
                .current
                .as_ref()
                .is_some_and(|c| c.token.generation == rejected.generation)
            {
                state.current = None;
            }
            state.last_forced = Some(std::time::Instant::now());
        }
        self.obtain().await
    }

    /// Whether a refusal of `rejected` may make this source request a new
    /// token: not when a refusal already did within
    /// [`FORCED_REFRESH_INTERVAL`] and `rejected` is still the newest token.
    /// (A refused token that was replaced meanwhile, or whose replacement is
    /// being requested, costs no request.)
    pub fn may_force_refresh(&self, rejected: &AccessToken) -> bool {
        let state = self.lock();
        let replaced = state
            .current
            .as_ref()
            .is_some_and(|c| c.token.generation != rejected.generation);
        // A refresh under way is joined, not repeated: it costs no request.
        let in_flight = state.current.is_none() && self.flight.try_lock().is_err();
        replaced
            || in_flight
            || state
                .last_forced
                .is_none_or(|at| at.elapsed() >= FORCED_REFRESH_INTERVAL)
    }

    /// Requests a new token now, whatever the cache holds (the connection test).
    pub async fn fetch_new(&self) -> Result<AccessToken, TokenError> {
        let _flight = self.flight.lock().await;
        self.obtain().await
    }

    /// The token state, for status pages.
    pub fn status(&self) -> TokenStatus {
        let state = self.lock();
        let expires_at = state.current.as_ref().and_then(|c| c.token.expires_at);
        let expires_at_ms = expires_at.map(unix_ms);
        if let Some(detail) = &state.reconnect {
            return TokenStatus {
                state: "reconnect_needed",
                expires_at_ms,
                detail: Some(detail.clone()),
            };
        }
        let detail = state.last_error.as_ref().map(ToString::to_string);
        let name = match (&state.current, expires_at) {
            (None, _) => "no_token",
            (Some(_), Some(at)) if at <= SystemTime::now() => "expired",
            (Some(_), _) => "valid",
        };
        TokenStatus {
            state: name,
            expires_at_ms,
            detail,
        }
    }

    /// The settings this source was made with.
    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, TokenState> {
        // A panic while holding the lock leaves consistent fields (each is
        // replaced whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure to share with a caller that waited for the flight lock: a
    /// request that completed meanwhile failed, or reconnecting is needed.
    fn shared_failure(&self, state: &TokenState, seen: u64) -> Option<TokenError> {
        if let Some(detail) = &state.reconnect {
            return Some(self.reconnect_error(detail));
        }
        (state.attempts != seen)
            .then(|| state.last_error.clone())
            .flatten()
    }

    fn reconnect_error(&self, detail: &str) -> TokenError {
        TokenError::ReconnectNeeded {
            credential: self.credential.clone(),
            detail: detail.to_string(),
        }
    }

    /// Sends one token request and records its outcome. Called only with the
    /// flight lock held.
    async fn obtain(&self) -> Result<AccessToken, TokenError> {
        let request = GrantRequest {
            credential: &self.credential,
            settings: &self.settings,
            client_secret: self.client_secret.as_ref(),
            private_key: self.private_key.as_ref(),
            client: &self.client,
        };
        let refresh_token = self.lock().refresh_token.clone();
        let result = request.request_token(refresh_token.as_ref()).await;
        match result {
            Ok(obtained) => Ok(self.install(obtained)),
            Err(error) => {
                tracing::warn!(credential = %self.credential, error = %error, "token request failed");
                let mut state = self.lock();
                state.attempts += 1;
                state.last_error = Some(error.clone());
                if let TokenError::ReconnectNeeded { detail, .. } = &error {
                    let newly = state.reconnect.replace(detail.clone()).is_none();
                    state.refresh_token = None;
                    drop(state);
                    // Told once: later calls answer from the sticky state.
                    if newly {
                        self.persist.reconnect_needed(detail);
                    }
                }
                Err(error)
            }
        }
    }

    /// Makes `obtained` the current token; for `authorization_code`, also
    /// persists it with the (possibly rotated) refresh token.
    fn install(&self, obtained: Obtained) -> AccessToken {
        let before = Duration::from_secs(self.settings.refresh_before_secs);
        let expires_at = obtained.expires_at();
        let (token, stored) = {
            let mut state = self.lock();
            state.attempts += 1;
            state.generation += 1;
            state.last_error = None;
            let rotated = obtained.refresh_token.is_some();
            if let Some(refresh) = obtained.refresh_token {
                state.refresh_token = Some(refresh);
            }
            let token = AccessToken {
                value: obtained.access,
                expires_at,
                generation: state.generation,
            };
            state.current = Some(Cached {
                token: token.clone(),
                renew_at: renew_at(expires_at, obtained.expires_in, before),
            });
            let stored = StoredTokens {
                access_token: Some(token.value.clone()),
                refresh_token: state.refresh_token.clone(),
                expires_at_ms: expires_at.map(unix_ms),
            };
            tracing::info!(
                credential = %self.credential,
                grant = self.settings.grant.name(),
                expires_in_secs = obtained.expires_in.map(|d| d.as_secs()),
                refresh_token_rotated = rotated,
                "obtained an access token"
            );
            (token, stored)
        };
        if self.settings.grant == GrantType::AuthorizationCode
            && let Err(e) = self.persist.save(&stored)
        {
            // The token works now; only a restart would lose it.
            tracing::error!(credential = %self.credential, error = %e, "cannot save the refreshed tokens");
        }
        token
    }
}

/// When to stop using a token expiring at `expires_at`: `before` earlier,
/// but never more than half its `lifetime` earlier (when known), so a
/// short-lived token is not renewed on every call.
fn renew_at(
    expires_at: Option<SystemTime>,
    lifetime: Option<Duration>,
    before: Duration,
) -> Option<SystemTime> {
    let expires_at = expires_at?;
    let margin = lifetime.map_or(before, |l| before.min(l / 2));
    Some(expires_at.checked_sub(margin).unwrap_or(UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_early_but_not_before_half_their_lifetime() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let at = |expires_in: Duration, lifetime| {
            renew_at(Some(t0 + expires_in), lifetime, Duration::from_secs(60))
        };
        assert_eq!(at(hour, Some(hour)), Some(t0 + hour - Duration::from_secs(60)));
        // A 10 s token is used for 5 s, not renewed on every call.
        let ten = Duration::from_secs(10);
        assert_eq!(at(ten, Some(ten)), Some(t0 + Duration::from_secs(5)));
        // A stored token's lifetime is unknown: the whole margin applies.
        assert_eq!(at(ten, None), Some(t0 + ten - Duration::from_secs(60)));
        assert_eq!(renew_at(None, Some(hour), Duration::from_secs(60)), None);
    }
}
