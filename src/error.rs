//! The one API error type: every 4xx/5xx answers `{"error": "<code>", "message": "..."}`.
//! Database failures are mapped here, once: unavailability becomes 503, anything
//! unexpected a logged 500 with an opaque message.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The standard error body.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `not_found`.
    pub error: String,
    /// A sentence for humans; may change between versions.
    pub message: String,
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        Self { error: "not_found".into(), message: "no subscription with this id".into() }
    }
}

/// Errors an API operation can answer with.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or fails validation.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request body did not arrive in time (`WEBHOOKD_HTTP_BODY_TIMEOUT`).
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// The resource is not in a state that allows this.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than `WEBHOOKD_MAX_PAYLOAD`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Unexpected server error (logged with details server-side).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database is unreachable or could not confirm in time; retry later (a write may have taken effect: retry it with the same Idempotency-Key).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

const UNAUTHORIZED_MESSAGE: &str = "missing or invalid credentials: send `Authorization: Bearer <admin token>`, \
     or to ingest, a signature made with the subscription's secret (Standard Webhooks headers, or X-Hub-Signature-256)";

fn body(code: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody { error: code.to_owned(), message: message.into() })
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(body(code, message))
    }
    /// The one answer to every unauthenticated request, so that it tells a stranger nothing
    /// (not even whether an ingest's subscription exists).
    pub fn unauthorized() -> Self {
        Self::Unauthorized(body("unauthorized", UNAUTHORIZED_MESSAGE))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(body("not_found", message))
    }
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::RequestTimeout(body("request_timeout", message))
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::Conflict(body(code, message))
    }
    /// An API request body over its limit (`setting` names what sets the limit).
    pub fn body_too_large(limit: usize, setting: &str) -> Self {
        Self::PayloadTooLarge(body("payload_too_large", format!("the body is larger than the {limit}-byte limit ({setting})")))
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::PayloadTooLarge(body(
            "payload_too_large",
            format!("the body is larger than the {limit}-byte limit (WEBHOOKD_MAX_PAYLOAD)"),
        ))
    }
    /// Not "nothing was stored": a write whose commit or flush could not be confirmed may
    /// have been kept (and a webhook among it sent), so the request may have taken effect.
    pub fn unavailable() -> Self {
        Self::Unavailable(body("database_unavailable", "the database is unavailable or could not confirm the write; retry later"))
    }
    /// A request given up at its deadline (`api::deadline`): the database did not answer.
    pub fn no_answer_within(limit: std::time::Duration) -> Self {
        Self::Unavailable(body(
            "database_unavailable",
            format!("the database did not answer within {limit:?}; the request may or may not have taken effect; retry later"),
        ))
    }
    pub fn internal() -> Self {
        Self::Internal(body("internal_error", "an unexpected error occurred; it has been logged"))
    }
}

/// True for errors that mean "the database is unreachable right now".
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
    ) || matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// PostgreSQL's `text` cannot hold the NUL character (SQLSTATE 22021).
fn is_nul_in_text(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("22021"))
}

impl ApiError {
    /// 400 for text PostgreSQL cannot store, 503 when the database is unreachable,
    /// otherwise a logged, opaque 500.
    pub(crate) fn from_database(error: &sqlx::Error) -> Self {
        if is_nul_in_text(error) {
            // Every text a statement gets that could hold one came from the client (the
            // checks name the field where they can; this covers the others, e.g. a filter).
            return Self::bad_request("invalid_text", "text must not contain the NUL character (\\u0000)");
        }
        if is_unavailable(error) {
            tracing::warn!(%error, "database unavailable");
            Self::unavailable()
        } else {
            tracing::error!(%error, "database error");
            Self::internal()
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::from_database(&error)
    }
}

/// The group commit shares one error among the requests of a batch.
impl From<std::sync::Arc<sqlx::Error>> for ApiError {
    fn from(error: std::sync::Arc<sqlx::Error>) -> Self {
        Self::from_database(&error)
    }
}

/// Turns errors raised outside our handlers (routing, parameter and body parsing, auth)
/// into the standard error body. Responses our handlers built already have it.
pub async fn standard_error_response(error: poem::Error) -> Response {
    if error.is_from_response() {
        return error.into_response();
    }
    let status = error.status();
    let code = match status {
        StatusCode::BAD_REQUEST => classify_bad_request(&error),
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        s if s.is_client_error() => "bad_request",
        _ => "internal_error",
    };
    let message = if status.is_server_error() {
        tracing::error!(%error, "unhandled server error");
        "an unexpected error occurred; it has been logged".to_owned()
    } else if status == StatusCode::UNAUTHORIZED {
        UNAUTHORIZED_MESSAGE.to_owned()
    } else if status == StatusCode::NOT_FOUND {
        "no such route".to_owned()
    } else if code == "invalid_id" {
        "the id in the path is not a valid UUID".to_owned()
    } else {
        error.to_string()
    };
    let mut response = Json(ErrorBody { error: code.to_owned(), message }).into_response();
    response.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert("www-authenticate", poem::http::HeaderValue::from_static("Bearer"));
    }
    response
}

fn classify_bad_request(error: &poem::Error) -> &'static str {
    use poem_openapi::error::{ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError};
    if error.is::<ParsePathError>() {
        "invalid_id"
    } else if error.is::<ParseRequestPayloadError>() {
        "invalid_body"
    } else if error.is::<ParseParamError>() {
        "invalid_parameter"
    } else if error.is::<ContentTypeError>() {
        "unsupported_content_type"
    } else {
        "bad_request"
    }
}
