//! `POST /ingest/{subscription_id}`: accept one webhook for one subscription.

use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::auth::AdminAuth;
use super::body::{read_limited, validate_json, RawJsonBody};
use super::{ApiContext, ApiTags};
use crate::db::deliveries;
use crate::domain::event_type::validate_event_type;
use crate::error::ApiError;
use crate::subscription_cache::Lookup;

/// The webhook is stored and will be delivered.
#[derive(Debug, Object)]
pub struct Accepted {
    /// Also the `webhook-id` header the receiver sees, the same on every retry.
    pub delivery_id: Uuid,
    pub status: AcceptedStatus,
}

#[derive(Debug, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AcceptedStatus {
    Queued,
}

#[derive(ApiResponse)]
enum IngestResponse {
    /// Stored durably (committed) and queued for delivery.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

pub struct IngestApi {
    context: ApiContext,
}

impl IngestApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[OpenApi(tag = "ApiTags::Ingest")]
impl IngestApi {
    /// Accept a webhook for delivery to one subscription.
    ///
    /// The body must be JSON and is delivered byte for byte. 202 is sent only after the
    /// webhook is committed to the database: an accepted webhook is never lost.
    #[oai(path = "/ingest/:subscription_id", method = "post")]
    async fn ingest(
        &self,
        _auth: AdminAuth,
        request: &Request,
        subscription_id: Path<Uuid>,
        /// The event type (takes precedence over the `event_type` query parameter).
        #[oai(name = "X-Webhook-Event")]
        event_header: Header<Option<String>>,
        /// The event type, when the header is not sent.
        event_type: Query<Option<String>>,
        body: RawJsonBody,
    ) -> Result<IngestResponse, ApiError> {
        let event_type = event_header.0.or(event_type.0).filter(|e| !e.is_empty());
        if let Some(name) = &event_type {
            validate_event_type(name).map_err(|m| ApiError::bad_request("invalid_event_type", m))?;
        }
        let subscription = match self.context.subscriptions.get(subscription_id.0).await? {
            Lookup::Found(subscription) if subscription.deleted_at.is_none() => subscription,
            _ => return Err(ApiError::not_found("no subscription with this id")),
        };
        if !subscription.is_active {
            return Err(ApiError::conflict("subscription_inactive", "the subscription is inactive; activate it to accept webhooks"));
        }
        let length = request.header("content-length").and_then(|v| v.parse().ok());
        let bytes = read_limited(length, body.0, self.context.settings.max_payload_bytes).await?;
        validate_json(&bytes)?;

        let delivery_id = Uuid::now_v7();
        deliveries::insert(&self.context.pool, delivery_id, subscription.id, event_type.as_deref(), &bytes).await?;
        self.context.waker.wake();
        tracing::info!(delivery.id = %delivery_id, subscription.id = %subscription.id, event_type, bytes = bytes.len(), "webhook accepted");
        Ok(IngestResponse::Accepted(Json(Accepted { delivery_id, status: AcceptedStatus::Queued })))
    }
}
