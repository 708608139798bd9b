//! Statements on `operational_events`, the outbox of webhookd's own `webhookd.*` events.

use sqlx::PgExecutor;
use time::OffsetDateTime;

use crate::domain::operational_event::OperationalEvent;

/// An operational event waiting to be fanned out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedOperationalEvent {
    pub id: i64,
    pub event_type: String,
    /// The envelope's `data` object, as JSON text.
    pub data: String,
    pub created_at: OffsetDateTime,
}

/// Queues `event` in the caller's transaction (the transaction of what caused it).
pub async fn insert(db: impl PgExecutor<'_>, event: &OperationalEvent) -> sqlx::Result<()> {
    sqlx::query_file!("sql/operational_events/insert_operational_event.sql", event.event_type(), event.data()).execute(db).await?;
    Ok(())
}

/// Takes (deletes) up to `limit` queued events, oldest first, skipping those another
/// instance is taking; the caller fans them out before it commits.
pub async fn take(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<QueuedOperationalEvent>> {
    sqlx::query_file_as!(QueuedOperationalEvent, "sql/operational_events/take_operational_events.sql", limit).fetch_all(db).await
}
