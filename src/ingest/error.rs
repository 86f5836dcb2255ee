//! Every way a callback request can fail, and its one HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::intake::IntakeError;
use crate::platform::callback::ParseError;
use crate::platform::crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Answered exactly as `Unauthorized`: a caller cannot tell a wrong account from a wrong key.
    #[error("missing or wrong callback credentials")]
    UnknownAccount,
    #[error("too many requests at once; retry")]
    Overloaded,
    #[error("missing or wrong callback credentials")]
    Unauthorized,
    #[error("body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the signature does not match")]
    InvalidSignature,
    #[error("query parameter `{0}` is missing")]
    MissingParameter(&'static str),
    #[error("the timestamp of a URL check must be within 5 minutes of now")]
    StaleTimestamp,
    #[error("echostr is not a URL check: {0}")]
    InvalidEchostr(&'static str),
    #[error("the XML body is unusable: {0}")]
    MalformedXml(String),
    #[error(transparent)]
    Crypto(CryptoError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl From<crate::store::StoreError> for IngestError {
    fn from(error: crate::store::StoreError) -> Self {
        IngestError::Intake(IntakeError::Storage(error))
    }
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::UnknownAccount | IngestError::Unauthorized => StatusCode::UNAUTHORIZED,
            IngestError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BodyUnreadable => StatusCode::BAD_REQUEST,
            IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngestError::InvalidSignature | IngestError::Crypto(CryptoError::BadSignature) => StatusCode::UNAUTHORIZED,
            IngestError::MissingParameter(_)
            | IngestError::StaleTimestamp
            | IngestError::InvalidEchostr(_)
            | IngestError::MalformedXml(_)
            | IngestError::Crypto(_) => StatusCode::BAD_REQUEST,
            IngestError::Intake(IntakeError::Parse(ParseError::BadField { .. } | ParseError::TooLarge { .. })) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            IngestError::Intake(IntakeError::Parse(_)) => StatusCode::BAD_REQUEST,
            IngestError::Intake(IntakeError::Storage(_)) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable, documented codes: integrators match on these, never on messages.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::UnknownAccount | IngestError::Unauthorized => "unauthorized",
            IngestError::Overloaded => "overloaded",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::BodyUnreadable => "unreadable_body",
            IngestError::BodyTimeout => "body_timeout",
            IngestError::InvalidSignature | IngestError::Crypto(CryptoError::BadSignature) => "invalid_signature",
            IngestError::MissingParameter(_) => "missing_parameter",
            IngestError::StaleTimestamp => "stale_timestamp",
            IngestError::InvalidEchostr(_) => "invalid_echostr",
            IngestError::MalformedXml(_) => "malformed_xml",
            IngestError::Crypto(CryptoError::Undecryptable(_)) => "undecryptable",
            IngestError::Crypto(CryptoError::ReceiveIdMismatch) => "receive_id_mismatch",
            IngestError::Intake(intake) => intake.code(),
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let message = match &self {
            // The cause is logged where it happened; the caller only needs to know to retry.
            IngestError::Intake(IntakeError::Storage(_)) => "the callback was not stored; retry later".to_owned(),
            other => other.to_string(),
        };
        let mut body = json!({ "error": self.code(), "message": message });
        if let IngestError::Intake(IntakeError::Parse(
            ParseError::BadField { field, .. } | ParseError::TooLarge { field, .. },
        )) = &self
        {
            body["field"] = json!(field);
        }
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, IngestError::Overloaded) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// The JSON error for requests that never reach a callback handler (wrong path or method).
pub fn plain_error(status: StatusCode, code: &'static str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}
