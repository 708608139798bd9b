//! A claimed delivery's hold on its subscription and on the instance, from its claim until
//! its attempt is over (see `scheduler.rs` for the rules these holds count against).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::scheduler::Scheduler;
use crate::domain::SubscriptionId;

/// One claimed delivery of a subscription, counted by the scheduler until its attempt is
/// over (the guard is dropped).
#[derive(Debug)]
pub struct InFlightGuard {
    scheduler: Scheduler,
    subscription: SubscriptionId,
    sending: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    /// Whether the receiver answered this attempt (any HTTP status). A timeout or a refused
    /// connection is no answer: it must not lift a hanging subscription out of its small share.
    answered: bool,
}

impl InFlightGuard {
    pub(super) fn new(scheduler: Scheduler, subscription: SubscriptionId, sending: Arc<Semaphore>) -> Self {
        Self { scheduler, subscription, sending, permit: None, answered: false }
    }

    /// Waits for one of the subscription's send permits (held until the guard is dropped),
    /// then, if it has a rate limit, for its turn: requests start at least 1/rate s apart.
    pub async fn ready_to_send(&mut self, rate_limit: Option<i32>) {
        if self.permit.is_none() {
            // The semaphore is never closed: a permit always comes.
            self.permit = self.sending.clone().acquire_owned().await.ok();
        }
        if let Some(turn) = self.scheduler.take_turn(self.subscription, rate_limit) {
            tokio::time::sleep_until(turn.into()).await;
        }
    }

    /// The receiver answered this attempt.
    #[cfg(test)]
    pub(super) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.permit = None;
        self.scheduler.attempt_over(self.subscription, self.answered);
    }
}

/// One send slot: a share of the instance's concurrency, held until the attempt's outcome
/// is written (so at most the concurrency's worth of rows are ever `delivering`), and the
/// subscription's share, given back as soon as the attempt is over.
#[derive(Debug)]
pub struct Slot {
    attempt: Option<InFlightGuard>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    pub fn new(attempt: InFlightGuard, permit: OwnedSemaphorePermit) -> Self {
        Self { attempt: Some(attempt), _permit: permit }
    }

    /// Waits until the subscription's receiver may take one more request (its concurrency
    /// cap and its rate limit, if any).
    pub async fn ready_to_send(&mut self, rate_limit: Option<i32>) {
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.ready_to_send(rate_limit).await;
        }
    }

    /// The attempt is over (`answered`: the receiver sent an HTTP response): give the
    /// subscription's share back now.
    pub fn attempt_done(&mut self, answered: bool) {
        if let Some(mut attempt) = self.attempt.take() {
            attempt.answered = answered;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::db::deliveries::ClaimedDelivery;
    use crate::domain::DeliveryId;

    #[tokio::test]
    async fn no_more_than_the_cap_send_at_once() {
        let scheduler = Scheduler::new(2);
        let delivery = ClaimedDelivery {
            id: DeliveryId::new(),
            subscription_id: SubscriptionId::new(),
            event_type: None,
            body: Vec::new(),
            attempt_count: 1,
            round_start_attempt: 0,
            due_at: OffsetDateTime::now_utc(),
        };
        let mut guards = scheduler.claimed(&vec![delivery; 3]);
        guards[0].ready_to_send(None).await;
        guards[1].ready_to_send(None).await;
        let third = tokio::time::timeout(Duration::from_millis(20), guards[2].ready_to_send(None)).await;
        assert!(third.is_err(), "a third concurrent send waits");
        guards.remove(0);
        tokio::time::timeout(Duration::from_secs(5), guards[1].ready_to_send(None)).await.expect("a finished send lets the next one go");
    }
}
