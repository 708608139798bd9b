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
use super::group_commit::Placed;
use super::{ApiContext, ApiTags, GroupCommit};
use crate::db::deliveries::{self, NewDelivery};
use crate::domain::event_type::{validate_producer_event_type, wants_event};
use crate::db::subscriptions::{self, SubscriptionRow};
use crate::domain::lifecycle::DeliveryStatus;
use crate::domain::{DeliveryId, SubscriptionId};
use crate::domain::signing::{verify_hub_signature, verify_standard_webhooks_signature};
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

/// Standard Webhooks (recommended): `webhook-signature: v1,<base64 HMAC-SHA256 of
/// "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the base64-decoded part of a
/// `whsec_` secret (else the secret's bytes), with the `webhook-id` and `webhook-timestamp`
/// headers. The timestamp must be within 5 minutes of now, and a `webhook-id` already
/// accepted for the subscription answers the first `delivery_id` again, creating nothing.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "webhook-signature", key_in = "header")]
pub struct StandardSignature(ApiKey);

/// GitHub's scheme (kept for existing producers): `X-Hub-Signature-256: sha256=<hex
/// HMAC-SHA256 of the exact body, keyed with the subscription's secret>`. It has no
/// timestamp, so a captured request can be replayed: prefer Standard Webhooks.
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-Hub-Signature-256", key_in = "header")]
pub struct HubSignature(ApiKey);

/// Ingest takes the admin token, or a signature with the subscription's secret.
#[derive(SecurityScheme)]
pub enum IngestAuth {
    Admin(AdminAuth),
    Standard(StandardSignature),
    Signature(HubSignature),
    #[oai(fallback)]
    Anonymous,
}

/// Why a subscription whose stored secret is corrupt takes no webhook, and the way out.
const SECRET_UNREADABLE: &str = "the subscription's stored secret does not decrypt (corrupt at rest), so nothing sent to it could be signed; \
     give it a new secret (POST /subscriptions/{id}/rotate-secret, or PATCH with secret_key), then send again";

/// How far a Standard Webhooks timestamp may be from now, either way.
const TIMESTAMP_TOLERANCE: time::Duration = time::Duration::minutes(5);

pub struct IngestApi {
    context: ApiContext,
}

impl IngestApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }

    /// The answer to the admin token for a subscription whose stored secret does not
    /// decrypt: 404 if it is deleted, as for any deleted one (a new secret cannot be set on
    /// it), else 409 naming the way out.
    async fn refuse_unreadable_secret(&self, id: SubscriptionId) -> ApiError {
        match subscriptions::select_state(&self.context.pool, id).await {
            Ok(Some(state)) if !state.deleted => ApiError::conflict("secret_unreadable", SECRET_UNREADABLE),
            Ok(_) => ApiError::not_found("no subscription with this id"),
            Err(error) => error.into(),
        }
    }
}

#[OpenApi(tag = "ApiTags::Ingest")]
impl IngestApi {
    /// Accept a webhook for delivery to one subscription.
    ///
    /// The body must be JSON and is delivered byte for byte. 202 is sent only after the
    /// webhook is committed to the database: an accepted webhook is never lost. Send the
    /// admin token, or, for a subscription with a secret, a Standard Webhooks signature
    /// (`webhook-id`, `webhook-timestamp`, `webhook-signature`; recommended) or
    /// `X-Hub-Signature-256` over the exact body. Every unauthenticated request gets the
    /// same 401, whether or not the subscription exists. An event type the subscription
    /// does not want is recorded as `filtered`.
    #[oai(path = "/ingest/:subscription_id", method = "post")]
    #[allow(clippy::too_many_arguments)]
    async fn ingest(
        &self,
        auth: IngestAuth,
        request: &Request,
        /// The subscription's id (a UUID; read as text so that a malformed id gets the same
        /// 401 as any other when the request is not authenticated).
        subscription_id: Path<String>,
        /// The event type (takes precedence over the `event_type` query parameter).
        #[oai(name = "X-Webhook-Event")]
        event_header: Header<Option<String>>,
        /// The event type, when the header is not sent.
        event_type: Query<Option<String>>,
        /// Makes retries of this request safe for 24 hours (per subscription).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        /// Standard Webhooks: the message id, signed; a repeat is answered with the first
        /// `delivery_id` and creates nothing (it doubles as the idempotency key).
        #[oai(name = "webhook-id")]
        webhook_id: Header<Option<String>>,
        /// Standard Webhooks: Unix seconds, signed; refused when more than 5 minutes off.
        #[oai(name = "webhook-timestamp")]
        webhook_timestamp: Header<Option<String>>,
        body: RawJsonBody,
    ) -> Result<IngestResponse, ApiError> {
        // Nothing is read, from the database or the body, for a request with no credential.
        let credential = match auth {
            IngestAuth::Admin(_) => Credential::Admin,
            IngestAuth::Standard(signature) => {
                let (Some(id), Some(timestamp)) = (webhook_id.0.clone().filter(|id| !id.is_empty()), webhook_timestamp.0) else {
                    return Err(ApiError::unauthorized());
                };
                if !timestamp_is_fresh(&timestamp, OffsetDateTime::now_utc()) {
                    return Err(ApiError::unauthorized());
                }
                Credential::Standard { id, timestamp, signature: signature.0.key }
            }
            IngestAuth::Signature(signature) => Credential::Hub(signature.0.key),
            IngestAuth::Anonymous => return Err(ApiError::unauthorized()),
        };
        let subscription_id = match subscription_id.0.parse::<SubscriptionId>() {
            Ok(id) => id,
            Err(_) if matches!(credential, Credential::Admin) => {
                return Err(ApiError::bad_request("invalid_id", "the id in the path is not a valid UUID"));
            }
            Err(_) => return Err(ApiError::unauthorized()),
        };
        let length = request.header("content-length").and_then(|v| v.parse().ok());
        let lookup = match self.context.subscriptions.get(subscription_id).await {
            // No signature can be checked, and nothing accepted could be signed, until the
            // subscription has a new secret: the operator is told so; anyone else gets the 401.
            Err(error) if error.is_unreadable_secret() => {
                if matches!(credential, Credential::Admin) {
                    return Err(self.refuse_unreadable_secret(subscription_id).await);
                }
                Lookup::Missing
            }
            lookup => lookup?,
        };
        let subscription = match lookup {
            Lookup::Found(subscription) if subscription.deleted_at.is_none() => subscription,
            // Without the admin token, do not reveal which ids exist: the body is read (and
            // refused when too large or slow) exactly as for a known id, then 401.
            _ if !matches!(credential, Credential::Admin) => {
                read_limited(length, body.0, self.context.settings.http.max_payload).await?;
                return Err(ApiError::unauthorized());
            }
            _ => return Err(ApiError::not_found("no subscription with this id")),
        };
        let bytes = read_limited(length, body.0, self.context.settings.http.max_payload).await?;
        if !credential.authenticates(&subscription, &bytes) {
            return Err(ApiError::unauthorized());
        }
        // Checked once authenticated: a request without a valid credential gets the one 401,
        // whatever else is wrong with it.
        let event_type = event_header.0.or(event_type.0).filter(|e| !e.is_empty());
        if let Some(name) = &event_type {
            validate_producer_event_type(name).map_err(|m| ApiError::bad_request("invalid_event_type", m))?;
        }
        let idempotency_key = IdempotencyKey::parse(idempotency_key.0)?;
        // A Standard Webhooks message id is always the idempotency key (an unsigned
        // Idempotency-Key cannot replace it, or a captured request could be posted again
        // under new keys), and a replayed delivery (whose webhook-id is its own delivery id)
        // is recognised as such.
        let idempotency_key = match &credential {
            Credential::Standard { id, .. } => {
                if let Some(earlier) = self.replayed_delivery(subscription.id, id).await? {
                    return Ok(IngestResponse::Accepted(Json(earlier)));
                }
                IdempotencyKey::parse(Some(id.clone())).map_err(|_| {
                    ApiError::bad_request("invalid_webhook_id", "webhook-id must be 1 to 255 visible ASCII characters")
                })?
            }
            _ => idempotency_key,
        };
        if !subscription.is_active {
            return Err(ApiError::conflict("subscription_inactive", "the subscription is inactive; activate it to accept webhooks"));
        }
        validate_json(&bytes)?;

        let wanted = wants_event(&subscription.event_types, event_type.as_deref());
        let status = if wanted { AcceptedStatus::Queued } else { AcceptedStatus::Filtered };
        let length = bytes.len();
        let store = Store { subscription_id: subscription.id, event_type: event_type.as_deref(), body: bytes, status };
        // `created`: false when a repeated key answered with the first request's delivery.
        // `placed`: whether a claim must find it, or this instance is already sending it.
        let (accepted, created, placed) = match idempotency_key {
            None => {
                let (accepted, placed) = store.insert_grouped(&self.context.group_commit).await?;
                (accepted, true, placed)
            }
            Some(key) => {
                let scope = format!("ingest:{}", subscription.id);
                let hash = request_hash(event_type.as_deref(), &store.body);
                match idempotency::reserve(&self.context.pool, &scope, &key, &hash).await? {
                    Reservation::Replay(first) => (first, false, Placed::Queued),
                    Reservation::Fresh(mut tx) => {
                        let accepted = store.insert(&mut *tx).await?;
                        idempotency::commit(tx, &scope, &key, &accepted).await?;
                        (accepted, true, Placed::Queued)
                    }
                }
            }
        };
        if created && matches!(accepted.status, AcceptedStatus::Queued) {
            if placed == Placed::Queued {
                self.context.waker.wake();
            }
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

impl IngestApi {
    /// The delivery whose id a Standard Webhooks `webhook-id` names, when it belongs to
    /// this subscription: a delivery sent by webhookd and posted back to ingest.
    async fn replayed_delivery(&self, subscription_id: SubscriptionId, webhook_id: &str) -> Result<Option<Accepted>, ApiError> {
        let Ok(id) = webhook_id.parse::<DeliveryId>() else { return Ok(None) };
        let found = deliveries::select(&self.context.pool, id).await?;
        Ok(found.filter(|d| d.subscription_id == subscription_id).map(|d| Accepted {
            delivery_id: d.id.into(),
            status: if d.status == DeliveryStatus::Filtered { AcceptedStatus::Filtered } else { AcceptedStatus::Queued },
        }))
    }
}

/// What an ingest request proved about its sender.
enum Credential {
    Admin,
    Standard { id: String, timestamp: String, signature: String },
    Hub(String),
}

impl Credential {
    /// Checked in constant time against the current secret and, during a rotation
    /// overlap, the previous one. A subscription without a secret accepts no signature.
    fn authenticates(&self, subscription: &SubscriptionRow, body: &[u8]) -> bool {
        let secrets = subscription.live_secrets(OffsetDateTime::now_utc());
        match self {
            Credential::Admin => true,
            Credential::Standard { id, timestamp, signature } => secrets
                .iter()
                .any(|secret| verify_standard_webhooks_signature(secret, id, timestamp, body, signature)),
            Credential::Hub(signature) => secrets.iter().any(|secret| verify_hub_signature(secret, body, signature)),
        }
    }
}

/// Whether a `webhook-timestamp` (Unix seconds) is within the tolerance of `now`.
fn timestamp_is_fresh(timestamp: &str, now: OffsetDateTime) -> bool {
    let Ok(seconds) = timestamp.trim().parse::<i64>() else { return false };
    let Ok(at) = OffsetDateTime::from_unix_timestamp(seconds) else { return false };
    (at - now).abs() <= TIMESTAMP_TOLERANCE
}

/// One webhook to record.
struct Store<'a> {
    subscription_id: SubscriptionId,
    event_type: Option<&'a str>,
    body: Vec<u8>,
    status: AcceptedStatus,
}

impl Store<'_> {
    fn status_text(&self) -> &'static str {
        match self.status {
            AcceptedStatus::Queued => DeliveryStatus::Queued.as_str(),
            AcceptedStatus::Filtered => DeliveryStatus::Filtered.as_str(),
        }
    }

    /// Inserts within the caller's transaction (the idempotent path).
    async fn insert(&self, db: impl sqlx::PgExecutor<'_>) -> Result<Accepted, ApiError> {
        let delivery_id = DeliveryId::new();
        deliveries::insert(db, delivery_id, self.subscription_id, self.event_type, &self.body, self.status_text()).await?;
        Ok(Accepted { delivery_id: delivery_id.into(), status: self.status })
    }

    /// Inserts through the group commit, sharing a commit with concurrent requests.
    async fn insert_grouped(self, group_commit: &GroupCommit) -> Result<(Accepted, Placed), ApiError> {
        let delivery_id = DeliveryId::new();
        let status = self.status_text();
        let placed = group_commit
            .insert(NewDelivery {
                id: delivery_id,
                subscription_id: self.subscription_id,
                event_type: self.event_type.map(str::to_owned),
                body: self.body,
                status,
            })
            .await?;
        Ok((Accepted { delivery_id: delivery_id.into(), status: self.status }, placed))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_more_than_five_minutes_off_are_stale() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert!(timestamp_is_fresh("1800000000", now));
        assert!(timestamp_is_fresh("1799999700", now));
        assert!(timestamp_is_fresh("1800000300", now));
        assert!(!timestamp_is_fresh("1799999699", now));
        assert!(!timestamp_is_fresh("1800000301", now));
        assert!(!timestamp_is_fresh("soon", now));
        assert!(!timestamp_is_fresh("99999999999999999", now));
    }
}
