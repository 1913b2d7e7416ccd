//! The control API's one error shape (docs/api.md, "Errors"): `{"error": {"code", "message",
//! "fields"}}` with the status that says what the caller must change.
//!
//! Invariant: no internal detail leaves the daemon. Errors from the engine that are about the
//! request (no such backup, a rule refusing it, invalid input) keep their message; anything
//! else is logged with a reference and answered with that reference only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// One bad field of a request: where (`source`, `sources.wedsync.rpo`, `query.force`) and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: vec![],
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
    }
    /// 422 naming every bad field.
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("invalid request: {}", names.join(", ")),
        );
        e.fields = fields;
        e
    }
    /// 422 for one field.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError {
            field: field.into(),
            reason: reason.into(),
        }])
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests that start work ([api] trigger_rate): retry in {retry_after} s"
            ),
        );
        e.retry_after = Some(retry_after);
        e
    }
    /// 500 with a reference; the detail goes to the daemon's log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let reference = format!("{:08x}", rand::random::<u32>());
        tracing::error!("control API internal error {reference}: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error: the daemon's log has the details (reference {reference})"),
        )
    }
    /// The generic answer for a status produced outside our handlers (a rejected path, an
    /// unknown route, a wrong method).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status.as_u16() {
            400 => ("bad_request", "malformed request"),
            404 => (
                "not_found",
                "no such resource: see assets/openapi.yaml for the routes",
            ),
            405 => (
                "method_not_allowed",
                "this method is not allowed on this resource",
            ),
            413 => ("too_large", "the request body is larger than 64 KiB"),
            415 => (
                "unsupported_media_type",
                "the request body must be application/json",
            ),
            422 => ("invalid", "invalid request"),
            s if s < 500 => ("bad_request", "the request was refused"),
            _ => ("internal", "internal error"),
        };
        Self::new(status, code, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => ApiError::not_found(m),
            Error::Conflict(m) => ApiError::conflict(m),
            Error::Usage(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            // A request field, named as the request names it (the handler knew no better place).
            Error::Field { field, message } => ApiError::field(field, message),
            Error::Cancelled(_) => ApiError::unavailable("the daemon is shutting down"),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    fields: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                fields: &self.fields,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keepsake\""),
            );
        }
        r
    }
}
