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
        let mut response = (status, Json(self)).into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}
