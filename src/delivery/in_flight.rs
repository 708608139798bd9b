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
//! A subscription with a `rate_limit` is paced: its requests start at least 1/rate s apart
//! (per instance), and it has at most a second's worth claimed, so a paced row never waits
//! long in memory.
//!
//! A reserved row waits at most one delivery timeout for a send permit (the cap's worth
//! ahead of it all finish within a timeout), then at most one timeout to be sent: within the
//! claim's lease of twice the timeout plus 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::db::deliveries::InFlightLimits;

/// No completion for this long while deliveries are in flight marks a subscription stalled.
pub const STALL: Duration = Duration::from_secs(1);
/// Most attempts a subscription without a recent answer may have claimed.
pub const SMALL_SHARE: i32 = 4;

/// One subscription's claimed deliveries, its send permits, when an attempt last finished,
/// and its pacing if it has a rate limit.
#[derive(Debug)]
struct Usage {
    claimed: i32,
    answered_at: Option<Instant>,
    sending: Arc<Semaphore>,
    /// The subscription's `rate_limit` (requests a second), as its last delivery saw it.
    rate_limit: Option<i32>,
    /// When the next request may start under the rate limit.
    next_send: Instant,
}

impl Usage {
    fn answered_lately(&self, now: Instant) -> bool {
        self.answered_at.is_some_and(|at| now.duration_since(at) < STALL)
    }
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
        let allowance = self.allowance();
        let now = Instant::now();
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget idle subscriptions once their history is too old to matter.
        usage.retain(|_, u| u.claimed > 0 || u.answered_lately(now));
        let busy = usage.iter().map(|(id, u)| (*id, allowance - self.room(u, now).max(0))).collect();
        InFlightLimits { per_subscription: allowance, newcomer: self.small_share(), busy }
    }

    /// Whether any of `subscriptions` may be claimed for now.
    pub fn any_has_room(&self, subscriptions: impl IntoIterator<Item = Uuid>) -> bool {
        let now = Instant::now();
        let usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        // A subscription without usage here claims as a newcomer, which always has room.
        subscriptions.into_iter().any(|id| usage.get(&id).is_none_or(|u| self.room(u, now) > 0))
    }

    /// How many more deliveries a subscription may have claimed (the room rule).
    fn room(&self, u: &Usage, now: Instant) -> i32 {
        if !u.answered_lately(now) {
            self.small_share() - u.claimed
        } else if let Some(rate) = u.rate_limit {
            // No more claimed than a second's worth: a paced row never waits long.
            rate.min(self.allowance()) - u.claimed
        } else if u.claimed > self.cap {
            0
        } else {
            self.allowance() - u.claimed
        }
    }

    /// Most deliveries a subscription may have claimed: its cap sending, a cap in reserve.
    fn allowance(&self) -> i32 {
        2 * self.cap
    }

    /// What a subscription without a recent answer may have claimed.
    fn small_share(&self) -> i32 {
        (self.cap / 16).clamp(1, SMALL_SHARE)
    }

    /// Counts one claimed delivery of `subscription` until the returned guard is dropped
    /// (when its attempt is over).
    pub fn start(&self, subscription: Uuid) -> InFlightGuard {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = usage.entry(subscription).or_insert_with(|| Usage {
            claimed: 0,
            answered_at: None,
            sending: Arc::new(Semaphore::new(self.cap as usize)),
            rate_limit: None,
            next_send: Instant::now(),
        });
        entry.claimed += 1;
        InFlightGuard { owner: self.clone(), subscription, sending: entry.sending.clone(), permit: None, answered: false }
    }
}

/// One claimed delivery of a subscription, until its attempt is over.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: InFlight,
    subscription: Uuid,
    sending: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    /// Whether the receiver answered this attempt (any HTTP status). A timeout or a refused
    /// connection is no answer: it must not lift a hanging subscription out of its small share.
    answered: bool,
}

impl InFlightGuard {
    /// Waits for one of the subscription's send permits (held until the guard is dropped),
    /// then, if it has a rate limit, for its turn: requests start at least 1/rate s apart.
    pub async fn ready_to_send(&mut self, rate_limit: Option<i32>) {
        if self.permit.is_none() {
            // The semaphore is never closed: a permit always comes.
            self.permit = self.sending.clone().acquire_owned().await.ok();
        }
        if let Some(turn) = self.take_turn(rate_limit) {
            tokio::time::sleep_until(turn.into()).await;
        }
    }

    /// Records the subscription's rate limit and, if it has one, reserves the next start
    /// time (one request per interval, no burst beyond one).
    fn take_turn(&self, rate_limit: Option<i32>) -> Option<Instant> {
        let mut usage = self.owner.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = usage.get_mut(&self.subscription)?;
        entry.rate_limit = rate_limit;
        let rate = rate_limit.filter(|rate| *rate > 0)?;
        let turn = entry.next_send.max(Instant::now());
        entry.next_send = turn + Duration::from_secs_f64(1.0 / rate as f64);
        Some(turn)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.permit = None;
        let mut usage = self.owner.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = usage.get_mut(&self.subscription) else { return };
        entry.claimed -= 1;
        if self.answered {
            entry.answered_at = Some(Instant::now());
        }
        // Room for another claim: the reserve is used up, the subscription just answered
        // (which lifts a small share to the whole allowance), or a paced one is below its
        // second's worth.
        let has_room = self.owner.room(entry, Instant::now()) > 0;
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

    /// The receiver answered this attempt.
    fn answer(mut attempt: InFlightGuard) {
        attempt.answered = true;
    }

    #[test]
    fn a_timeout_is_no_answer() {
        let in_flight = InFlight::new(32);
        let a = Uuid::now_v7();
        let _waiting = in_flight.start(a);
        drop(in_flight.start(a)); // timed out
        assert_eq!(counted(&in_flight.limits(), a), 1 + 64 - 2, "still only the small share");
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

        answer(first);
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
        answer(claimed.pop().unwrap()); // a is answering, 7 claimed, 3 of them in reserve
        assert_eq!(counted(&in_flight.limits(), a), 8, "reserve left: reported full");
        claimed.truncate(5);
        assert_eq!(counted(&in_flight.limits(), a), 8, "one still in reserve");
        answer(claimed.pop().unwrap());
        assert_eq!(counted(&in_flight.limits(), a), 4, "reserve used up: room for another cap's worth");
    }

    #[tokio::test]
    async fn no_more_than_the_cap_send_at_once() {
        let in_flight = InFlight::new(2);
        let a = Uuid::now_v7();
        let mut guards: Vec<_> = (0..3).map(|_| in_flight.start(a)).collect();
        guards[0].ready_to_send(None).await;
        guards[1].ready_to_send(None).await;
        let third = tokio::time::timeout(Duration::from_millis(20), guards[2].ready_to_send(None)).await;
        assert!(third.is_err(), "a third concurrent send waits");
        guards.remove(0);
        tokio::time::timeout(Duration::from_secs(5), guards[1].ready_to_send(None)).await.expect("a finished send lets the next one go");
    }

    #[tokio::test]
    async fn room_is_signalled_when_a_paced_subscription_drops_below_its_seconds_worth() {
        let in_flight = InFlight::new(4);
        let a = Uuid::now_v7();
        let mut claimed: Vec<_> = (0..8).map(|_| in_flight.start(a)).collect();
        claimed[0].take_turn(Some(6)); // paced at 6/s, more than the cap of 4
        answer(claimed.pop().unwrap());
        claimed.pop();
        assert!(!in_flight.any_has_room([a]), "six claimed: a second's worth");

        let mut room_freed = std::pin::pin!(in_flight.room_freed());
        room_freed.as_mut().enable();
        claimed.pop(); // five claimed, still more than the cap
        assert!(in_flight.any_has_room([a]));
        tokio::time::timeout(Duration::from_secs(1), room_freed).await.expect("the claim loop is told");
    }

    #[test]
    fn a_subscription_without_usage_has_a_newcomers_room() {
        let in_flight = InFlight::new(4);
        assert!(in_flight.any_has_room([Uuid::now_v7()]));
        assert!(!in_flight.any_has_room([]), "nothing held back, nothing to claim for");
    }

    #[test]
    fn a_rate_limit_spaces_the_starts_and_bounds_what_is_claimed() {
        let in_flight = InFlight::new(64);
        let a = Uuid::now_v7();
        let mut claimed: Vec<_> = (0..3).map(|_| in_flight.start(a)).collect();
        let turns: Vec<Instant> = claimed.iter().map(|g| g.take_turn(Some(10)).unwrap()).collect();
        assert!(turns[1] - turns[0] >= Duration::from_millis(100) && turns[2] - turns[1] >= Duration::from_millis(100));
        answer(claimed.pop().unwrap());
        assert_eq!(counted(&in_flight.limits(), a), 128 - (10 - 2), "room for a second's worth, less what is claimed");
    }
}
