//! The JSON error body every failed request gets.
//!
//! Clients (and people reading logs) get the same shape for every failure:
//! `{"error": "<stable code>", "message": "<what went wrong>"}`. The `error`
//! code is meant for programs, the message for people; neither ever echoes
//! the request body, which may hold a password.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

// ANCHOR: api_error
/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status of the response.
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable, machine-readable error code.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// When to try again, sent as `Retry-After` (429 and 503).
    #[serde(skip)]
    pub retry_after: Option<std::time::Duration>,
}
// ANCHOR_END: api_error

impl ApiError {
    /// An error with a status, a code and a message.
    #[must_use]
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429: this client made more login attempts than it may; the same answer
    /// whatever the username, so it tells nothing about which accounts exist.
    #[must_use]
    pub fn too_many_attempts(retry_after: std::time::Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "Too many login attempts from this address; wait before trying again",
            )
        }
    }

    /// 503: too many logins are waiting for a hashing thread; answered at once
    /// rather than after a long wait.
    #[must_use]
    pub fn busy(retry_after: std::time::Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "The server is too busy to check passwords right now; try again shortly",
            )
        }
    }

    /// 401: the username or the password is wrong (we never say which).
    #[must_use]
    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid username or password",
        )
    }

    /// 500: something failed inside the server.
    #[must_use]
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server failed to handle the request",
        )
    }

    /// 405 for any method but `POST`.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Use POST with a JSON body",
        )
    }

    /// 413: the body is, or is declared to be, larger than `limit` bytes.
    #[must_use]
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("The body is larger than {limit} bytes"),
        )
    }

    /// 408: the body did not arrive within `timeout` of the headers.
    #[must_use]
    pub fn body_timeout(timeout: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("The body did not arrive within {timeout:?}"),
        )
    }

    /// 499: the client closed the connection before the request was read.
    /// Never delivered; it exists to be counted.
    #[must_use]
    pub fn client_closed_request() -> Self {
        Self::new(
            crate::metrics::CLIENT_CLOSED_REQUEST,
            "client_closed_request",
            "The client closed the connection before sending the whole request",
        )
    }

    /// 404 for unknown paths.
    #[must_use]
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let mut response = (status, Json(self)).into_response();
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up, at least one: `Retry-After: 0` invites
            // the client straight back.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}
