//! Handing freshly ingested webhooks straight to this instance's senders.
//!
//! Without it, a webhook accepted by an instance that also delivers is written `queued`,
//! then claimed by the claim loop (a second statement and a second version of the row,
//! with entries in every index), then sent. With it, the ingest's group commit asks here
//! for a send slot before writing; a webhook that gets one is written already claimed
//! (`delivering`, under a lease, its attempt counted) in the same commit that inserts it,
//! and its task starts once that commit is done (before its flush: see
//! `api/group_commit.rs`). The row is committed before its send and durable before the
//! 202, and if this instance dies its lease expires and any instance claims it, exactly as
//! for a claimed row.
//!
//! A webhook gets a slot only under the claim loop's own rules (the instance's concurrency,
//! the subscription's room, see `scheduler.rs`), only while its subscription has no more
//! than the cap claimed, so that rows already waiting in the database always have room to
//! be claimed. While a claim is in the database, the handoff leaves each subscription the
//! room that claim was planned with, and gives nothing to a subscription the claim may
//! find among those not known here (`Scheduler::take_fresh`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::task::task_tracker::TaskTrackerToken;
use uuid::Uuid;

use super::in_flight::{InFlightGuard, Slot};
use super::worker::Senders;
use crate::db::deliveries::{ClaimedDelivery, NewDelivery};
use crate::domain::SubscriptionId;

/// Gives fresh webhooks this instance's free send slots; clones share them.
#[derive(Clone)]
pub struct Handoff {
    /// `None` once the engine stops: no more slots, and the recorder's channel is let go
    /// (the recorder finishes once every sender of outcomes is gone).
    senders: Arc<Mutex<Option<Senders>>>,
    lease_seconds: f64,
    /// The claim loop's wake-up, for rows written queued because no slot was free.
    claim_loop: Arc<Notify>,
}

/// A send slot held for one webhook while its batch is written. Dropped unused (the write
/// failed), it gives the slot back.
pub struct HeldSlot {
    senders: Senders,
    attempt: InFlightGuard,
    permit: OwnedSemaphorePermit,
    /// Keeps the engine's shutdown waiting until the webhook's task has started (or the slot
    /// was given back), so that its outcome is recorded before the engine stops.
    _tracked: TaskTrackerToken,
}

impl Handoff {
    pub(super) fn new(senders: Senders, claim_loop: Arc<Notify>) -> Self {
        let lease_seconds = senders.context.settings.lease_duration().as_secs_f64();
        Self { senders: Arc::new(Mutex::new(Some(senders))), lease_seconds, claim_loop }
    }

    /// No more slots: the engine is stopping.
    pub(super) fn close(&self) {
        self.lock().take();
    }

    fn lock(&self) -> MutexGuard<'_, Option<Senders>> {
        self.senders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A send slot for a webhook of `subscription` about to be written, if one is free.
    pub fn hold(&self, subscription: SubscriptionId) -> Option<HeldSlot> {
        // All under the lock that `close` takes: a slot held once the engine has closed the
        // handoff and started waiting for its tasks would start a task it does not wait for.
        let open = self.lock();
        let senders = open.as_ref()?;
        let permit = senders.capacity.clone().try_acquire_owned().ok()?;
        let attempt = senders.scheduler.take_fresh(subscription)?;
        let tracked = senders.in_flight.token();
        Some(HeldSlot { senders: senders.clone(), attempt, permit, _tracked: tracked })
    }

    /// Webhooks that got no slot were just committed queued, ahead of their flush: this
    /// instance's claim loop claims them now (their 202s wait for the flush, and the wake-up
    /// that follows a 202 would make their sends wait for the disk too).
    pub fn wake_claim_loop(&self) {
        self.claim_loop.notify_one();
    }

    /// How long the lease of a webhook written as claimed lasts, in seconds.
    pub fn lease_seconds(&self) -> f64 {
        self.lease_seconds
    }
}

impl HeldSlot {
    /// Starts the delivery of `row`, just committed as claimed under `lease_id` (its batch
    /// written at `written_at`, its lease taken at `leased_at` or just before), with this slot.
    pub fn start(self, row: NewDelivery, written_at: OffsetDateTime, lease_id: Uuid, leased_at: tokio::time::Instant) {
        let delivery = ClaimedDelivery {
            id: row.id,
            subscription_id: row.subscription_id,
            event_type: row.event_type,
            body: row.body,
            attempt_count: 1,
            round_start_attempt: 0,
            due_at: written_at,
        };
        self.senders.start(delivery, Slot::new(self.attempt, self.permit), lease_id, leased_at);
    }
}
