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

/// Stores an event's payload once; returns its creation time. With `key`, its advisory
/// lock is taken first and held until the transaction ends (see the SQL file).
pub async fn insert(db: impl PgExecutor<'_>, id: EventId, event_type: &str, payload: &[u8], key: Option<BatchKey>) -> sqlx::Result<OffsetDateTime> {
    let key = key.map(|key| key.0);
    sqlx::query_file_scalar!("sql/events/insert_event.sql", id.as_uuid(), event_type, payload, key).fetch_one(db).await
}

/// Reads one event, without its payload.
pub async fn select(db: impl PgExecutor<'_>, id: EventId) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_file_as!(EventRow, "sql/events/select_event.sql", id.as_uuid()).fetch_optional(db).await
}

/// Whether event `id` exists, once it is durable (see the SQL file); on a database that
/// does not let us wait for a flush, whether it exists.
pub async fn find_durable(db: &mut PgConnection, id: EventId) -> sqlx::Result<bool> {
    match sqlx::query_file!("sql/events/find_durable_event.sql", id.as_uuid()).fetch_one(&mut *db).await.map(|row| row.durable) {
        Err(sqlx::Error::Database(error)) if refuses_flush_wait(error.code().as_deref()) => Ok(select(db, id).await?.is_some()),
        found => found,
    }
}
