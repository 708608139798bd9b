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
//!   subscriptions deleted before the cutoff that nothing refers to are removed. An event
//!   goes with its last delivery; the sweep for the others looks only at events that grew
//!   old since the process's last complete sweep ([`run_once_after`]).
//! - Recoveries finished before the cutoff are deleted.

use std::fmt;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use crate::db::{self, partitions};
use crate::db::maintenance::{self, Sweep};

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
    /// Expired partitions left for the next pass: the first one's drop waited out its lock
    /// timeout (a long query on it), and PostgreSQL detaches one partition of a table at a
    /// time, so the newer expired ones after it wait too. The rest of the pass goes on.
    pub busy_partitions: Vec<String>,
    pub deleted_deliveries: u64,
    pub expired_parked_deliveries: u64,
    pub deleted_events: u64,
    pub deleted_idempotency_keys: u64,
    pub purged_subscriptions: u64,
    pub deleted_recoveries: u64,
    /// Every fan-out event created before this was checked (the cutoff, when the orphan
    /// sweep went to its end): where the next pass's sweep may start ([`run_once_after`]).
    pub events_checked_until: Option<OffsetDateTime>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped {
            return writeln!(f, "skipped: another instance is running maintenance");
        }
        let list = |names: &[String]| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        writeln!(f, "created partitions: {}", list(&self.created_partitions))?;
        writeln!(f, "dropped partitions: {}", list(&self.dropped_partitions))?;
        if !self.busy_partitions.is_empty() {
            writeln!(f, "partitions left for the next pass (one was busy): {}", list(&self.busy_partitions))?;
        }
        writeln!(f, "deleted finished deliveries: {}", self.deleted_deliveries)?;
        writeln!(f, "failed parked deliveries: {}", self.expired_parked_deliveries)?;
        writeln!(f, "deleted events: {}", self.deleted_events)?;
        writeln!(f, "deleted idempotency keys: {}", self.deleted_idempotency_keys)?;
        writeln!(f, "purged deleted subscriptions: {}", self.purged_subscriptions)?;
        writeln!(f, "deleted finished recoveries: {}", self.deleted_recoveries)
    }
}

/// Runs one pass as if the time were `now`, unless another instance is running one. Each
/// statement is given up after `deadline` (`db::bounded`): a database gone silent must not
/// stall retention for good.
pub async fn run_once(pool: &PgPool, now: OffsetDateTime, retention: Duration, deadline: Duration) -> anyhow::Result<Report> {
    run_once_after(pool, now, retention, deadline, None).await
}

/// [`run_once`], with the orphan-event sweep starting at `events_checked_until` (an earlier
/// report's): the maintenance loop passes its last one, so that a pass checks the events
/// that grew old since, not again every old event still referred to.
pub async fn run_once_after(
    pool: &PgPool,
    now: OffsetDateTime,
    retention: Duration,
    deadline: Duration,
    events_checked_until: Option<OffsetDateTime>,
) -> anyhow::Result<Report> {
    let mut connection = pool.acquire().await?;
    let locked = db::bounded(deadline, maintenance::try_lock(&mut connection)).await;
    if !locked.inspect_err(|_| connection.close_on_drop())? {
        return Ok(Report { skipped: true, ..Report::default() });
    }
    let pass = Pass { pool, deadline }.run(&mut connection, now, retention, events_checked_until).await;
    // The connection goes back to the pool as it was; or, if anything failed, it is closed:
    // the lock and the settings end with the session, and one gone silent is asked nothing
    // more.
    let restored = pass.is_ok()
        && db::bounded(deadline, maintenance::reset_lock_timeout(&mut connection)).await.is_ok()
        && db::bounded(deadline, maintenance::unlock(&mut connection)).await.is_ok();
    if !restored {
        connection.close_on_drop();
    }
    Ok(pass?)
}

/// What the batches of one sweep did in a pass.
#[derive(Debug, Default)]
struct Batches {
    rows: u64,
    /// Fan-out events that went with finished deliveries.
    events: u64,
    /// The last batch found less than a batch's worth: nothing was left to sweep.
    complete: bool,
}

/// One locked pass: the pool, for work on connections of its own, and each statement's limit.
struct Pass<'a> {
    pool: &'a PgPool,
    deadline: Duration,
}

impl Pass<'_> {
    async fn run(
        &self,
        connection: &mut PgConnection,
        now: OffsetDateTime,
        retention: Duration,
        events_checked_until: Option<OffsetDateTime>,
    ) -> sqlx::Result<Report> {
        let cutoff = now - retention;
        self.bounded(maintenance::set_lock_timeout(&mut *connection)).await?;
        let created_partitions = self.bounded(partitions::ensure_partitions(self.pool, now)).await?;
        let mut report = Report { created_partitions, ..Report::default() };
        self.bounded(maintenance::set_partition_lock_timeout(&mut *connection)).await?;
        for table in self.bounded(partitions::list_tables(&mut *connection)).await? {
            let day_ends = (table.day + time::Duration::days(1)).midnight().assume_utc();
            if day_ends > cutoff {
                continue;
            }
            if !report.busy_partitions.is_empty() {
                // The busy one is left half-detached, and PostgreSQL detaches one partition
                // of a table at a time.
                report.busy_partitions.push(table.name);
                continue;
            }
            match self.bounded(partitions::detach_and_drop(&mut *connection, &table)).await {
                Ok(()) => report.dropped_partitions.push(table.name),
                // A long query on that day's attempts: the deletes below must not wait for
                // it as well (the tables would grow meanwhile).
                Err(error) if partitions::is_lock_timeout(&error) => {
                    tracing::warn!(partition = %table.name, %error, "an old attempts partition is busy; dropping it at the next pass");
                    report.busy_partitions.push(table.name);
                }
                Err(error) => return Err(error),
            }
        }
        self.bounded(maintenance::set_lock_timeout(&mut *connection)).await?;
        let finished = self.batches(connection, Sweep::FinishedDeliveries, cutoff).await?;
        report.deleted_deliveries = finished.rows;
        report.expired_parked_deliveries = self.batches(connection, Sweep::ExpiredParkedDeliveries, cutoff).await?.rows;
        let since = events_checked_until.filter(|until| *until <= cutoff);
        let orphans = self.batches(connection, Sweep::OrphanEvents { since }, cutoff).await?;
        report.deleted_events = finished.events + orphans.rows;
        if orphans.complete {
            report.events_checked_until = Some(cutoff);
        }
        let idempotency_cutoff = now - Duration::from_secs(24 * 3600);
        report.deleted_idempotency_keys = self.batches(connection, Sweep::ExpiredIdempotencyKeys, idempotency_cutoff).await?.rows;
        report.purged_subscriptions = self.batches(connection, Sweep::DeletedSubscriptions, cutoff).await?.rows;
        report.deleted_recoveries = self.batches(connection, Sweep::FinishedRecoveries, cutoff).await?.rows;
        Ok(report)
    }

    /// Runs batches of `sweep` until one reports fewer rows than a batch, or
    /// [`MAX_BATCHES`] of them (the next pass continues).
    async fn batches(&self, connection: &mut PgConnection, sweep: Sweep, cutoff: OffsetDateTime) -> sqlx::Result<Batches> {
        let mut done = Batches::default();
        for _ in 0..MAX_BATCHES {
            let swept = self.bounded(maintenance::sweep(&mut *connection, sweep, cutoff, BATCH)).await?;
            done.rows += swept.rows as u64;
            done.events += swept.events as u64;
            if swept.rows < BATCH {
                done.complete = true;
                break;
            }
        }
        Ok(done)
    }

    /// `work`, failed once it has had no answer within the pass's statement deadline.
    async fn bounded<T>(&self, work: impl Future<Output = sqlx::Result<T>>) -> sqlx::Result<T> {
        db::bounded(self.deadline, work).await
    }
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
