//! Per-subscription accounting of deliveries in flight on this instance, so that one
//! subscription (say, a receiver that hangs until every attempt times out) cannot take every
//! send slot. Like TCP's slow start: a subscription starts with a small share (a sixteenth
//! of `WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION`, between 1 and [`SMALL_SHARE`]) of attempts in
//! flight, gets the whole cap once its receiver has answered within the last [`STALL`], and
//! falls back to the small share when it has answered nothing for that long. Fast receivers
//! get full throughput within milliseconds; hanging ones never hold more than the small share.
//! Slots here count HTTP attempts in progress (they are given back when the response, or
//! the timeout, comes), not outcomes waiting to be written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit};
use uuid::Uuid;

use crate::db::deliveries::InFlightLimits;

/// No completion for this long while deliveries are in flight marks a subscription stalled.
pub const STALL: Duration = Duration::from_secs(1);
/// Most attempts a subscription without a recent answer may have in flight.
pub const SMALL_SHARE: i32 = 4;

/// One subscription's attempts in flight, and when one last finished.
#[derive(Debug, Clone, Copy)]
struct Usage {
    in_flight: i32,
    answered_at: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct InFlight {
    usage: Arc<Mutex<HashMap<Uuid, Usage>>>,
    /// Signalled whenever a slot is given back.
    released: Arc<Notify>,
}

impl InFlight {
    /// Waits until some slot is given back.
    pub async fn released(&self) {
        self.released.notified().await;
    }
    /// The limits to pass to the next claim. A subscription without a recent answer is
    /// reported as using more than it does, so that the claim leaves it only the small share.
    pub fn limits(&self, per_subscription: i32) -> InFlightLimits {
        let small_share = (per_subscription / 16).clamp(1, SMALL_SHARE);
        let now = Instant::now();
        let answered_lately = |usage: &Usage| usage.answered_at.is_some_and(|at| now.duration_since(at) < STALL);
        let mut usage = self.usage.lock().unwrap();
        // Forget idle subscriptions once their history is too old to matter.
        usage.retain(|_, u| u.in_flight > 0 || answered_lately(u));
        let busy = usage
            .iter()
            .map(|(id, u)| {
                let counted = if answered_lately(u) { u.in_flight } else { u.in_flight + per_subscription - small_share };
                (*id, counted)
            })
            .collect();
        InFlightLimits { per_subscription, newcomer: small_share, busy }
    }

    /// Counts one attempt of `subscription` in flight until the returned guard is dropped
    /// (when the attempt is over).
    pub fn start(&self, subscription: Uuid) -> InFlightGuard {
        let mut usage = self.usage.lock().unwrap();
        usage.entry(subscription).or_insert(Usage { in_flight: 0, answered_at: None }).in_flight += 1;
        InFlightGuard { owner: self.clone(), subscription }
    }
}

/// One attempt in progress for a subscription.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: InFlight,
    subscription: Uuid,
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

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut usage = self.owner.usage.lock().unwrap();
        if let Some(entry) = usage.get_mut(&self.subscription) {
            entry.in_flight -= 1;
            entry.answered_at = Some(Instant::now());
        }
        drop(usage);
        self.owner.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_starts_small_and_gets_the_whole_cap_once_it_answers() {
        let in_flight = InFlight::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let limits = in_flight.limits(32);
        assert_eq!(limits.newcomer, 2, "unknown subscriptions start with 32 / 16");

        let first = in_flight.start(a);
        let _second = in_flight.start(a);
        let _other = in_flight.start(b);
        let counted = |limits: &InFlightLimits, id: Uuid| limits.busy.iter().find(|(s, _)| *s == id).unwrap().1;
        let limits = in_flight.limits(32);
        assert_eq!(counted(&limits, a), 2 + 32 - 2, "no answer yet: only the small share");

        drop(first); // a's receiver answered
        let limits = in_flight.limits(32);
        assert_eq!(counted(&limits, a), 1, "answering: the whole cap");
        assert_eq!(counted(&limits, b), 1 + 32 - 2);

        in_flight.usage.lock().unwrap().get_mut(&a).unwrap().answered_at = Some(Instant::now() - STALL);
        assert_eq!(counted(&in_flight.limits(32), a), 1 + 32 - 2, "stalled again: back to the small share");
    }
}
