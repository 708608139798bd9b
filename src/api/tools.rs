//! `/tools`: helpers for producers.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::auth::AdminAuth;
use super::ApiTags;
use crate::domain::signing::hub_signature;
use crate::error::ApiError;

/// What to sign.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct SignatureRequest {
    /// A JSON string is signed as its text, exactly; any other JSON value is signed in its
    /// compact serialisation (returned as `body`).
    pub payload: serde_json::Value,
    pub secret_key: String,
}

/// The header to send, and the exact body it signs.
#[derive(Debug, Object)]
pub struct SignatureResult {
    /// `X-Hub-Signature-256`.
    pub header_name: String,
    /// `sha256=<hex>`.
    pub header_value: String,
    /// Send exactly these bytes as the request body: the signature covers them.
    pub body: String,
    /// A ready-to-use command line, with `{url}` to fill in.
    pub curl: String,
}

pub struct ToolsApi;

#[OpenApi(tag = "ApiTags::Tools")]
impl ToolsApi {
    /// Compute the `X-Hub-Signature-256` header for a body, to try signed ingestion.
    #[oai(path = "/tools/signature-generator", method = "post")]
    async fn signature_generator(&self, _auth: AdminAuth, request: Json<SignatureRequest>) -> Result<Json<SignatureResult>, ApiError> {
        let request = request.0;
        if request.secret_key.is_empty() {
            return Err(ApiError::bad_request("invalid_secret_key", "secret_key must not be empty"));
        }
        let body = match request.payload {
            serde_json::Value::String(text) => text,
            value => value.to_string(),
        };
        let header_value = hub_signature(&request.secret_key, body.as_bytes());
        let curl = format!(
            "curl -X POST '{{url}}' -H 'Content-Type: application/json' -H 'X-Hub-Signature-256: {header_value}' --data-binary '{}'",
            body.replace('\'', r"'\''")
        );
        Ok(Json(SignatureResult { header_name: "X-Hub-Signature-256".into(), header_value, body, curl }))
    }
}
