//! `POST /ingest/{subscription_id}`: accept one webhook for one subscription.

use poem::Request;
use poem_openapi::auth::ApiKey;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, SecurityScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::AdminAuth;
use super::body::{read_limited, validate_json, RawJsonBody};
use super::idempotency::{self, IdempotencyKey, Reservation};
use super::{ApiContext, ApiTags, GroupCommit};
use crate::db::deliveries::{self, NewDelivery};
use crate::domain::event_type::{validate_event_type, wants_event};
use crate::domain::signing::verify_hub_signature;
use crate::error::ApiError;
use crate::subscription_cache::Lookup;

/// The webhook is stored: queued for delivery, or recorded as filtered.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Accepted {
    /// Also the `webhook-id` header the receiver sees, the same on every retry.
    pub delivery_id: Uuid,
    pub status: AcceptedStatus,
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum AcceptedStatus {
    /// Will be delivered.
    Queued,
    /// The subscription does not want this event type: recorded, never delivered.
    Filtered,
}

#[derive(ApiResponse)]
enum IngestResponse {
    /// Stored durably (committed). A repeat with the same `Idempotency-Key` gets the first answer.
    #[oai(status = 202)]
    Accepted(Json<Accepted>),
}

/// GitHub's scheme: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the exact body, keyed
/// with the subscription's secret>`. Accepted for subscriptions that have a secret.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-Hub-Signature-256", key_in = "header")]
pub struct HubSignature(ApiKey);

/// Ingest takes the admin token, or a body signature for subscriptions with a secret.
#[derive(SecurityScheme)]
pub enum IngestAuth {
    Admin(AdminAuth),
    Signature(HubSignature),
    #[oai(fallback)]
    Anonymous,
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
    /// webhook is committed to the database: an accepted webhook is never lost. Send the
    /// admin token, or, for a subscription with a secret, `X-Hub-Signature-256` over the
    /// exact body. An event type the subscription does not want is recorded as `filtered`.
    #[oai(path = "/ingest/:subscription_id", method = "post")]
    #[allow(clippy::too_many_arguments)]
    async fn ingest(
        &self,
        auth: IngestAuth,
        request: &Request,
        subscription_id: Path<Uuid>,
        /// The event type (takes precedence over the `event_type` query parameter).
        #[oai(name = "X-Webhook-Event")]
        event_header: Header<Option<String>>,
        /// The event type, when the header is not sent.
        event_type: Query<Option<String>>,
        /// Makes retries of this request safe for 24 hours (per subscription).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: RawJsonBody,
    ) -> Result<IngestResponse, ApiError> {
        let event_type = event_header.0.or(event_type.0).filter(|e| !e.is_empty());
        if let Some(name) = &event_type {
            validate_event_type(name).map_err(|m| ApiError::bad_request("invalid_event_type", m))?;
        }
        let idempotency_key = IdempotencyKey::parse(idempotency_key.0)?;
        let is_admin = matches!(auth, IngestAuth::Admin(_));
        let subscription = match self.context.subscriptions.get(subscription_id.0).await? {
            Lookup::Found(subscription) if subscription.deleted_at.is_none() => subscription,
            // Without the admin token, do not reveal which ids exist.
            _ if !is_admin => return Err(ApiError::unauthorized()),
            _ => return Err(ApiError::not_found("no subscription with this id")),
        };
        let length = request.header("content-length").and_then(|v| v.parse().ok());
        let bytes = read_limited(length, body.0, self.context.settings.max_payload_bytes).await?;
        match &auth {
            IngestAuth::Admin(_) => {}
            IngestAuth::Signature(_) if subscription.secret_key.is_none() => return Err(ApiError::unauthorized()),
            IngestAuth::Signature(header) => {
                let secrets = subscription.live_secrets(OffsetDateTime::now_utc());
                if !secrets.iter().any(|secret| verify_hub_signature(secret, &bytes, &header.0.key)) {
                    return Err(ApiError::invalid_signature());
                }
            }
            IngestAuth::Anonymous if subscription.secret_key.is_some() => return Err(ApiError::invalid_signature()),
            IngestAuth::Anonymous => return Err(ApiError::unauthorized()),
        }
        if !subscription.is_active {
            return Err(ApiError::conflict("subscription_inactive", "the subscription is inactive; activate it to accept webhooks"));
        }
        validate_json(&bytes)?;

        let wanted = wants_event(&subscription.event_types, event_type.as_deref());
        let status = if wanted { AcceptedStatus::Queued } else { AcceptedStatus::Filtered };
        let length = bytes.len();
        let store = Store { subscription_id: subscription.id, event_type: event_type.as_deref(), body: bytes, status };
        let accepted = match idempotency_key {
            None => store.insert_grouped(&self.context.group_commit).await?,
            Some(key) => {
                let scope = format!("ingest:{}", subscription.id);
                let hash = request_hash(event_type.as_deref(), &store.body);
                match idempotency::reserve(&self.context.pool, &scope, &key, &hash).await? {
                    Reservation::Replay(first) => first,
                    Reservation::Fresh(mut tx) => {
                        let accepted = store.insert(&mut *tx).await?;
                        idempotency::commit(tx, &scope, &key, &accepted).await?;
                        accepted
                    }
                }
            }
        };
        if matches!(accepted.status, AcceptedStatus::Queued) {
            self.context.waker.wake();
            self.context.metrics.webhooks_ingested(1);
        }
        tracing::info!(
            delivery.id = %accepted.delivery_id,
            subscription.id = %subscription.id,
            event_type,
            bytes = length,
            status = ?accepted.status,
            "webhook accepted"
        );
        Ok(IngestResponse::Accepted(Json(accepted)))
    }
}

/// One webhook to record.
struct Store<'a> {
    subscription_id: Uuid,
    event_type: Option<&'a str>,
    body: Vec<u8>,
    status: AcceptedStatus,
}

impl Store<'_> {
    fn status_text(&self) -> &'static str {
        match self.status {
            AcceptedStatus::Queued => "queued",
            AcceptedStatus::Filtered => "filtered",
        }
    }

    /// Inserts within the caller's transaction (the idempotent path).
    async fn insert(&self, db: impl sqlx::PgExecutor<'_>) -> Result<Accepted, ApiError> {
        let delivery_id = Uuid::now_v7();
        deliveries::insert(db, delivery_id, self.subscription_id, self.event_type, &self.body, self.status_text()).await?;
        Ok(Accepted { delivery_id, status: self.status })
    }

    /// Inserts through the group commit, sharing a commit with concurrent requests.
    async fn insert_grouped(self, group_commit: &GroupCommit) -> Result<Accepted, ApiError> {
        let delivery_id = Uuid::now_v7();
        let status = self.status_text();
        group_commit
            .insert(NewDelivery {
                id: delivery_id,
                subscription_id: self.subscription_id,
                event_type: self.event_type.map(str::to_owned),
                body: self.body,
                status,
            })
            .await?;
        Ok(Accepted { delivery_id, status: self.status })
    }
}

/// What makes two ingest requests "the same" for idempotency: event type and exact body.
fn request_hash(event_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(event_type.unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().to_vec()
}
