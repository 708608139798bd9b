//! A claimed delivery's hold on its subscription and on the instance, from its claim until
//! its attempt is over (see `scheduler.rs` for the rules these holds count against).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::scheduler::{Scheduler, TooLate};
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
    /// Neither wait goes past `latest`: the attempt must start by then to finish within its
    /// lease (else another claim could send the delivery too).
    pub async fn ready_to_send(&mut self, rate_limit: Option<i32>, latest: Instant) -> Result<Readiness, TooLate> {
        let mut waited = false;
        if self.permit.is_none() {
            let permit = match self.sending.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    waited = true;
                    // The semaphore is never closed: a permit always comes, maybe too late.
                    let acquire = self.sending.clone().acquire_owned();
                    tokio::time::timeout_at(latest, acquire).await.map_err(|_| TooLate)?.map_err(|_| TooLate)?
                }
            };
            self.permit = Some(permit);
        }
        if Instant::now() > latest {
            return Err(TooLate);
        }
        if let Some(turn) = self.scheduler.take_turn(self.subscription, rate_limit, latest.into_std())? {
            waited |= turn > std::time::Instant::now();
            tokio::time::sleep_until(turn.into()).await;
        }
        Ok(Readiness { waited })
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

/// A delivery may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// It waited for a send permit or a turn: what it knew of its subscription may be old.
    pub waited: bool,
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
    /// cap and its rate limit, if any), if that comes by `latest`.
    pub async fn ready_to_send(&mut self, rate_limit: Option<i32>, latest: Instant) -> Result<Readiness, TooLate> {
        match self.attempt.as_mut() {
            Some(attempt) => attempt.ready_to_send(rate_limit, latest).await,
            None => Ok(Readiness { waited: false }),
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
        let latest = Instant::now() + Duration::from_secs(60);
        assert_eq!(guards[0].ready_to_send(None, latest).await, Ok(Readiness { waited: false }));
        guards[1].ready_to_send(None, latest).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(guards[2].ready_to_send(None, soon).await, Err(TooLate), "a third concurrent send waits, not past its latest start");
        let mut third = guards.remove(2);
        let waiting = tokio::spawn(async move { (third.ready_to_send(None, latest).await, third) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a third concurrent send waits");
        guards.remove(0);
        let (next, _third) = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("a finished send lets the next one go").unwrap();
        assert_eq!(next, Ok(Readiness { waited: true }));
    }
}
