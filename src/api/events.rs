//! `/events`: fan-out of one event to every active subscription that wants its type.

use poem::Request;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::AdminAuth;
use super::body::{read_limited, RawJson};
use super::deliveries::Delivery;
use super::idempotency::{self, IdempotencyKey, Reservation};
use super::{ApiContext, ApiTags};
use crate::db::deliveries::BatchKey;
use crate::db::{self, deliveries, events};
use crate::domain::event_type::validate_producer_event_type;
use crate::domain::EventId;
use crate::error::{is_unavailable, ApiError};
use crate::publish::{self, Audience};

/// An event to deliver to every subscription that wants it.
#[derive(Debug, Object)]
pub struct PublishEvent {
    /// Exact event name, e.g. `order.created`.
    pub event_type: String,
    /// Any JSON value: delivered to each subscriber byte for byte as sent here.
    pub payload: serde_json::Value,
}

/// The same request, parsed keeping `payload`'s exact bytes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest<'a> {
    event_type: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// One delivery created by an event.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct EventDelivery {
    pub subscription_id: Uuid,
    pub delivery_id: Uuid,
}

/// The event was stored with one queued delivery per matching subscription.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Published {
    pub event_id: Uuid,
    pub deliveries: Vec<EventDelivery>,
}

/// An event and where its deliveries stand.
#[derive(Debug, Object)]
pub struct EventDetail {
    pub event_id: Uuid,
    pub event_type: String,
    pub created_at: OffsetDateTime,
    pub deliveries: Vec<Delivery>,
}

#[derive(ApiResponse)]
enum PublishResponse {
    /// Committed: every matching subscription has a queued delivery (possibly none matched).
    #[oai(status = 202)]
    Accepted(Json<Published>),
}

pub struct EventsApi {
    context: ApiContext,
}

impl EventsApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Publish an event to every active subscription that wants its type.
    ///
    /// All deliveries are created in one transaction; the payload is stored once.
    #[oai(path = "/events", method = "post")]
    async fn publish(
        &self,
        _auth: AdminAuth,
        request: &Request,
        /// Makes retries of this request safe for 24 hours.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: RawJson<PublishEvent>,
    ) -> Result<PublishResponse, ApiError> {
        let idempotency_key = IdempotencyKey::parse(idempotency_key.0)?;
        let length = request.header("content-length").and_then(|v| v.parse().ok());
        let bytes = read_limited(length, body.0, self.context.settings.http.max_payload).await?;
        let parsed: PublishRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("invalid_body", format!("expected {{\"event_type\": string, \"payload\": any JSON}}: {e}")))?;
        validate_producer_event_type(&parsed.event_type).map_err(|m| ApiError::bad_request("invalid_event_type", m))?;
        let event_type = parsed.event_type.as_str();
        let payload = parsed.payload.get().as_bytes();

        // `created`: false when a repeated key answered with the first request's event.
        let (published, created) = match idempotency_key {
            None => (self.publish_unkeyed(event_type, payload).await?, true),
            Some(key) => {
                let hash = Sha256::digest(&bytes).to_vec();
                match idempotency::reserve(&self.context.pool, "events", &key, &hash).await? {
                    Reservation::Replay(first) => (first, false),
                    Reservation::Fresh(mut tx) => {
                        let published = fan_out(&mut tx, event_type, payload, None).await?;
                        idempotency::commit(tx, "events", &key, &published).await?;
                        (published, true)
                    }
                }
            }
        };
        if created && !published.deliveries.is_empty() {
            self.context.waker.wake();
            self.context.metrics.webhooks_ingested(published.deliveries.len() as u64);
        }
        tracing::info!(event.id = %published.event_id, event_type, deliveries = published.deliveries.len(), "event published");
        Ok(PublishResponse::Accepted(Json(published)))
    }

    /// Get an event and the status of each of its deliveries.
    #[oai(path = "/events/:event_id", method = "get")]
    async fn get(&self, _auth: AdminAuth, event_id: Path<Uuid>) -> Result<Json<EventDetail>, ApiError> {
        let pool = &self.context.pool;
        let event = events::select(pool, event_id.0.into()).await?.ok_or_else(|| ApiError::not_found("no event with this id"))?;
        let rows = deliveries::list_for_event(pool, event.id).await?;
        Ok(Json(EventDetail {
            event_id: event.id.into(),
            event_type: event.event_type,
            created_at: event.created_at,
            deliveries: rows.into_iter().map(Delivery::from).collect(),
        }))
    }
}

impl EventsApi {
    /// Publishes an event sent without an `Idempotency-Key`. Should the answer to its COMMIT
    /// be lost (the connection dropped, or no answer within the statement deadline), the
    /// event may have been committed all the same: a 503 would then have its producer publish
    /// it again, and every subscriber receive it twice, under two webhook ids. So its
    /// transaction holds a lock of its own until it ends, and the event is looked for once
    /// that lock is free ([`confirm_unanswered_commit`]).
    async fn publish_unkeyed(&self, event_type: &str, payload: &[u8]) -> Result<Published, ApiError> {
        let (pool, deadline) = (&self.context.pool, self.context.settings.database.statement_deadline);
        let key = BatchKey::new();
        let mut tx = pool.begin().await?;
        let published = fan_out(&mut tx, event_type, payload, Some(key)).await?;
        match db::bounded(deadline, tx.commit()).await {
            Ok(()) => Ok(published),
            Err(error) if is_unavailable(&error) => confirm_unanswered_commit(pool, deadline, key, published, error).await,
            Err(error) => Err(error.into()),
        }
    }
}

/// Answers an event whose COMMIT got no answer: waits on another connection until its
/// transaction has ended on the server (its lock, `key`, is free), then answers 202 if the
/// event is there and durable (the deliveries committed with it) and 503 if not. A look
/// that fails too answers 503, as the commit's `error` would have; so does the request's
/// own deadline (body timeout plus statement deadline), should it pass first.
async fn confirm_unanswered_commit(
    pool: &PgPool,
    deadline: Duration,
    key: BatchKey,
    published: Published,
    error: sqlx::Error,
) -> Result<Published, ApiError> {
    tracing::warn!(%error, event.id = %published.event_id, "an event's commit got no answer; looking for the event before answering");
    let event_id = EventId::from(published.event_id);
    let look = db::within_deadline(pool, deadline, async |db| {
        deliveries::wait_for_earlier_try(db, key).await?;
        events::find_durable(db, event_id).await
    });
    match look.await {
        Ok(true) => {
            tracing::info!(event.id = %published.event_id, "found the event whose commit got no answer: committed, answered 202");
            Ok(published)
        }
        Ok(false) => {
            tracing::info!(event.id = %published.event_id, "the event whose commit got no answer is not in the database: not stored, answered 503");
            Err(ApiError::unavailable())
        }
        Err(look_error) => {
            tracing::warn!(error = %look_error, "cannot find out whether an event without an answer committed; answering 503");
            Err(error.into())
        }
    }
}

/// Stores the event and one delivery per matching subscription, in the caller's transaction
/// (holding `key`'s lock from its first write, if given).
async fn fan_out(tx: &mut PgConnection, event_type: &str, payload: &[u8], key: Option<BatchKey>) -> Result<Published, ApiError> {
    let published = publish::publish(tx, Audience::Subscribers, event_type, payload, key).await?;
    let deliveries = published
        .deliveries
        .into_iter()
        .map(|(subscription_id, delivery_id)| EventDelivery { subscription_id: subscription_id.into(), delivery_id: delivery_id.into() })
        .collect();
    Ok(Published { event_id: published.event_id.into(), deliveries })
}
