//! Moving a subscription's waiting deliveries when it is paused, resumed or deleted.
//!
//! Pausing (or disabling) a subscription parks its waiting deliveries (due 'infinity': out
//! of claims), resuming makes them due again, deleting ends them as failed. A backlog can
//! hold millions of rows (a receiver down for a day). Moved by one statement in the
//! transaction that changed the subscription, a million took about 19 s here, all the while
//! holding the subscription's row: an admin's pause outlived the API deadline and was rolled
//! back, and the outcome writer, which updates that row whenever the subscription's failure
//! streak grows, waited with every other customer's outcomes behind it (an automatic disable
//! of a dead endpoint did exactly that).
//!
//! So a change of state commits on its own, then moves one [`BATCH`] in a transaction of its
//! own before it answers ([`start_moving`]), and this task moves the rest a batch per
//! transaction: on the instance that made the change (woken by
//! [`Waker::move_backlog`](super::Waker::move_backlog)), and on every instance after a
//! sweep at start-up and every [`SWEEP_EVERY`], which finds backlogs left half-moved by an
//! instance that stopped. Meanwhile a claimed delivery of a paused subscription is given
//! back unsent by its worker (parked), and one of a deleted subscription is cancelled, as
//! ever.
//!
//! A change of state and every batch take turns on the subscription's backlog lock
//! (`deliveries::take_backlog_turn`), and a batch reads the state while holding it: a batch
//! never moves rows the way a state since overtaken said, and each mover stops only after a
//! batch that found less than a whole batch to move.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{DeliveryContext, Waker};
use crate::db::subscriptions::{self, SubscriptionState};
use crate::db::{self, deliveries};
use crate::domain::SubscriptionId;

/// Rows moved per transaction: about 10-20 ms of work, the longest a change of state waits
/// for a batch under way.
pub const BATCH: i64 = 1_000;
/// How often every instance looks for backlogs left half-moved.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Which way a subscription's waiting deliveries move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Paused or disabled: parked.
    Park,
    /// Active: due now.
    Resume,
    /// Deleted: failed.
    Cancel,
}

impl Move {
    /// Where the waiting deliveries of a subscription in `state` belong.
    fn for_state(state: SubscriptionState) -> Self {
        match state {
            SubscriptionState { deleted: true, .. } => Self::Cancel,
            SubscriptionState { is_active: true, .. } => Self::Resume,
            SubscriptionState { is_active: false, .. } => Self::Park,
        }
    }

    /// Moves up to [`BATCH`] of `subscription`'s waiting deliveries, in a transaction that
    /// holds its backlog turn (`deliveries::take_backlog_turn`). Returns how many moved.
    async fn batch(self, db: &mut PgConnection, subscription: SubscriptionId) -> sqlx::Result<u64> {
        match self {
            Self::Park => deliveries::park_for_subscription(db, subscription, BATCH).await,
            Self::Resume => deliveries::resume_for_subscription(db, subscription, BATCH).await,
            Self::Cancel => deliveries::cancel_for_subscription(db, subscription, BATCH).await,
        }
    }
}

/// Subscriptions whose backlogs this instance is to move, and the task's wake-up.
#[derive(Default)]
pub struct Requests {
    subscriptions: Mutex<Vec<SubscriptionId>>,
    added: Notify,
}

impl Requests {
    pub(super) fn add(&self, subscription: SubscriptionId) {
        self.subscriptions.lock().unwrap_or_else(PoisonError::into_inner).push(subscription);
        self.added.notify_one();
    }

    fn take(&self) -> Vec<SubscriptionId> {
        let mut taken = std::mem::take(&mut *self.subscriptions.lock().unwrap_or_else(PoisonError::into_inner));
        taken.sort_unstable();
        taken.dedup();
        taken
    }
}

/// After a change of a subscription's state has committed: moves the first batch of its
/// waiting deliveries now, in a transaction of its own, and leaves the rest (or, should
/// that fail, everything) to the backlog task. Not in the change's own transaction: that
/// one holds the subscription's row, and the outcome writer, holding a just-claimed
/// delivery's row, may be waiting for it to update the failure streak while the batch
/// waits for that delivery (a deadlock). Returns how many moved.
pub async fn start_moving(pool: &PgPool, deadline: Duration, waker: &Waker, subscription: SubscriptionId) -> u64 {
    match db::bounded(deadline, one_batch(pool, subscription)).await {
        Ok((_, moved)) => {
            if moved >= BATCH as u64 {
                waker.move_backlog(subscription);
            }
            moved
        }
        Err(error) => {
            tracing::warn!(subscription.id = %subscription, %error, "cannot move waiting deliveries now; the backlog task will");
            waker.move_backlog(subscription);
            0
        }
    }
}

/// Moves the backlogs asked for, and those a sweep finds, a batch of each in turn, until
/// `shutdown`. What is left at shutdown is found by the next sweep, here or on another
/// instance.
pub async fn run(context: Arc<DeliveryContext>, shutdown: CancellationToken) {
    let requests = context.waker.backlog.clone();
    let mut next_sweep = Instant::now();
    let mut moving = Vec::new();
    loop {
        if moving.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = requests.added.notified() => {}
                _ = tokio::time::sleep_until(next_sweep) => {}
            }
        }
        if Instant::now() >= next_sweep {
            add_new(&mut moving, misplaced(&context).await);
            next_sweep = Instant::now() + SWEEP_EVERY;
        }
        add_new(&mut moving, requests.take());
        // One batch of each per round: a million rows of one subscription (about 20 s) do
        // not hold up another's move.
        let mut more = Vec::with_capacity(moving.len());
        for subscription in moving.drain(..) {
            if shutdown.is_cancelled() {
                return;
            }
            if move_batch(&context, subscription).await {
                more.push(subscription);
            }
        }
        moving = more;
    }
}

/// Appends the subscriptions of `found` that `moving` does not hold yet.
fn add_new(moving: &mut Vec<SubscriptionId>, found: Vec<SubscriptionId>) {
    for subscription in found {
        if !moving.contains(&subscription) {
            moving.push(subscription);
        }
    }
}

async fn misplaced(context: &DeliveryContext) -> Vec<SubscriptionId> {
    match db::bounded(context.statement_deadline, deliveries::misplaced_backlogs(&context.pool)).await {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            tracing::warn!(%error, "cannot look for paused, resumed or deleted subscriptions' waiting deliveries left to move");
            Vec::new()
        }
    }
}

/// Moves one batch of `subscription`'s waiting deliveries; returns whether more may wait
/// (a whole batch moved).
async fn move_batch(context: &DeliveryContext, subscription: SubscriptionId) -> bool {
    match db::bounded(context.statement_deadline, one_batch(&context.pool, subscription)).await {
        Ok((direction, moved)) => {
            if moved > 0 {
                context.progressed();
                if direction == Some(Move::Resume) {
                    context.waker.wake();
                }
            }
            moved >= BATCH as u64
        }
        Err(error) => {
            tracing::warn!(subscription.id = %subscription, %error, "cannot move waiting deliveries; the next sweep tries again");
            false
        }
    }
}

/// One batch in its own transaction, the way the subscription's state says now (`None`:
/// the subscription was purged, nothing to move).
async fn one_batch(pool: &PgPool, subscription: SubscriptionId) -> sqlx::Result<(Option<Move>, u64)> {
    let mut tx = pool.begin().await?;
    deliveries::take_backlog_turn(&mut *tx, subscription).await?;
    let Some(state) = subscriptions::select_state(&mut *tx, subscription).await? else {
        return Ok((None, 0));
    };
    let direction = Move::for_state(state);
    let moved = direction.batch(&mut tx, subscription).await?;
    tx.commit().await?;
    Ok((Some(direction), moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_subscription_s_deliveries_are_cancelled_whatever_else_it_was() {
        let state = |is_active, deleted| Move::for_state(SubscriptionState { is_active, deleted });
        assert_eq!(state(false, true), Move::Cancel);
        assert_eq!(state(true, true), Move::Cancel);
        assert_eq!(state(false, false), Move::Park);
        assert_eq!(state(true, false), Move::Resume);
    }

    #[test]
    fn each_subscription_is_taken_once_however_often_it_was_asked_for() {
        let requests = Requests::default();
        let (a, b) = (SubscriptionId::new(), SubscriptionId::new());
        for id in [a, b, a, a] {
            requests.add(id);
        }
        let mut expected = vec![a, b];
        expected.sort_unstable();
        assert_eq!(requests.take(), expected);
        assert!(requests.take().is_empty());
    }
}
