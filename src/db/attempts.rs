//! Statements on `attempts`, the log of every HTTP attempt.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::lifecycle::AttemptOutcome;

/// One attempt as logged (written by `deliveries::record_attempts`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub subscription_id: Uuid,
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
    delivery_id: Uuid,
    since: OffsetDateTime,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_file_as!(AttemptRow, "sql/attempts/list_attempts_for_delivery.sql", delivery_id, since).fetch_all(db).await
}

/// A subscription's most recent attempts, newest first.
pub async fn list_for_subscription(
    db: impl PgExecutor<'_>,
    subscription_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_file_as!(AttemptRow, "sql/attempts/list_attempts_for_subscription.sql", subscription_id, limit).fetch_all(db).await
}
