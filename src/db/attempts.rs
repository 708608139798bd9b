//! Statements on `attempts`, the log of every HTTP attempt.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::domain::lifecycle::AttemptOutcome;
use crate::domain::{DeliveryId, SubscriptionId};

/// One attempt as logged (written by `deliveries::record_attempts`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub attempt_number: i32,
    pub outcome: AttemptOutcome,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_excerpt: Option<String>,
    pub target_url: String,
    pub created_at: OffsetDateTime,
}

/// A delivery's attempts in order; `since` is the delivery's creation time.
pub async fn list_for_delivery(
    db: impl PgExecutor<'_>,
    delivery_id: DeliveryId,
    since: OffsetDateTime,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_file_as!(AttemptRow, "sql/attempts/list_attempts_for_delivery.sql", delivery_id.as_uuid(), since).fetch_all(db).await
}

/// A subscription's most recent attempts, newest first.
pub async fn list_for_subscription(
    db: impl PgExecutor<'_>,
    subscription_id: SubscriptionId,
    limit: i64,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_file_as!(AttemptRow, "sql/attempts/list_attempts_for_subscription.sql", subscription_id.as_uuid(), limit).fetch_all(db).await
}
