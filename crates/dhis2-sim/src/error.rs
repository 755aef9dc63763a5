//! Errors and the DHIS2 `WebMessage` envelope every failure is answered with.
//!
//! DHIS2 answers errors as `{"httpStatus":"Not Found","httpStatusCode":404,"status":"ERROR",
//! "message":"…"}` with the HTTP status equal to `httpStatusCode`, nulls omitted
//! (`WebMessageControllerAdvice.java`). Every handler returns [`ApiError`] so that no path
//! answers with a bare body or panics on bad input.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;

/// A DHIS2 `WebMessage`: the JSON envelope of errors and of many write responses.
#[derive(Debug, Clone, PartialEq)]
pub struct WebMessage {
    /// The HTTP status; also written as `httpStatus` (reason phrase) and `httpStatusCode`.
    pub status: StatusCode,
    /// `OK`, `WARNING` or `ERROR`.
    pub outcome: &'static str,
    /// Human readable message; omitted when `None`.
    pub message: Option<String>,
    /// Optional typed payload under `response`.
    pub response: Option<Value>,
}

impl WebMessage {
    /// An `ERROR` message with the given status and text.
    pub fn error(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, outcome: "ERROR", message: Some(message.into()), response: None }
    }

    /// An `OK` message with the given status and text.
    pub fn ok(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, outcome: "OK", message: Some(message.into()), response: None }
    }

    /// The same message with `response` set.
    pub fn with_response(mut self, response: Value) -> Self {
        self.response = Some(response);
        self
    }

    fn wire(&self) -> Wire<'_> {
        Wire {
            http_status: self.status.canonical_reason().unwrap_or("Unknown"),
            http_status_code: self.status.as_u16(),
            status: self.outcome,
            message: self.message.as_deref(),
            response: self.response.as_ref(),
        }
    }

    /// The JSON body (nulls omitted).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }

    /// The body bytes, keys in DHIS2's order: `httpStatus, httpStatusCode, status, message,
    /// response`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.wire()).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// Serialised form of a [`WebMessage`], in DHIS2's key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    http_status: &'a str,
    http_status_code: u16,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a Value>,
}

impl IntoResponse for WebMessage {
    fn into_response(self) -> Response {
        bytes_response(self.status, self.to_bytes())
    }
}

/// Serialises `body` as `application/json;charset=UTF-8` with the given status.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    bytes_response(status, serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()))
}

fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
    response
}

/// Every error a request can end in; each maps to one DHIS2 `WebMessage`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, wrong or disabled credentials (401, message `Unauthorized`).
    #[error("Unauthorized")]
    Unauthorized,
    /// Authenticated but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such resource or path (404).
    #[error("{0}")]
    NotFound(String),
    /// Malformed parameters or body (400).
    #[error("{0}")]
    BadRequest(String),
    /// The state of the server forbids the request (409).
    #[error("{0}")]
    Conflict(String),
    /// The path exists but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Anything that went wrong on our side (500); the detail is logged, not hidden.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `WebMessage` this error is answered with.
    pub fn web_message(&self) -> WebMessage {
        WebMessage::error(self.status(), self.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        self.web_message().into_response()
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("Database error: {e}"))
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("Task failed: {e}"))
    }
}

/// Errors of starting the simulator (bad data dir, database, socket).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// File system or socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer simulator.
    #[error("database schema version {found} is newer than this simulator's ({supported})")]
    SchemaTooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Invalid configuration value.
    #[error("invalid configuration: {0}")]
    Config(String),
}
