//! One mapping from errors to HTTP: a [`ScimError`] becomes a SCIM error body with
//! `Content-Type: application/scim+json`; 401 answers carry `WWW-Authenticate`, 429 and 503
//! carry `Retry-After`. 5xx details are logged inside the request span and replaced by a generic
//! text for the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::scim::ScimError;

/// The media type of every SCIM response (RFC 7644 section 3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// A JSON body sent as `application/scim+json`.
pub struct ScimJson(pub StatusCode, pub Value);

impl IntoResponse for ScimJson {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.1).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (self.0, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SCIM_CONTENT_TYPE),
        );
        res
    }
}

/// An error on its way to the client, with an optional `Retry-After` in seconds.
#[derive(Debug)]
pub struct ApiError {
    pub error: ScimError,
    pub retry_after: Option<u64>,
}

impl From<ScimError> for ApiError {
    fn from(error: ScimError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl From<crate::bridge::BridgeError> for ApiError {
    fn from(e: crate::bridge::BridgeError) -> Self {
        ApiError {
            error: e.error,
            retry_after: e.retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = self.error;
        if error.status >= 500 {
            tracing::error!(status = error.status, detail = %error.detail, "request failed");
            if error.status == 500 {
                error.detail = "internal error; the request id in the X-Request-Id header \
                                identifies it in the server log"
                    .into();
            }
        }
        let status =
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = ScimJson(status, error.to_body()).into_response();
        let headers = res.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim-bridge\""),
            );
        }
        let retry = self.retry_after.or(match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Some(crate::bridge::retry_after::CONTENDED)
            }
            _ => None,
        });
        if let Some(secs) = retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
