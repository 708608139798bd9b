//! Statements on `events`, the payloads of fan-out events.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;

use super::deliveries::{refuses_flush_wait, BatchKey};
use crate::domain::EventId;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: EventId,
    pub event_type: String,
    pub created_at: OffsetDateTime,
}

/// Stores an event's payload once; returns its creation time.
pub async fn insert(db: impl PgExecutor<'_>, id: EventId, event_type: &str, payload: &[u8]) -> sqlx::Result<OffsetDateTime> {
    sqlx::query_file_scalar!("sql/events/insert_event.sql", id.as_uuid(), event_type, payload).fetch_one(db).await
}

/// Reads one event, without its payload.
pub async fn select(db: impl PgExecutor<'_>, id: EventId) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_file_as!(EventRow, "sql/events/select_event.sql", id.as_uuid()).fetch_optional(db).await
}

/// Holds `key`'s advisory lock until the transaction ends (see the SQL file).
pub async fn hold_key(db: impl PgExecutor<'_>, key: BatchKey) -> sqlx::Result<()> {
    sqlx::query_file!("sql/events/hold_publish_key.sql", key.0).execute(db).await?;
    Ok(())
}

/// Whether event `id` exists, once it is durable (see the SQL file); on a database that
/// does not let us wait for a flush, whether it exists.
pub async fn find_durable(db: &mut PgConnection, id: EventId) -> sqlx::Result<bool> {
    match sqlx::query_file!("sql/events/find_durable_event.sql", id.as_uuid()).fetch_one(&mut *db).await.map(|row| row.durable) {
        Err(sqlx::Error::Database(error)) if refuses_flush_wait(error.code().as_deref()) => Ok(select(db, id).await?.is_some()),
        found => found,
    }
}
