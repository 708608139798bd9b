//! Per-subscription accounting of deliveries claimed by this instance, so that one
//! subscription (say, a receiver that hangs until every attempt times out) cannot take every
//! send slot, and so that no receiver gets more than `WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION`
//! concurrent requests from this instance.
//!
//! Two numbers per subscription:
//! - *sending*: HTTP attempts in progress, at most the cap (a semaphore of `cap` permits).
//! - *claimed*: rows claimed and not yet attempted or attempting. Up to twice the cap, so
//!   that a reserve waits locally while the cap's worth is being sent: the receiver is never
//!   idle while the next claim runs, and claims come in large batches. A subscription is
//!   topped up only once its reserve is used up (claimed ≤ cap), with up to a cap's worth
//!   more, rather than one row per finished attempt.
//!
//! Like TCP's slow start, a subscription starts with a small share (a sixteenth of the cap,
//! between 1 and [`SMALL_SHARE`]), gets the whole allowance once its receiver has answered
//! within the last [`STALL`], and falls back to the small share when it has answered nothing
//! for that long. Fast receivers get full throughput within milliseconds; hanging ones never
//! hold more than the small share.
//!
//! A reserved row waits at most one delivery timeout for a send permit (the cap's worth
//! ahead of it all finish within a timeout), then at most one timeout to be sent: within the
//! claim's lease of twice the timeout plus 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::db::deliveries::InFlightLimits;

/// No completion for this long while deliveries are in flight marks a subscription stalled.
pub const STALL: Duration = Duration::from_secs(1);
/// Most attempts a subscription without a recent answer may have claimed.
pub const SMALL_SHARE: i32 = 4;

/// One subscription's claimed deliveries, its send permits, and when an attempt last finished.
#[derive(Debug)]
struct Usage {
    claimed: i32,
    answered_at: Option<Instant>,
    sending: Arc<Semaphore>,
}

#[derive(Clone)]
pub struct InFlight {
    /// Most concurrent requests to one subscription's receiver.
    cap: i32,
    usage: Arc<Mutex<HashMap<Uuid, Usage>>>,
    /// Signalled when a subscription may be claimed for again.
    topped_up: Arc<Notify>,
}

impl InFlight {
    pub fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, i32::MAX as usize / 4) as i32;
        Self { cap, usage: Arc::default(), topped_up: Arc::default() }
    }

    /// Completes once some subscription may be claimed for again after this call (it
    /// counts from its creation, even before it is first polled).
    pub fn room_freed(&self) -> Notified<'_> {
        self.topped_up.notified()
    }

    /// The limits to pass to the next claim. A subscription with a reserve still waiting is
    /// reported full; one without a recent answer is reported as using more than it does,
    /// so that the claim leaves it only the small share.
    pub fn limits(&self) -> InFlightLimits {
        let allowance = 2 * self.cap;
        let small_share = (self.cap / 16).clamp(1, SMALL_SHARE);
        let now = Instant::now();
        let answered_lately = |usage: &Usage| usage.answered_at.is_some_and(|at| now.duration_since(at) < STALL);
        let mut usage = self.usage.lock().unwrap();
        // Forget idle subscriptions once their history is too old to matter.
        usage.retain(|_, u| u.claimed > 0 || answered_lately(u));
        let busy = usage
            .iter()
            .map(|(id, u)| {
                let counted = if !answered_lately(u) {
                    u.claimed + allowance - small_share
                } else if u.claimed > self.cap {
                    allowance
                } else {
                    u.claimed
                };
                (*id, counted)
            })
            .collect();
        InFlightLimits { per_subscription: allowance, newcomer: small_share, busy }
    }

    /// Counts one claimed delivery of `subscription` until the returned guard is dropped
    /// (when its attempt is over).
    pub fn start(&self, subscription: Uuid) -> InFlightGuard {
        let mut usage = self.usage.lock().unwrap();
        let entry = usage.entry(subscription).or_insert_with(|| Usage {
            claimed: 0,
            answered_at: None,
            sending: Arc::new(Semaphore::new(self.cap as usize)),
        });
        entry.claimed += 1;
        InFlightGuard { owner: self.clone(), subscription, sending: entry.sending.clone(), permit: None }
    }
}

/// One claimed delivery of a subscription, until its attempt is over.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: InFlight,
    subscription: Uuid,
    sending: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl InFlightGuard {
    /// Waits for one of the subscription's send permits, held until the guard is dropped.
    pub async fn ready_to_send(&mut self) {
        if self.permit.is_none() {
            let permit = self.sending.clone().acquire_owned().await.expect("the semaphore is never closed");
            self.permit = Some(permit);
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.permit = None;
        let mut usage = self.owner.usage.lock().unwrap();
        let Some(entry) = usage.get_mut(&self.subscription) else { return };
        entry.claimed -= 1;
        entry.answered_at = Some(Instant::now());
        // Room for another claim: the reserve is used up (or the subscription just
        // answered, which lifts a small share to the whole allowance).
        let has_room = entry.claimed <= self.owner.cap;
        drop(usage);
        if has_room {
            self.owner.topped_up.notify_waiters();
        }
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

    /// Waits until the subscription's receiver may take one more concurrent request.
    pub async fn ready_to_send(&mut self) {
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.ready_to_send().await;
        }
    }

    /// The attempt is over: give the subscription's share back now.
    pub fn attempt_done(&mut self) {
        self.attempt = None;
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(limits: &InFlightLimits, id: Uuid) -> i32 {
        limits.busy.iter().find(|(s, _)| *s == id).unwrap().1
    }

    #[test]
    fn a_subscription_starts_small_and_gets_the_whole_allowance_once_it_answers() {
        let in_flight = InFlight::new(32);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let limits = in_flight.limits();
        assert_eq!((limits.per_subscription, limits.newcomer), (64, 2), "twice the cap; newcomers start with 32 / 16");

        let first = in_flight.start(a);
        let _second = in_flight.start(a);
        let _other = in_flight.start(b);
        let limits = in_flight.limits();
        assert_eq!(counted(&limits, a), 2 + 64 - 2, "no answer yet: only the small share");

        drop(first); // a's receiver answered
        let limits = in_flight.limits();
        assert_eq!(counted(&limits, a), 1, "answering: the whole allowance");
        assert_eq!(counted(&limits, b), 1 + 64 - 2);

        in_flight.usage.lock().unwrap().get_mut(&a).unwrap().answered_at = Some(Instant::now() - STALL);
        assert_eq!(counted(&in_flight.limits(), a), 1 + 64 - 2, "stalled again: back to the small share");
    }

    #[test]
    fn a_subscription_is_topped_up_only_once_its_reserve_is_used_up() {
        let in_flight = InFlight::new(4);
        let a = Uuid::now_v7();
        let mut claimed: Vec<_> = (0..8).map(|_| in_flight.start(a)).collect();
        claimed.pop(); // an answer: a is answering, 7 claimed, 3 of them in reserve
        assert_eq!(counted(&in_flight.limits(), a), 8, "reserve left: reported full");
        claimed.truncate(5);
        assert_eq!(counted(&in_flight.limits(), a), 8, "one still in reserve");
        claimed.pop();
        assert_eq!(counted(&in_flight.limits(), a), 4, "reserve used up: room for another cap's worth");
    }

    #[tokio::test]
    async fn no_more_than_the_cap_send_at_once() {
        let in_flight = InFlight::new(2);
        let a = Uuid::now_v7();
        let mut guards: Vec<_> = (0..3).map(|_| in_flight.start(a)).collect();
        guards[0].ready_to_send().await;
        guards[1].ready_to_send().await;
        let third = tokio::time::timeout(Duration::from_millis(20), guards[2].ready_to_send()).await;
        assert!(third.is_err(), "a third concurrent send waits");
        guards.remove(0);
        tokio::time::timeout(Duration::from_secs(5), guards[1].ready_to_send()).await.expect("a finished send lets the next one go");
    }
}
