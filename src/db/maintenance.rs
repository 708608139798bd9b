//! Statements of the maintenance pass (`crate::maintenance`): its advisory lock, its lock
//! timeouts, and the batched deletions of retention.

use sqlx::PgConnection;
use time::OffsetDateTime;

/// Takes the maintenance lock for this session; false if another session holds it.
pub async fn try_lock(db: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_file_scalar!("sql/maintenance/try_lock.sql").fetch_one(db).await
}

/// Releases the maintenance lock.
pub async fn unlock(db: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query_file!("sql/maintenance/unlock.sql").fetch_one(db).await?;
    Ok(())
}

/// Gives up on any lock not granted within 500 ms (the next pass tries again).
pub async fn set_lock_timeout(db: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query_file!("sql/maintenance/set_lock_timeout.sql").execute(db).await?;
    Ok(())
}

/// Waits up to 5 s for a lock: detaching and dropping an old partition.
pub async fn set_partition_lock_timeout(db: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query_file!("sql/maintenance/set_partition_lock_timeout.sql").execute(db).await?;
    Ok(())
}

/// Gives the pooled connection back with the default lock timeout.
pub async fn reset_lock_timeout(db: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query_file!("sql/maintenance/reset_lock_timeout.sql").execute(db).await?;
    Ok(())
}

/// One kind of batched clean-up, run as `($1 cutoff, $2 batch size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Finished deliveries completed before the cutoff, with their bodies.
    FinishedDeliveries,
    /// Deliveries parked since before the cutoff end as failed.
    ExpiredParkedDeliveries,
    /// Fan-out events older than the cutoff that no delivery refers to; only those created
    /// at or after `since`, when given (older ones were checked by an earlier sweep).
    OrphanEvents { since: Option<OffsetDateTime> },
    /// Idempotency records created before the cutoff.
    ExpiredIdempotencyKeys,
    /// Subscriptions deleted before the cutoff that nothing refers to.
    DeletedSubscriptions,
    /// Recoveries finished before the cutoff.
    FinishedRecoveries,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Rows of the sweep's table removed or changed.
    pub rows: i64,
    /// Fan-out events that went with the finished deliveries (their last ones).
    pub events: i64,
}

/// Runs one batch of `sweep`.
pub async fn sweep(db: &mut PgConnection, sweep: Sweep, cutoff: OffsetDateTime, batch: i64) -> sqlx::Result<Swept> {
    let rows = match sweep {
        Sweep::FinishedDeliveries => {
            let row = sqlx::query_file!("sql/maintenance/delete_finished_deliveries.sql", cutoff, batch).fetch_one(db).await?;
            return Ok(Swept { rows: row.count, events: row.events });
        }
        Sweep::ExpiredParkedDeliveries => {
            sqlx::query_file_scalar!("sql/maintenance/expire_parked_deliveries.sql", cutoff, batch).fetch_one(db).await
        }
        Sweep::OrphanEvents { since } => {
            sqlx::query_file_scalar!("sql/maintenance/delete_orphan_events.sql", cutoff, batch, since).fetch_one(db).await
        }
        Sweep::ExpiredIdempotencyKeys => {
            sqlx::query_file_scalar!("sql/maintenance/delete_expired_idempotency_keys.sql", cutoff, batch).fetch_one(db).await
        }
        Sweep::DeletedSubscriptions => {
            sqlx::query_file_scalar!("sql/maintenance/purge_deleted_subscriptions.sql", cutoff, batch).fetch_one(db).await
        }
        Sweep::FinishedRecoveries => {
            sqlx::query_file_scalar!("sql/maintenance/delete_finished_recoveries.sql", cutoff, batch).fetch_one(db).await
        }
    }?;
    Ok(Swept { rows, events: 0 })
}
