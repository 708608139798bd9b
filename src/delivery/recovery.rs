//! Bulk recovery: re-queues a subscription's failed deliveries created in a time range, a
//! batch per transaction so that no statement locks a whole range at once. Each batch moves
//! the recovery's cursor (the last delivery re-queued) in the transaction that re-queues, so
//! a recovery interrupted anywhere (even by kill -9) resumes after its last committed batch,
//! on any instance, and re-queues nothing twice. When a batch finds nothing left, the
//! recovery is marked done and `webhookd.recovery.completed` is queued in that transaction.
//!
//! A recovery waits while its subscription is inactive (paused or disabled): re-queued
//! deliveries would only be parked. One of a deleted subscription ends at once.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::deliveries::{self, RecoveryBatch};
use crate::db::{self, operational_events, recoveries, subscriptions};
use crate::domain::operational_event::OperationalEvent;
use crate::domain::RecoveryId;

/// Running recoveries looked at per round.
const RECOVERIES_PER_ROUND: i64 = 100;

/// What one batch did.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    /// Re-queued this many; there may be more.
    Requeued(usize),
    /// Nothing was left: the recovery is done now.
    Done,
    /// Nothing to do now: the recovery is done already, another instance is running a batch
    /// of it, or its subscription is inactive.
    Idle,
}

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub requeued: usize,
    pub completed: usize,
}

impl Round {
    /// Whether another round right away may find more to do.
    pub fn progressed(&self) -> bool {
        self.requeued > 0 || self.completed > 0
    }
}

/// One batch of every running recovery (round-robin, so a large recovery neither starves
/// the others nor holds up the operational events relayed between rounds). Each statement
/// or batch transaction is given up after `deadline` (`db::bounded`).
pub async fn run_round(pool: &PgPool, batch_size: i64, deadline: Duration, shutdown: &CancellationToken) -> sqlx::Result<Round> {
    let mut round = Round::default();
    for id in db::bounded(deadline, recoveries::list_running(pool, RECOVERIES_PER_ROUND)).await? {
        if shutdown.is_cancelled() {
            break;
        }
        match db::bounded(deadline, run_batch(pool, id, batch_size)).await? {
            Batch::Requeued(n) => round.requeued += n,
            Batch::Done => round.completed += 1,
            Batch::Idle => {}
        }
    }
    Ok(round)
}

async fn run_batch(pool: &PgPool, id: RecoveryId, batch_size: i64) -> sqlx::Result<Batch> {
    let mut tx = pool.begin().await?;
    let Some(recovery) = recoveries::lock_running(&mut *tx, id).await? else {
        return Ok(Batch::Idle);
    };
    // FOR SHARE: a pause or delete committing meanwhile waits for this batch, so the batch
    // never re-queues due-now deliveries of a subscription that was just paused.
    let subscription = subscriptions::select_for_share(&mut *tx, recovery.subscription_id).await?;
    let requeued = match subscription {
        Some(subscription) if subscription.deleted_at.is_none() => {
            if !subscription.is_active {
                return Ok(Batch::Idle);
            }
            let batch = RecoveryBatch {
                subscription_id: recovery.subscription_id,
                until: recovery.until,
                failed_by: recovery.created_at,
                cursor: (recovery.cursor_created_at, recovery.cursor_id),
                limit: batch_size,
            };
            deliveries::requeue_failed_batch(&mut *tx, &batch).await?
        }
        _ => Vec::new(),
    };
    // (created_at, id) tuples order as PostgreSQL orders the rows: uuid compares bytewise.
    if let Some(&last) = requeued.iter().max() {
        recoveries::advance(&mut *tx, id, requeued.len() as i32, last).await?;
        tx.commit().await?;
        return Ok(Batch::Requeued(requeued.len()));
    }
    let Some(done) = recoveries::complete(&mut *tx, id).await? else {
        return Ok(Batch::Idle);
    };
    let event = OperationalEvent::RecoveryCompleted {
        recovery_id: done.id,
        subscription_id: done.subscription_id,
        matched: done.matched.into(),
        requeued: done.requeued.into(),
    };
    operational_events::insert(&mut *tx, &event).await?;
    tx.commit().await?;
    tracing::info!(recovery.id = %id, matched = done.matched, requeued = done.requeued, "recovery completed");
    Ok(Batch::Done)
}
