//! Statements on `recoveries`, bulk re-queues of a subscription's failed deliveries.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::lifecycle::RecoveryStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecoveryRow {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub status: RecoveryStatus,
    pub matched: i32,
    pub requeued: i32,
    /// The last delivery re-queued (creation time, id): the next batch starts after it.
    pub cursor_created_at: OffsetDateTime,
    pub cursor_id: Uuid,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

/// What a new recovery covers.
#[derive(Debug, Clone)]
pub struct NewRecovery {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub matched: i32,
}

/// Starts a recovery (status `running`, cursor before the range).
pub async fn insert(db: impl PgExecutor<'_>, recovery: &NewRecovery) -> sqlx::Result<RecoveryRow> {
    sqlx::query_file_as!(
        RecoveryRow,
        "sql/recoveries/insert_recovery.sql",
        recovery.id,
        recovery.subscription_id,
        recovery.since,
        recovery.until,
        recovery.matched,
    )
    .fetch_one(db)
    .await
}

/// Reads one recovery.
pub async fn select(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<RecoveryRow>> {
    sqlx::query_file_as!(RecoveryRow, "sql/recoveries/select_recovery.sql", id).fetch_optional(db).await
}

/// Ids of up to `limit` running recoveries, oldest first.
pub async fn list_running(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_file_scalar!("sql/recoveries/list_running_recoveries.sql", limit).fetch_all(db).await
}

/// Locks a running recovery for one batch; `None` if it is done or locked by another instance.
pub async fn lock_running(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<RecoveryRow>> {
    sqlx::query_file_as!(RecoveryRow, "sql/recoveries/lock_running_recovery.sql", id).fetch_optional(db).await
}

/// Records a batch: `requeued` more, the last at `cursor`.
pub async fn advance(db: impl PgExecutor<'_>, id: Uuid, requeued: i32, cursor: (OffsetDateTime, Uuid)) -> sqlx::Result<()> {
    sqlx::query_file!("sql/recoveries/advance_recovery.sql", id, requeued, cursor.0, cursor.1).execute(db).await?;
    Ok(())
}

/// Marks a recovery done; `None` if it was done already.
pub async fn complete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<RecoveryRow>> {
    sqlx::query_file_as!(RecoveryRow, "sql/recoveries/complete_recovery.sql", id).fetch_optional(db).await
}
