//! Retention and partition upkeep, run every few minutes on exactly one instance (an
//! advisory lock), or once by `webhookd maintenance [--now <time>]`.
//!
//! - Attempt partitions for yesterday through three days ahead are created.
//! - Attempt partitions whose whole day ended before `now - retention` are detached
//!   (concurrently: inserts go on) and dropped. With daily partitions an attempt lives at
//!   most retention + one day.
//! - Finished deliveries (`succeeded`, `failed`, `filtered`) completed before the cutoff are
//!   deleted in small index-driven batches; unfinished ones never are.
//! - Deliveries parked since before the cutoff (subscription inactive) end as `failed`.
//! - Fan-out events no delivery refers to, idempotency records older than 24 hours, and
//!   subscriptions deleted before the cutoff that nothing refers to are removed.
//! - Recoveries finished before the cutoff are deleted.

use std::fmt;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::db::maintenance::{self, Sweep};
use crate::db::partitions;

/// Rows per batch statement: small enough that each holds its locks only briefly.
const BATCH: i64 = 2_000;
/// Most batches per table and pass; the next pass continues.
const MAX_BATCHES: usize = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Another instance held the lock: nothing was done.
    pub skipped: bool,
    pub created_partitions: Vec<String>,
    pub dropped_partitions: Vec<String>,
    pub deleted_deliveries: u64,
    pub expired_parked_deliveries: u64,
    pub deleted_events: u64,
    pub deleted_idempotency_keys: u64,
    pub purged_subscriptions: u64,
    pub deleted_recoveries: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped {
            return writeln!(f, "skipped: another instance is running maintenance");
        }
        let list = |names: &[String]| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        writeln!(f, "created partitions: {}", list(&self.created_partitions))?;
        writeln!(f, "dropped partitions: {}", list(&self.dropped_partitions))?;
        writeln!(f, "deleted finished deliveries: {}", self.deleted_deliveries)?;
        writeln!(f, "failed parked deliveries: {}", self.expired_parked_deliveries)?;
        writeln!(f, "deleted events: {}", self.deleted_events)?;
        writeln!(f, "deleted idempotency keys: {}", self.deleted_idempotency_keys)?;
        writeln!(f, "purged deleted subscriptions: {}", self.purged_subscriptions)?;
        writeln!(f, "deleted finished recoveries: {}", self.deleted_recoveries)
    }
}

/// Runs one pass as if the time were `now`, unless another instance is running one.
pub async fn run_once(pool: &PgPool, now: OffsetDateTime, retention: Duration) -> anyhow::Result<Report> {
    let mut connection = pool.acquire().await?;
    if !maintenance::try_lock(&mut connection).await? {
        return Ok(Report { skipped: true, ..Report::default() });
    }
    maintenance::set_lock_timeout(&mut connection).await?;
    let result = run_locked(pool, &mut connection, now, retention).await;
    // Always give the connection back as it was, even after a failure.
    let _ = maintenance::reset_lock_timeout(&mut connection).await;
    let _ = maintenance::unlock(&mut connection).await;
    result
}

async fn run_locked(pool: &PgPool, connection: &mut PgConnection, now: OffsetDateTime, retention: Duration) -> anyhow::Result<Report> {
    let cutoff = now - retention;
    let mut report = Report { created_partitions: partitions::ensure_partitions(pool, now).await?, ..Report::default() };
    maintenance::set_partition_lock_timeout(&mut *connection).await?;
    for table in partitions::list_tables(&mut *connection).await? {
        let day_ends = (table.day + time::Duration::days(1)).midnight().assume_utc();
        if day_ends <= cutoff {
            partitions::detach_and_drop(&mut *connection, &table).await?;
            report.dropped_partitions.push(table.name);
        }
    }
    maintenance::set_lock_timeout(&mut *connection).await?;
    report.deleted_deliveries = batches(&mut *connection, Sweep::FinishedDeliveries, cutoff).await?;
    report.expired_parked_deliveries = batches(&mut *connection, Sweep::ExpiredParkedDeliveries, cutoff).await?;
    report.deleted_events = batches(&mut *connection, Sweep::OrphanEvents, cutoff).await?;
    let idempotency_cutoff = now - Duration::from_secs(24 * 3600);
    report.deleted_idempotency_keys = batches(&mut *connection, Sweep::ExpiredIdempotencyKeys, idempotency_cutoff).await?;
    report.purged_subscriptions = batches(&mut *connection, Sweep::DeletedSubscriptions, cutoff).await?;
    report.deleted_recoveries = batches(&mut *connection, Sweep::FinishedRecoveries, cutoff).await?;
    Ok(report)
}

/// Runs batches of `sweep` until one reports fewer rows than a batch.
async fn batches(connection: &mut PgConnection, sweep: Sweep, cutoff: OffsetDateTime) -> sqlx::Result<u64> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let affected = maintenance::sweep(&mut *connection, sweep, cutoff, BATCH).await?;
        let affected = affected as u64;
        total += affected;
        if affected < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

/// Whether the partitions for today and the next two days exist (checked by `/health`).
pub async fn missing_partitions(pool: &PgPool, now: OffsetDateTime) -> sqlx::Result<Vec<String>> {
    let existing = partitions::list(pool).await?;
    let today = now.to_offset(time::UtcOffset::UTC).date();
    Ok((0..=2)
        .map(|offset| partitions::partition_name(today + time::Duration::days(offset)))
        .filter(|name| !existing.contains(name))
        .collect())
}
