//! Statements on `attempts`, the log of every HTTP attempt.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// One attempt as logged.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub subscription_id: Uuid,
    pub attempt_number: i32,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_excerpt: Option<String>,
    pub target_url: String,
    pub created_at: OffsetDateTime,
}

/// Appends many attempts in one statement.
pub async fn insert_many(db: impl PgExecutor<'_>, attempts: &[AttemptRow]) -> sqlx::Result<()> {
    let column = |f: fn(&AttemptRow) -> Uuid| attempts.iter().map(f).collect::<Vec<_>>();
    sqlx::query(include_str!("../../sql/attempts/insert_attempts.sql"))
        .bind(column(|a| a.delivery_id))
        .bind(column(|a| a.subscription_id))
        .bind(attempts.iter().map(|a| a.attempt_number).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.outcome.clone()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.error.clone()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.response_excerpt.clone()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.target_url.clone()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.created_at).collect::<Vec<_>>())
        .execute(db)
        .await?;
    Ok(())
}

/// A delivery's attempts in order; `since` is the delivery's creation time.
pub async fn list_for_delivery(
    db: impl PgExecutor<'_>,
    delivery_id: Uuid,
    since: OffsetDateTime,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_as(include_str!("../../sql/attempts/list_attempts_for_delivery.sql"))
        .bind(delivery_id)
        .bind(since)
        .fetch_all(db)
        .await
}

/// A subscription's most recent attempts, newest first.
pub async fn list_for_subscription(
    db: impl PgExecutor<'_>,
    subscription_id: Uuid,
    limit: i64,
) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_as(include_str!("../../sql/attempts/list_attempts_for_subscription.sql"))
        .bind(subscription_id)
        .bind(limit)
        .fetch_all(db)
        .await
}
