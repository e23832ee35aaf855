//! Why no token is available: the public [`TokenError`], and the failures
//! of one exchange before they become one. Only registered OAuth error codes
//! are quoted (see [`quotable_error_code`]).

use oauth2::basic::BasicErrorResponse;

use super::{MAX_TOKEN_RESPONSE_BYTES, TOKEN_TIMEOUT};

/// The OAuth error codes an error message may quote: RFC 6749's, and those
/// of the IANA OAuth Extensions Error registry and OpenID Connect. Anything
/// else a token endpoint or a consent redirect puts in `error` is not shown,
/// nor ever `error_description` or `error_uri`: they are free text from the
/// other side, which may quote what it was sent.
const ERROR_CODES: &[&str] = &[
    // RFC 6749
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    // RFC 6750, 7009, 8628, 8707, 9449, 9470
    "invalid_token",
    "insufficient_scope",
    "unsupported_token_type",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
    "insufficient_user_authentication",
    // OpenID Connect Core
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
];

/// `code` when it is a registered OAuth error code that an error message may
/// quote, else `None`.
pub fn quotable_error_code(code: &str) -> Option<&str> {
    ERROR_CODES.contains(&code).then_some(code)
}

/// Why no access token is available.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Could not obtain a token. `detail` is what the token endpoint said
    /// (status and a registered OAuth `error` code) or why it could not be
    /// reached - never a secret. Retryable: 5xx, 429, timeouts, connection
    /// failures; not retryable: refusals such as `invalid_client`.
    #[error("credential `{credential}` could not obtain an access token: {detail}")]
    Unavailable {
        /// Credential name.
        credential: String,
        /// What went wrong.
        detail: String,
        /// Whether trying again later may succeed.
        retryable: bool,
    },
    /// The refresh token was refused (`invalid_grant`) or none is stored:
    /// someone must run the consent flow again.
    #[error("credential `{credential}` needs to be reconnected: {detail}")]
    ReconnectNeeded {
        /// Credential name.
        credential: String,
        /// Why.
        detail: String,
    },
}

impl TokenError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            TokenError::Unavailable { retryable, .. } => *retryable,
            TokenError::ReconnectNeeded { .. } => false,
        }
    }
}

/// Why a token request failed, before it becomes a [`TokenError`].
pub(super) enum Failure {
    /// The exchange itself failed.
    Send(SendError),
    /// The token endpoint answered with an OAuth error.
    Refused { status: u16, error: BasicErrorResponse },
    /// The token endpoint answered something else.
    Malformed { status: u16, what: String },
}

impl Failure {
    fn retryable(&self) -> bool {
        let busy = |status: u16| status >= 500 || status == 429;
        match self {
            Failure::Send(e) => e.retryable(),
            Failure::Refused { status, error } => {
                busy(*status) || matches!(error.error().as_ref(), "temporarily_unavailable" | "server_error")
            }
            Failure::Malformed { status, .. } => busy(*status),
        }
    }

    fn detail(&self) -> String {
        match self {
            Failure::Send(e) => e.to_string(),
            Failure::Refused { status, error } => match quotable_error_code(error.error().as_ref()) {
                Some(code) => format!("the token endpoint answered {status} `{code}`"),
                None => format!(
                    "the token endpoint answered {status} with an OAuth error code that is not a registered one (not shown)"
                ),
            },
            Failure::Malformed { status, what } => {
                format!("the token endpoint answered {status} with {what}")
            }
        }
    }

    /// The error for `credential`; `refreshing` turns a refused refresh token
    /// (`invalid_grant`) into [`TokenError::ReconnectNeeded`].
    pub(super) fn into_error(self, credential: &str, refreshing: bool) -> TokenError {
        let invalid_grant =
            matches!(&self, Failure::Refused { error, .. } if error.error().as_ref() == "invalid_grant");
        if refreshing && invalid_grant {
            return TokenError::ReconnectNeeded {
                credential: credential.to_string(),
                detail: format!("the refresh token was refused: {}", self.detail()),
            };
        }
        TokenError::Unavailable {
            credential: credential.to_string(),
            retryable: self.retryable(),
            detail: self.detail(),
        }
    }
}

/// Why a token endpoint exchange did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error("cannot build the token request: {0}")]
    Build(String),
    #[error("cannot reach the token endpoint `{origin}`: {cause}")]
    Connect { origin: String, cause: String },
    #[error("the token endpoint `{origin}` did not answer within {} s", TOKEN_TIMEOUT.as_secs())]
    Timeout { origin: String },
    #[error("the token endpoint `{origin}` answered with a redirect ({status}), which is not followed")]
    Redirect { origin: String, status: u16 },
    #[error(
        "the token endpoint `{origin}` answered with more than {} bytes",
        MAX_TOKEN_RESPONSE_BYTES
    )]
    TooLarge { origin: String },
}

impl SendError {
    fn retryable(&self) -> bool {
        matches!(self, SendError::Connect { .. } | SendError::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::oauth::endpoint::parse_token_response;

    #[test]
    fn refused_refresh_tokens_need_reconnecting_and_server_trouble_is_retryable() {
        let refused = |status: u16, body: &str| {
            let response = http::Response::builder()
                .status(status)
                .body(body.as_bytes().to_vec())
                .unwrap();
            match parse_token_response(&response) {
                Err(f) => f,
                Ok(_) => panic!("{body} parsed as a token"),
            }
        };
        let e = refused(400, r#"{"error":"invalid_grant","error_description":"revoked"}"#)
            .into_error("crm", true);
        assert!(
            matches!(&e, TokenError::ReconnectNeeded { detail, .. } if detail.contains("invalid_grant")),
            "{e}"
        );
        let e = refused(401, r#"{"error":"invalid_client"}"#).into_error("crm", false);
        assert!(!e.retryable());
        assert_eq!(
            e.to_string(),
            "credential `crm` could not obtain an access token: the token endpoint answered 401 `invalid_client`"
        );
        assert!(
            refused(503, "<html>busy</html>")
                .into_error("crm", false)
                .retryable()
        );
        assert!(
            refused(429, r#"{"error":"slow_down"}"#)
                .into_error("crm", false)
                .retryable()
        );
        let e = refused(200, r#"{"access_token": 12345678}"#).into_error("crm", false);
        assert!(!e.to_string().contains("12345678"), "{e}");
    }
    /// Token errors quote a registered error code and nothing else the
    /// endpoint wrote: no `error_description`, no `error_uri`, and no code
    /// that is not a registered one (it could be a reflected secret).
    #[test]
    fn token_errors_quote_only_registered_error_codes() {
        let refused = |body: &str| {
            let response = http::Response::builder()
                .status(400)
                .body(body.as_bytes().to_vec())
                .unwrap();
            match parse_token_response(&response) {
                Err(f) => f.into_error("crm", false).to_string(),
                Ok(_) => panic!("{body} parsed as a token"),
            }
        };
        let text = refused(
            r#"{"error":"invalid_client","error_description":"client secret hunter2-s3cret is wrong","error_uri":"https://idp.example/hunter2"}"#,
        );
        assert_eq!(
            text,
            "credential `crm` could not obtain an access token: the token endpoint answered 400 `invalid_client`"
        );
        for code in [
            "hunter2_s3cret",
            "my_custom_error",
            "invalid client",
            "INVALID_CLIENT",
        ] {
            let text = refused(&format!(r#"{{"error":"{code}"}}"#));
            assert!(!text.contains(code), "{text}");
            assert!(text.contains("not a registered one"), "{text}");
        }
        assert_eq!(quotable_error_code("access_denied"), Some("access_denied"));
        assert_eq!(quotable_error_code("access_denied "), None);
    }
}
