//! What happened to each webhook: `GET /deliveries/{id}` and a subscription's recent
//! deliveries and attempts.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::AdminAuth;
use super::{page_limit, ApiContext, ApiTags};
use crate::db::attempts::{self, AttemptRow};
use crate::db::deliveries::{self, DeliveryRow};
use crate::db::subscriptions;
use crate::domain::lifecycle::{AttemptOutcome, DeliveryStatus};
use crate::domain::{DeliveryId, SubscriptionId};
use crate::error::ApiError;

/// One HTTP attempt.
#[derive(Debug, Object)]
pub struct Attempt {
    pub attempt_number: i32,
    pub outcome: AttemptOutcome,
    /// The receiver's HTTP status; null when no response arrived.
    pub status_code: Option<i32>,
    /// Why the attempt failed (timeout, connection error, non-2xx status, ...).
    pub error: Option<String>,
    pub duration_ms: i32,
    /// The first 1 KiB of the response body.
    pub response_excerpt: Option<String>,
    pub target_url: String,
    pub created_at: OffsetDateTime,
}

impl From<AttemptRow> for Attempt {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempt_number: row.attempt_number,
            outcome: row.outcome,
            status_code: row.status_code,
            error: row.error,
            duration_ms: row.duration_ms,
            response_excerpt: row.response_excerpt,
            target_url: row.target_url,
            created_at: row.created_at,
        }
    }
}

/// An attempt listed for a subscription, with the delivery it belongs to.
#[derive(Debug, Object)]
pub struct SubscriptionAttempt {
    pub delivery_id: Uuid,
    #[oai(flatten)]
    pub attempt: Attempt,
}

impl From<AttemptRow> for SubscriptionAttempt {
    fn from(row: AttemptRow) -> Self {
        Self { delivery_id: row.delivery_id.into(), attempt: row.into() }
    }
}

/// A delivery: one webhook on its way to one subscription.
#[derive(Debug, Object)]
pub struct Delivery {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub event_type: Option<String>,
    /// The fan-out event this delivery belongs to, if any.
    pub event_id: Option<Uuid>,
    pub status: DeliveryStatus,
    /// Attempts made so far (including one in progress).
    pub attempt_count: i32,
    /// When the next attempt is due; null while delivering, once finished, or while the
    /// subscription is inactive.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Why it stopped early, e.g. `subscription_deleted`; otherwise the last attempt's error.
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

impl From<DeliveryRow> for Delivery {
    fn from(row: DeliveryRow) -> Self {
        let status = row.status;
        // A parked delivery's 'infinity' due time already reads as null (see the SQL).
        let next_attempt_at = row.next_attempt_at.filter(|_| status.is_waiting());
        Self {
            id: row.id.into(),
            subscription_id: row.subscription_id.into(),
            event_type: row.event_type,
            event_id: row.event_id.map(Uuid::from),
            status,
            attempt_count: row.attempt_count,
            next_attempt_at,
            last_error: row.last_error,
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

/// A delivery with every attempt made for it.
#[derive(Debug, Object)]
pub struct DeliveryDetail {
    #[oai(flatten)]
    pub delivery: Delivery,
    /// In attempt order.
    pub attempts: Vec<Attempt>,
}

/// A page of deliveries or attempts, newest first.
#[derive(Debug, Object)]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
}

#[derive(Debug, Object)]
pub struct AttemptList {
    pub items: Vec<SubscriptionAttempt>,
}

#[derive(ApiResponse)]
enum RetryResponse {
    /// Re-queued; it will be attempted shortly.
    #[oai(status = 202)]
    Accepted(Json<Delivery>),
}

pub struct DeliveriesApi {
    context: ApiContext,
}

impl DeliveriesApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }

    /// 404 unless the subscription exists or existed (a deleted one keeps its logs).
    async fn require_subscription(&self, id: SubscriptionId) -> Result<(), ApiError> {
        match subscriptions::select(&self.context.pool, id).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found("no subscription with this id")),
        }
    }

    /// Re-queues a finished delivery (409 while it is in flight or was filtered, or when its
    /// subscription is deleted or inactive).
    pub(crate) async fn requeue(&self, id: DeliveryId) -> Result<DeliveryRow, ApiError> {
        let pool = &self.context.pool;
        if !deliveries::retry(pool, id).await? {
            let row = deliveries::select(pool, id).await?.ok_or_else(|| ApiError::not_found("no delivery with this id"))?;
            if !matches!(row.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed) {
                let message = format!("only a succeeded or failed delivery can be retried; this one is {}", row.status.as_str());
                return Err(ApiError::conflict("delivery_not_finished", message));
            }
            return Err(match subscriptions::select(pool, row.subscription_id).await? {
                Some(subscription) if subscription.deleted_at.is_none() => {
                    ApiError::conflict("subscription_inactive", "the subscription is inactive; activate it before retrying its deliveries")
                }
                _ => ApiError::conflict("subscription_deleted", "the subscription was deleted: its deliveries can no longer be sent"),
            });
        }
        self.context.waker.wake();
        let row = deliveries::select(pool, id).await?.ok_or_else(|| ApiError::not_found("no delivery with this id"))?;
        tracing::info!(delivery.id = %row.id, "delivery re-queued by an operator");
        Ok(row)
    }
}

#[OpenApi(tag = "ApiTags::Deliveries")]
impl DeliveriesApi {
    /// Get a delivery and all of its attempts.
    #[oai(path = "/deliveries/:delivery_id", method = "get")]
    async fn get(&self, _auth: AdminAuth, delivery_id: Path<Uuid>) -> Result<Json<DeliveryDetail>, ApiError> {
        let pool = &self.context.pool;
        let row = deliveries::select(pool, delivery_id.0.into())
            .await?
            .ok_or_else(|| ApiError::not_found("no delivery with this id"))?;
        let attempts = attempts::list_for_delivery(pool, row.id, row.created_at).await?;
        Ok(Json(DeliveryDetail {
            delivery: row.into(),
            attempts: attempts.into_iter().map(Attempt::from).collect(),
        }))
    }

    /// Re-queue a finished (succeeded or failed) delivery for a fresh round of attempts.
    ///
    /// Attempt numbers continue; the retry schedule starts over. 409 while it is still in
    /// flight (queued, delivering, retrying) or was filtered, and when its subscription is
    /// inactive (`subscription_inactive`) or deleted (`subscription_deleted`).
    #[oai(path = "/deliveries/:delivery_id/retry", method = "post")]
    async fn retry(&self, _auth: AdminAuth, delivery_id: Path<Uuid>) -> Result<RetryResponse, ApiError> {
        let row = self.requeue(delivery_id.0.into()).await?;
        Ok(RetryResponse::Accepted(Json(row.into())))
    }

    /// A subscription's most recent deliveries, newest first.
    #[oai(path = "/subscriptions/:id/deliveries", method = "get")]
    async fn list_deliveries(
        &self,
        _auth: AdminAuth,
        id: Path<Uuid>,
        /// 1 to 100 (default 20).
        limit: Query<Option<i64>>,
        /// Only deliveries in this status.
        status: Query<Option<DeliveryStatus>>,
    ) -> Result<Json<DeliveryList>, ApiError> {
        let limit = page_limit(limit.0, 20, 100)?;
        let id = SubscriptionId::from(id.0);
        self.require_subscription(id).await?;
        let rows = deliveries::list_for_subscription(&self.context.pool, id, status.0, limit).await?;
        Ok(Json(DeliveryList { items: rows.into_iter().map(Delivery::from).collect() }))
    }

    /// A subscription's most recent attempts, newest first.
    #[oai(path = "/subscriptions/:id/attempts", method = "get")]
    async fn list_attempts(
        &self,
        _auth: AdminAuth,
        id: Path<Uuid>,
        /// 1 to 100 (default 20).
        limit: Query<Option<i64>>,
    ) -> Result<Json<AttemptList>, ApiError> {
        let limit = page_limit(limit.0, 20, 100)?;
        let id = SubscriptionId::from(id.0);
        self.require_subscription(id).await?;
        let rows = attempts::list_for_subscription(&self.context.pool, id, limit).await?;
        Ok(Json(AttemptList { items: rows.into_iter().map(SubscriptionAttempt::from).collect() }))
    }
}
