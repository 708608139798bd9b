//! Bulk recovery: re-queues a subscription's failed deliveries created in a time range, a
//! batch per transaction so that no statement locks a whole range at once. Each batch moves
//! the recovery's cursor (the last delivery re-queued) in the transaction that re-queues, so
//! a recovery interrupted anywhere (even by kill -9) resumes after its last committed batch,
//! on any instance, and re-queues nothing twice. When a batch finds nothing left, the
//! recovery is marked done and `webhookd.recovery.completed` is queued in that transaction.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{deliveries, operational_events, recoveries, subscriptions};
use crate::domain::operational_event::OperationalEvent;

/// Running recoveries looked at per pass.
const RECOVERIES_PER_PASS: i64 = 100;

/// What one batch did.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    /// Re-queued this many; there may be more.
    Requeued(usize),
    /// Nothing was left: the recovery is done (by this batch or already).
    Done,
    /// Another instance is running a batch of it now.
    Busy,
}

/// Works on every running recovery until each is done or `shutdown` is cancelled. Returns
/// how many deliveries were re-queued and how many recoveries completed.
pub async fn run_all(pool: &PgPool, batch_size: i64, shutdown: &CancellationToken) -> sqlx::Result<(usize, usize)> {
    let (mut requeued, mut completed) = (0, 0);
    for id in recoveries::list_running(pool, RECOVERIES_PER_PASS).await? {
        loop {
            if shutdown.is_cancelled() {
                return Ok((requeued, completed));
            }
            match run_batch(pool, id, batch_size).await? {
                Batch::Requeued(n) => requeued += n,
                Batch::Done => {
                    completed += 1;
                    break;
                }
                Batch::Busy => break,
            }
        }
    }
    Ok((requeued, completed))
}

async fn run_batch(pool: &PgPool, id: Uuid, batch_size: i64) -> sqlx::Result<Batch> {
    let mut tx = pool.begin().await?;
    let Some(recovery) = recoveries::lock_running(&mut *tx, id).await? else {
        return Ok(Batch::Busy);
    };
    // A subscription paused or disabled since the recovery started gets its deliveries back
    // parked, as its other waiting deliveries are; a deleted one gets nothing back.
    let subscription = subscriptions::select(&mut *tx, recovery.subscription_id).await?.filter(|s| s.deleted_at.is_none());
    let requeued = match subscription {
        Some(subscription) => {
            let cursor = (recovery.cursor_created_at, recovery.cursor_id);
            deliveries::requeue_failed_batch(&mut *tx, recovery.subscription_id, recovery.until, cursor, subscription.is_active, batch_size)
                .await?
        }
        None => Vec::new(),
    };
    if let Some(&last) = requeued.iter().max() {
        recoveries::advance(&mut *tx, id, requeued.len() as i32, last).await?;
        tx.commit().await?;
        return Ok(Batch::Requeued(requeued.len()));
    }
    if let Some(done) = recoveries::complete(&mut *tx, id).await? {
        let event = OperationalEvent::RecoveryCompleted {
            recovery_id: done.id,
            subscription_id: done.subscription_id,
            matched: done.matched.into(),
            requeued: done.requeued.into(),
        };
        operational_events::insert(&mut *tx, &event).await?;
        tracing::info!(recovery.id = %id, matched = done.matched, requeued = done.requeued, "recovery completed");
    }
    tx.commit().await?;
    Ok(Batch::Done)
}
