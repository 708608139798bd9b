//! Statements on `recoveries`, bulk re-queues of a subscription's failed deliveries.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::domain::lifecycle::RecoveryStatus;
use crate::domain::{DeliveryId, RecoveryId, SubscriptionId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecoveryRow {
    pub id: RecoveryId,
    pub subscription_id: SubscriptionId,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub status: RecoveryStatus,
    pub matched: i32,
    pub requeued: i32,
    /// The last delivery re-queued (creation time, id): the next batch starts after it.
    pub cursor_created_at: OffsetDateTime,
    pub cursor_id: DeliveryId,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

/// What a new recovery covers.
#[derive(Debug, Clone)]
pub struct NewRecovery {
    pub id: RecoveryId,
    pub subscription_id: SubscriptionId,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub matched: i32,
}

/// Starts a recovery (status `running`, cursor before the range).
pub async fn insert(db: impl PgExecutor<'_>, recovery: &NewRecovery) -> sqlx::Result<RecoveryRow> {
    sqlx::query_file_as!(
        RecoveryRow,
        "sql/recoveries/insert_recovery.sql",
        recovery.id.as_uuid(),
        recovery.subscription_id.as_uuid(),
        recovery.since,
        recovery.until,
        recovery.matched,
    )
    .fetch_one(db)
    .await
}

/// Reads one recovery.
pub async fn select(db: impl PgExecutor<'_>, id: RecoveryId) -> sqlx::Result<Option<RecoveryRow>> {
    sqlx::query_file_as!(RecoveryRow, "sql/recoveries/select_recovery.sql", id.as_uuid()).fetch_optional(db).await
}

/// Ids of up to `limit` running recoveries, oldest first.
pub async fn list_running(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<RecoveryId>> {
    let ids = sqlx::query_file_scalar!("sql/recoveries/list_running_recoveries.sql", limit).fetch_all(db).await?;
    Ok(ids.into_iter().map(RecoveryId::from).collect())
}

/// Locks a running recovery for one batch; `None` if it is done or locked by another instance.
pub async fn lock_running(db: impl PgExecutor<'_>, id: RecoveryId) -> sqlx::Result<Option<RecoveryRow>> {
    sqlx::query_file_as!(RecoveryRow, "sql/recoveries/lock_running_recovery.sql", id.as_uuid()).fetch_optional(db).await
}

/// Records a batch: `requeued` more, the last at `cursor`.
pub async fn advance(db: impl PgExecutor<'_>, id: RecoveryId, requeued: i32, cursor: (OffsetDateTime, DeliveryId)) -> sqlx::Result<()> {
    sqlx::query_file!("sql/recoveries/advance_recovery.sql", id.as_uuid(), requeued, cursor.0, cursor.1.as_uuid()).execute(db).await?;
    Ok(())
}

/// Marks a recovery done; `None` if it was done already.
pub async fn complete(db: impl PgExecutor<'_>, id: RecoveryId) -> sqlx::Result<Option<RecoveryRow>> {
    sqlx::query_file_as!(RecoveryRow, "sql/recoveries/complete_recovery.sql", id.as_uuid()).fetch_optional(db).await
}
