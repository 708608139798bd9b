//! The ingest body: raw bytes kept exactly as received, read with a size limit so an
//! oversized request is refused without being buffered whole.

use std::marker::PhantomData;

use poem::error::ReadBodyError;
use poem::{Body, IntoResponse, Request, RequestBody};
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use tokio::io::AsyncReadExt;

use crate::error::ApiError;

/// A JSON body taken as the exact bytes sent, documented with the schema of `S`. The
/// `Content-Type` is not checked: the bytes are, by parsing them.
pub struct RawJson<S>(pub Body, PhantomData<S>);

/// Any JSON document.
pub type RawJsonBody = RawJson<serde_json::Value>;

impl<'a, S: Type> ApiExtractor<'a> for RawJson<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        S::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("JSON; the bytes are kept exactly as sent."),
            content: vec![MetaMediaType { content_type: "application/json", schema: S::schema_ref() }],
            required: true,
        })
    }

    async fn from_request(
        _request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(body.take()?, PhantomData))
    }
}

/// Reads at most `limit` bytes; a longer body is refused as soon as it passes the limit,
/// and one that declares a larger `Content-Length` before a byte is read.
pub async fn read_limited(request_length: Option<u64>, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    if request_length.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut bytes = Vec::with_capacity(request_length.map_or(8 * 1024, |l| l as usize));
    let mut reader = body.into_async_read().take(limit as u64 + 1);
    reader
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => ApiError::request_timeout(e.to_string()),
            _ => ApiError::bad_request("invalid_body", format!("could not read the request body: {e}")),
        })?;
    if bytes.len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(bytes)
}

/// Checks that `bytes` hold exactly one JSON document, without building it in memory.
pub fn validate_json(bytes: &[u8]) -> Result<(), ApiError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))
}

/// Largest body of an API request other than a webhook (subscriptions, tools, retries):
/// far above any valid one.
pub const MAX_API_BODY: usize = 64 * 1024;

/// Whether requests to `path` read their bodies themselves, through [`read_limited`]:
/// webhooks and events.
pub fn streams_its_body(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.starts_with("/ingest/") || path == "/events"
}

/// Reads the body of a request (other than those that [stream their
/// own](streams_its_body)) into memory, refusing it with 413 as soon as it passes
/// [`MAX_API_BODY`]. Nothing is allocated from a declared `Content-Length`.
pub async fn limit_api_body(mut request: Request) -> poem::Result<Request> {
    let (limit, setting) = (MAX_API_BODY, "64 KiB for API requests");
    let refuse = |error: ApiError| poem::Error::from_response(error.into_response());
    let declared: Option<u64> = request.header("content-length").and_then(|v| v.parse().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(refuse(ApiError::body_too_large(limit, setting)));
    }
    match request.take_body().into_bytes_limit(limit).await {
        Ok(bytes) => {
            request.set_body(bytes);
            Ok(request)
        }
        Err(ReadBodyError::PayloadTooLarge) => Err(refuse(ApiError::body_too_large(limit, setting))),
        Err(ReadBodyError::Io(error)) if error.kind() == std::io::ErrorKind::TimedOut => {
            Err(refuse(ApiError::request_timeout(error.to_string())))
        }
        Err(error) => Err(refuse(ApiError::bad_request("invalid_body", format!("could not read the request body: {error}")))),
    }
}
