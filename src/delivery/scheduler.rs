//! The claim loop's scheduler: it owns the per-subscription fairness state of this instance
//! and answers the claim loop's two questions, "what may be claimed now" ([`Scheduler::plan`])
//! and "when should the loop look again" ([`Scheduler::sleep_for`], and
//! [`Scheduler::room_freed`]).
//!
//! One mechanism, one word: a subscription's **room** is how many more of its deliveries
//! this instance may claim now. A subscription with no room is **full**: a claim reads
//! none of its rows (however many are due), and the claim loop neither claims for it nor
//! wakes for its due rows until it has room again, which the scheduler signals.
//!
//! Room is what is left of an **allowance** after the deliveries already **claimed**
//! (claimed and not yet finished: waiting for their turn, or being sent):
//! - A subscription whose receiver answered within the last [`STALL`] may have twice
//!   `WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION` (the cap) claimed: the cap's worth being sent
//!   (a semaphore of `cap` permits, see `in_flight.rs`) and a cap's worth waiting, so that
//!   the receiver is never idle while the next claim runs. It gets room again only once
//!   no more than the cap is claimed, then a cap's worth at once: claims come in batches,
//!   not one row per finished attempt. One claim takes at most a cap's worth: with less
//!   than the cap claimed, the rest is left for the ingest handoff (`handoff.rs`) or the
//!   next claim.
//! - Any other subscription (new, hanging, timing out) has the **small share**: a sixteenth
//!   of the cap, between 1 and [`SMALL_SHARE`]. Like TCP's slow start: a fast receiver gets
//!   the whole allowance within milliseconds of its first answer, a hanging one never holds
//!   more than the small share. A subscription unknown here (nothing claimed lately) has
//!   the small share too.
//! - A subscription with a `rate_limit` is paced: its requests start at least 1/rate s
//!   apart (per instance), and it has at most a second's worth claimed, so a paced row
//!   never waits long in memory.
//!
//! A waiting row waits at most one delivery timeout for a send permit (the cap's worth ahead
//! of it all finish within a timeout), then at most one timeout to be sent: within the
//! claim's lease of twice the timeout plus 30 s.
//!
//! **Scan positions.** The claim reads each subscription's due rows through an index in
//! due order, which keeps an entry for every row claimed or finished since `deliveries`
//! was last vacuumed, all before the subscription's earliest due row. After a drain of
//! 100,000 rows, reading from the start would step over all of them. So the scheduler
//! remembers, per subscription, where the last claim found its earliest due row, less a
//! [`MARGIN`] for rows committed late with an earlier due time (a row's due time is its
//! transaction's `now()`, taken when the transaction began). Once a second
//! ([`RESCAN_EVERY`]) a claim reads every subscription from its start, so a row that
//! slipped behind a position waits at most that long.
//!
//! **Discovery.** A subscription not known here is found by the claim's skip scan of the
//! index between known ones, which also steps over the entries finished rows left there
//! until the next vacuum. So a claim looks for them ([`Scheduler::plan`] gives them the
//! small share; otherwise none) only when new work was signalled
//! ([`Scheduler::discover_soon`]) or [`DISCOVER_EVERY`] after the last look, and a claim
//! that did not look lets the loop sleep no longer than until the next look may happen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore};

use super::in_flight::InFlightGuard;
use crate::db::deliveries::{ClaimPlan, ClaimedDelivery, SubscriptionRoom};
use crate::domain::SubscriptionId;

/// No answer for this long while deliveries are claimed puts a subscription on the small share.
pub const STALL: Duration = Duration::from_secs(1);
/// Most deliveries a subscription without a recent answer may have claimed.
pub const SMALL_SHARE: i32 = 4;
/// How far before where the last claim found a subscription's earliest due row the next
/// claim starts reading it. Short: every row claimed within the margin leaves an entry the
/// next claim steps over (a second's worth cost a 64-row claim of a drain 0.3 ms of its
/// 2.2), while an ingest commit lands well within 100 ms of its `now()`; a row that does
/// not waits for the next rescan.
const MARGIN: Duration = Duration::from_millis(100);
/// How often a claim reads every subscription from its start.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// How often, at most, a claim looks for subscriptions not known here, unless new work was
/// signalled (see [`Scheduler::discover_soon`]).
const DISCOVER_EVERY: Duration = Duration::from_millis(100);

/// One subscription as this instance sees it.
#[derive(Debug)]
struct Usage {
    /// Deliveries claimed and not finished.
    claimed: i32,
    answered_at: Option<Instant>,
    /// Its send permits: at most the cap sending at once.
    sending: Arc<Semaphore>,
    /// Its `rate_limit` (requests a second), as its last delivery saw it.
    rate_limit: Option<i32>,
    /// When its next request may start under the rate limit.
    next_send: Instant,
    /// Where the next claim starts reading its due rows (`None`: from its first).
    scan_from: Option<OffsetDateTime>,
}

impl Usage {
    fn answered_lately(&self, now: Instant) -> bool {
        self.answered_at.is_some_and(|at| now.duration_since(at) < STALL)
    }
}

#[derive(Debug)]
struct State {
    usage: HashMap<SubscriptionId, Usage>,
    last_rescan: Instant,
    /// When a claim last looked for subscriptions not known here (`None`: the next claim
    /// looks, as at the start or after new work was signalled).
    last_discovery: Option<Instant>,
    /// Whether the last plan looked for them.
    discovered_last: bool,
    /// While a claim planned by [`Scheduler::plan`] is in the database (until
    /// [`Scheduler::claimed`] or [`Scheduler::claim_failed`]): the room it was planned with
    /// for each subscription known here. The ingest handoff leaves that room to the claim,
    /// or the two together could exceed a subscription's room (a hanging one's small share
    /// twice over).
    planned_by_claim: Option<HashMap<SubscriptionId, i32>>,
}

/// This instance's fairness state; clones share it.
#[derive(Clone)]
pub struct Scheduler {
    /// Most concurrent requests to one subscription's receiver.
    cap: i32,
    rescan_every: Duration,
    state: Arc<Mutex<State>>,
    /// Signalled when a full subscription gets room.
    room_freed: Arc<Notify>,
}

impl Scheduler {
    pub fn new(cap: usize) -> Self {
        Self::rescanning_every(cap, RESCAN_EVERY)
    }

    fn rescanning_every(cap: usize, rescan_every: Duration) -> Self {
        let cap = cap.clamp(1, i32::MAX as usize / 4) as i32;
        let state = State {
            usage: HashMap::new(),
            last_rescan: Instant::now(),
            last_discovery: None,
            discovered_last: false,
            planned_by_claim: None,
        };
        Self { cap, rescan_every, state: Arc::new(Mutex::new(state)), room_freed: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What may be claimed now: every subscription known here with its room, at most a
    /// cap's worth (full ones with none), and where to read it from, and the small share for
    /// the others.
    pub fn plan(&self) -> ClaimPlan {
        let now = Instant::now();
        let mut state = self.lock();
        // Forget idle subscriptions once their history is too old to matter.
        state.usage.retain(|_, u| u.claimed > 0 || u.answered_lately(now));
        let rescan = state.last_rescan.elapsed() >= self.rescan_every;
        if rescan {
            state.last_rescan = now;
        }
        // At most a cap's worth per claim: with fewer than the cap claimed (a stream the
        // handoff feeds), what the claim leaves of the allowance stays for the handoff or
        // the next claim.
        let known: Vec<SubscriptionRoom> = state
            .usage
            .iter()
            .map(|(id, u)| SubscriptionRoom {
                subscription_id: *id,
                room: self.room(u, now).clamp(0, self.cap),
                scan_from: if rescan { None } else { u.scan_from },
            })
            .collect();
        state.planned_by_claim = Some(known.iter().map(|k| (k.subscription_id, k.room)).collect());
        // Looking for unknown subscriptions is the claim's skip scan over the gaps between
        // known ones, which steps over every index entry that rows finished since the last
        // vacuum left there: after a burst of 300,000 finished rows on a stock autovacuum
        // (a minute between looks) it cost 15 ms per claim. New work is signalled (ingest,
        // NOTIFY), and retries of unknown subscriptions are found within DISCOVER_EVERY.
        let discover = state.last_discovery.is_none_or(|at| now.duration_since(at) >= DISCOVER_EVERY);
        if discover {
            state.last_discovery = Some(now);
        }
        state.discovered_last = discover;
        // With no room for the others, the claim does not look for them at all.
        ClaimPlan { known, small_share: if discover { self.small_share() } else { 0 } }
    }

    /// The claim planned last failed: nothing it planned was taken.
    pub fn claim_failed(&self) {
        self.lock().planned_by_claim = None;
    }

    /// New work was signalled: the next claim also looks for subscriptions not known here.
    pub fn discover_soon(&self) {
        self.lock().last_discovery = None;
    }

    /// Counts each claimed delivery against its subscription until its guard is dropped
    /// (when its attempt is over), and remembers where each subscription's due rows now
    /// start.
    pub fn claimed(&self, deliveries: &[ClaimedDelivery]) -> Vec<InFlightGuard> {
        let mut state = self.lock();
        state.planned_by_claim = None;
        let mut heads: HashMap<SubscriptionId, OffsetDateTime> = HashMap::new();
        let guards = deliveries
            .iter()
            .map(|delivery| {
                let head = heads.entry(delivery.subscription_id).or_insert(delivery.due_at);
                *head = (*head).min(delivery.due_at);
                let usage = state.usage.entry(delivery.subscription_id).or_insert_with(|| self.unclaimed());
                usage.claimed += 1;
                InFlightGuard::new(self.clone(), delivery.subscription_id, usage.sending.clone())
            })
            .collect();
        for (id, head) in heads {
            if let Some(usage) = state.usage.get_mut(&id) {
                usage.scan_from = Some(head - MARGIN);
            }
        }
        guards
    }

    /// Counts one webhook handed over at ingest (`handoff.rs`) against its subscription, if
    /// the subscription has room and no more than the cap claimed: the rest of its
    /// allowance stays for the claim loop, so rows waiting in the database (retries, a
    /// backlog) always have room to be claimed, however steady the stream of new ones (new
    /// ones may still overtake them: order is not guaranteed). While a claim is in the
    /// database, only room beyond what it was planned with counts, and a subscription not
    /// known when it was planned gets none if the claim looks for unknown ones. `None`: the
    /// webhook is queued as usual.
    pub fn take_fresh(&self, subscription: SubscriptionId) -> Option<InFlightGuard> {
        let now = Instant::now();
        let mut state = self.lock();
        let reserved = match state.planned_by_claim.as_ref().map(|planned| planned.get(&subscription)) {
            None => 0,
            Some(Some(planned)) => *planned,
            // Not known when the claim was planned: a claim looking for unknown
            // subscriptions may take its small share of this one's rows.
            Some(None) if state.discovered_last => return None,
            // A claim not looking for unknown subscriptions cannot take this one's rows.
            Some(None) => 0,
        };
        let usage = state.usage.entry(subscription).or_insert_with(|| self.unclaimed());
        if usage.claimed >= self.cap || self.room(usage, now) - reserved <= 0 {
            return None;
        }
        usage.claimed += 1;
        Some(InFlightGuard::new(self.clone(), subscription, usage.sending.clone()))
    }

    /// A subscription as first seen: nothing claimed, no answer yet.
    fn unclaimed(&self) -> Usage {
        Usage {
            claimed: 0,
            answered_at: None,
            sending: Arc::new(Semaphore::new(self.cap as usize)),
            rate_limit: None,
            next_send: Instant::now(),
            scan_from: None,
        }
    }

    /// The subscriptions of which `deliveries` (one claim under `plan`) took all the room
    /// planned for them: they may have more due.
    pub fn filled(&self, plan: &ClaimPlan, deliveries: &[ClaimedDelivery]) -> Vec<SubscriptionId> {
        let mut taken: HashMap<SubscriptionId, i32> = HashMap::new();
        for delivery in deliveries {
            *taken.entry(delivery.subscription_id).or_default() += 1;
        }
        let room = |id: &SubscriptionId| plan.known.iter().find(|k| k.subscription_id == *id).map_or(plan.small_share, |k| k.room);
        taken.into_iter().filter(|(id, n)| *n >= room(id)).map(|(id, _)| id).collect()
    }

    /// Whether any of `subscriptions` has room now. After a claim, the claim loop asks this
    /// of those that filled their room: attempts that finished while the claim ran may have
    /// given one room again without its ever being full (and `room_freed` signals only that).
    pub fn any_has_room(&self, subscriptions: &[SubscriptionId]) -> bool {
        let now = Instant::now();
        let state = self.lock();
        subscriptions.iter().any(|id| state.usage.get(id).is_none_or(|u| self.room(u, now) > 0))
    }

    /// The next claim reads every subscription from its start (something is due that a
    /// position may have passed).
    pub fn rescan(&self) {
        let mut state = self.lock();
        for usage in state.usage.values_mut() {
            usage.scan_from = None;
        }
    }

    /// Completes once a full subscription gets room after this call (it counts from its
    /// creation, even before it is first polled).
    pub fn room_freed(&self) -> Notified<'_> {
        self.room_freed.notified()
    }

    /// How long the claim loop may sleep after a claim that took every due row it could,
    /// given when the next delivery of a subscription with room is due (as read from the
    /// scan positions): until then, at most `poll`, and no later than the next rescan while
    /// a subscription with room is read from a position (a row committed late behind it
    /// is found only by a rescan). Zero: claim again now (and from the start, if a due row
    /// was missed).
    pub fn sleep_for(&self, next_due: Option<OffsetDateTime>, now: OffsetDateTime, poll: Duration) -> Duration {
        let until_due = next_due.map_or(poll, |due| Duration::try_from(due - now).unwrap_or(Duration::ZERO));
        if until_due.is_zero() {
            self.rescan();
            return Duration::ZERO;
        }
        let instant = Instant::now();
        let state = self.lock();
        let positioned = state.usage.values().any(|u| u.scan_from.is_some() && self.room(u, instant) > 0);
        let until_rescan = if positioned { self.rescan_every.saturating_sub(state.last_rescan.elapsed()) } else { poll };
        // A claim that did not look for unknown subscriptions did not see when their next
        // rows are due: look by the time the next one may.
        let until_discovery = match state.last_discovery {
            Some(at) if !state.discovered_last => DISCOVER_EVERY.saturating_sub(at.elapsed()),
            _ => poll,
        };
        until_due.min(until_rescan).min(until_discovery).min(poll)
    }

    /// How many more deliveries a subscription may have claimed.
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

    /// Most deliveries a subscription may have claimed: its cap sending, a cap waiting.
    fn allowance(&self) -> i32 {
        2 * self.cap
    }

    /// What a subscription without a recent answer may have claimed.
    fn small_share(&self) -> i32 {
        (self.cap / 16).clamp(1, SMALL_SHARE)
    }

    /// One delivery's attempt is over (`answered`: the receiver sent an HTTP response).
    /// Signals the claim loop if that gave a full subscription room.
    pub(super) fn attempt_over(&self, subscription: SubscriptionId, answered: bool) {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(usage) = state.usage.get_mut(&subscription) else { return };
        let was_full = self.room(usage, now) <= 0;
        usage.claimed -= 1;
        if answered {
            usage.answered_at = Some(now);
        }
        let has_room = self.room(usage, now) > 0;
        drop(state);
        if was_full && has_room {
            self.room_freed.notify_waiters();
        }
    }

    /// Records the subscription's rate limit and, if it has one, reserves its next start
    /// time (one request per interval, no burst beyond one), unless that is after `latest`:
    /// then nothing is reserved and the answer is `Err(TooLate)`.
    pub(super) fn take_turn(&self, subscription: SubscriptionId, rate_limit: Option<i32>, latest: Instant) -> Result<Option<Instant>, TooLate> {
        let mut state = self.lock();
        let Some(usage) = state.usage.get_mut(&subscription) else { return Ok(None) };
        let was_full = self.room(usage, Instant::now()) <= 0;
        usage.rate_limit = rate_limit;
        let has_room = self.room(usage, Instant::now()) > 0;
        let turn = match rate_limit.filter(|rate| *rate > 0) {
            Some(rate) => {
                let turn = usage.next_send.max(Instant::now());
                if turn > latest {
                    Err(TooLate)
                } else {
                    usage.next_send = turn + Duration::from_secs_f64(1.0 / rate as f64);
                    Ok(Some(turn))
                }
            }
            None => Ok(None),
        };
        drop(state);
        // A rate limit lifted or raised gives room as surely as a finished attempt.
        if was_full && has_room {
            self.room_freed.notify_waiters();
        }
        turn
    }
}

/// A delivery's turn at its receiver would come too late: its lease would run out before
/// the attempt could finish (a rate limit lowered under a full allowance of claimed rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLate;

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::notified_already;
    use crate::domain::DeliveryId;

    /// A latest start no turn reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn delivery(subscription: SubscriptionId, due_at: OffsetDateTime) -> ClaimedDelivery {
        ClaimedDelivery {
            id: DeliveryId::new(),
            subscription_id: subscription,
            event_type: None,
            body: Vec::new(),
            attempt_count: 1,
            round_start_attempt: 0,
            due_at,
        }
    }

    fn claim(scheduler: &Scheduler, subscription: SubscriptionId, count: usize) -> Vec<InFlightGuard> {
        let now = OffsetDateTime::now_utc();
        scheduler.claimed(&vec![delivery(subscription, now); count])
    }

    fn room(scheduler: &Scheduler, id: SubscriptionId) -> i32 {
        let state = scheduler.lock();
        state.usage.get(&id).map_or(-1, |usage| scheduler.room(usage, Instant::now()).max(0))
    }

    fn planned_room(plan: &ClaimPlan, id: SubscriptionId) -> i32 {
        plan.known.iter().find(|k| k.subscription_id == id).map_or(-1, |k| k.room)
    }

    /// The receiver answered this attempt.
    fn answer(mut attempt: InFlightGuard) {
        attempt.answered();
    }

    #[test]
    fn a_subscription_starts_with_the_small_share_and_gets_the_whole_allowance_once_it_answers() {
        let scheduler = Scheduler::new(32);
        let (a, b) = (SubscriptionId::new(), SubscriptionId::new());
        let plan = scheduler.plan();
        assert_eq!((plan.known.len(), plan.small_share), (0, 2), "nothing known; others get 32 / 16");

        let mut claimed_a = claim(&scheduler, a, 2);
        let _b = claim(&scheduler, b, 1);
        assert_eq!(room(&scheduler, a), 0, "no answer yet: full at the small share");
        assert_eq!(room(&scheduler, b), 1);

        answer(claimed_a.pop().unwrap());
        assert_eq!(room(&scheduler, a), 64 - 1, "answering: the whole allowance");

        scheduler.lock().usage.get_mut(&a).unwrap().answered_at = Some(Instant::now() - STALL);
        assert_eq!(room(&scheduler, a), 1, "no answer for a second: back to the small share");
    }

    #[test]
    fn a_timeout_is_no_answer() {
        let scheduler = Scheduler::new(32);
        let a = SubscriptionId::new();
        let mut claimed = claim(&scheduler, a, 2);
        drop(claimed.pop()); // timed out
        assert_eq!(room(&scheduler, a), 1, "still only the small share");
    }

    #[test]
    fn a_subscription_gets_room_again_only_once_no_more_than_the_cap_is_claimed() {
        let scheduler = Scheduler::new(4);
        let a = SubscriptionId::new();
        let mut claimed = claim(&scheduler, a, 8);
        answer(claimed.pop().unwrap()); // answering, 7 claimed: 3 more than the cap
        assert_eq!(room(&scheduler, a), 0, "full");
        claimed.truncate(5);
        assert_eq!(room(&scheduler, a), 0, "one more than the cap");
        answer(claimed.pop().unwrap());
        assert_eq!(room(&scheduler, a), 4, "the cap's worth claimed: room for another");
    }

    #[test]
    fn a_full_subscription_getting_room_wakes_the_claim_loop_and_nothing_else_does() {
        let scheduler = Scheduler::new(64);
        let (full, busy) = (SubscriptionId::new(), SubscriptionId::new());
        let mut hanging = claim(&scheduler, full, 4);
        let mut answering = claim(&scheduler, busy, 3);
        answer(answering.pop().unwrap());

        let mut room_freed = std::pin::pin!(scheduler.room_freed());
        room_freed.as_mut().enable();
        answer(answering.pop().unwrap());
        assert!(!notified_already(room_freed.as_mut()), "a subscription that had room already does not wake the loop");
        drop(hanging.pop()); // a hanging receiver's attempt timed out: room for one
        assert!(notified_already(room_freed.as_mut()), "a full subscription with room again does");
        assert_eq!(room(&scheduler, full), 1);
    }

    #[test]
    fn ingest_hands_over_fresh_webhooks_only_within_room_and_up_to_the_cap() {
        let scheduler = Scheduler::new(4); // small share: 1
        let a = SubscriptionId::new();
        let first = scheduler.take_fresh(a).expect("a new subscription has its small share");
        assert!(scheduler.take_fresh(a).is_none(), "no answer yet: the small share is taken");
        answer(first);
        let fresh: Vec<_> = std::iter::from_fn(|| scheduler.take_fresh(a)).take(10).collect();
        assert_eq!(fresh.len(), 4, "answering: up to the cap, then the webhook is queued");
        assert_eq!(room(&scheduler, a), 4, "the rest of the allowance is left for claims");
        let _claimed = claim(&scheduler, a, 4);
        drop(fresh);
        assert!(scheduler.take_fresh(a).is_none(), "a subscription with its cap's worth claimed takes none");
    }

    #[test]
    fn while_a_claim_is_in_the_database_ingest_hands_over_only_room_it_was_not_planned_with() {
        let scheduler = Scheduler::new(32); // allowance 64, small share 2
        let (answering, hanging, paced) = (SubscriptionId::new(), SubscriptionId::new(), SubscriptionId::new());
        answer(scheduler.take_fresh(answering).unwrap());
        let _hanging = scheduler.take_fresh(hanging).unwrap(); // one of its two, in flight
        answer(scheduler.take_fresh(paced).unwrap());
        scheduler.take_turn(paced, Some(10), far()).unwrap(); // a second's worth: 10

        let plan = scheduler.plan();
        assert_eq!(planned_room(&plan, answering), 32, "a claim takes at most a cap's worth of the allowance of 64");
        assert_eq!(planned_room(&plan, hanging), 1, "what is left of the small share");
        assert_eq!(planned_room(&plan, paced), 10);
        let fresh: Vec<_> = std::iter::from_fn(|| scheduler.take_fresh(answering)).take(100).collect();
        assert_eq!(fresh.len(), 32, "the allowance the claim leaves, up to the cap");
        assert!(scheduler.take_fresh(hanging).is_none(), "the claim may take the rest of the small share");
        assert!(scheduler.take_fresh(paced).is_none(), "the claim may take the whole second's worth");
        assert!(scheduler.take_fresh(SubscriptionId::new()).is_none(), "a claim looking for unknown subscriptions may find this one");
        let _claimed = claim(&scheduler, answering, 32);
        assert_eq!(scheduler.lock().usage[&answering].claimed, 64, "together: the whole allowance, no more");
        assert!(scheduler.take_fresh(hanging).is_some(), "once the claim is counted, the room it did not take is free");

        scheduler.lock().last_discovery = Some(Instant::now());
        let plan = scheduler.plan();
        assert_eq!(plan.small_share, 0, "this claim does not look for unknown subscriptions");
        assert!(scheduler.take_fresh(SubscriptionId::new()).is_some(), "so it cannot take this one's rows");
        assert!(scheduler.take_fresh(paced).is_none());
        scheduler.claim_failed();
        assert!(scheduler.take_fresh(paced).is_some(), "a failed claim took nothing");
    }

    #[test]
    fn a_rate_limit_spaces_the_starts_and_bounds_what_is_claimed() {
        let scheduler = Scheduler::new(64);
        let a = SubscriptionId::new();
        let mut claimed = claim(&scheduler, a, 3);
        let turns: Vec<Instant> = (0..3).map(|_| scheduler.take_turn(a, Some(10), far()).unwrap().unwrap()).collect();
        assert!(turns[1] - turns[0] >= Duration::from_millis(100) && turns[2] - turns[1] >= Duration::from_millis(100));
        answer(claimed.pop().unwrap());
        assert_eq!(room(&scheduler, a), 10 - 2, "a second's worth, less what is claimed");
    }

    #[test]
    fn a_turn_past_the_latest_start_is_refused_and_not_reserved() {
        let scheduler = Scheduler::new(64);
        let a = SubscriptionId::new();
        let _claimed = claim(&scheduler, a, 3);
        let latest = Instant::now() + Duration::from_millis(1500);
        let first = scheduler.take_turn(a, Some(1), latest).unwrap().unwrap();
        let second = scheduler.take_turn(a, Some(1), latest).unwrap().unwrap();
        assert!(second - first >= Duration::from_secs(1));
        assert_eq!(scheduler.take_turn(a, Some(1), latest), Err(TooLate), "a third turn would start 2 s on");
        let later = scheduler.take_turn(a, Some(1), far()).unwrap().unwrap();
        assert!(later - second < Duration::from_millis(1100), "the refused turn was not reserved");
    }

    #[test]
    fn a_paced_subscription_below_its_seconds_worth_wakes_the_claim_loop() {
        let scheduler = Scheduler::new(4);
        let a = SubscriptionId::new();
        let mut claimed = claim(&scheduler, a, 8);
        scheduler.take_turn(a, Some(6), far()).unwrap(); // paced at 6/s, more than the cap of 4
        answer(claimed.pop().unwrap());
        claimed.pop();
        assert_eq!(room(&scheduler, a), 0, "six claimed: a second's worth");

        let mut room_freed = std::pin::pin!(scheduler.room_freed());
        room_freed.as_mut().enable();
        claimed.pop(); // five claimed, still more than the cap
        assert_eq!(room(&scheduler, a), 1);
        assert!(notified_already(room_freed.as_mut()), "the claim loop is told");
    }

    #[test]
    fn a_claim_reads_each_subscription_from_a_margin_before_its_last_head_and_rescans_every_second() {
        let scheduler = Scheduler::rescanning_every(64, Duration::from_secs(3600));
        let (a, b) = (SubscriptionId::new(), SubscriptionId::new());
        let head = OffsetDateTime::now_utc() - Duration::from_secs(60);
        let _claimed = scheduler.claimed(&[delivery(a, head + Duration::from_secs(5)), delivery(a, head), delivery(b, head)]);
        let from = |plan: &ClaimPlan, id| plan.known.iter().find(|k| k.subscription_id == id).unwrap().scan_from;
        let plan = scheduler.plan();
        assert_eq!(from(&plan, a), Some(head - MARGIN), "its earliest due row claimed, less the margin");

        scheduler.rescan();
        assert_eq!(from(&scheduler.plan(), a), None);

        let every_time = Scheduler::rescanning_every(64, Duration::ZERO);
        let _claimed = every_time.claimed(&[delivery(a, head)]);
        assert_eq!(from(&every_time.plan(), a), None, "a rescan is due: from the start");
    }

    #[test]
    fn the_loop_sleeps_until_the_next_due_delivery_at_most_the_poll_interval() {
        let scheduler = Scheduler::rescanning_every(64, Duration::from_secs(3600));
        let (now, poll) = (OffsetDateTime::now_utc(), Duration::from_secs(5));
        assert_eq!(scheduler.sleep_for(None, now, poll), poll, "nothing due: the poll interval");
        assert_eq!(scheduler.sleep_for(Some(now + Duration::from_secs(2)), now, poll), Duration::from_secs(2));
        assert_eq!(scheduler.sleep_for(Some(now + Duration::from_secs(60)), now, poll), poll);

        let a = SubscriptionId::new();
        let _claimed = scheduler.claimed(&[delivery(a, now)]);
        assert_eq!(scheduler.sleep_for(Some(now - Duration::from_secs(1)), now, poll), Duration::ZERO, "due already: claim now");
        assert_eq!(scheduler.plan().known[0].scan_from, None, "the claim reads from the start: the row lies behind the position");
    }

    #[test]
    fn the_loop_wakes_for_the_rescan_while_a_subscription_with_room_is_read_from_a_position() {
        let poll = Duration::from_secs(3600);
        let scheduler = Scheduler::rescanning_every(64, Duration::from_secs(1));
        let now = OffsetDateTime::now_utc();
        let (answering, hanging) = (SubscriptionId::new(), SubscriptionId::new());
        let _hanging = claim(&scheduler, hanging, 4);
        assert_eq!(scheduler.sleep_for(None, now, poll), poll, "a full subscription's late rows wait for its room");

        let _answering = claim(&scheduler, answering, 1);
        let sleep = scheduler.sleep_for(None, now, poll);
        assert!(sleep > Duration::ZERO && sleep <= Duration::from_secs(1), "until the next rescan: {sleep:?}");
    }

    #[test]
    fn a_subscription_that_filled_its_room_and_got_room_back_meanwhile_is_claimed_for_again() {
        let scheduler = Scheduler::new(4);
        let (a, b) = (SubscriptionId::new(), SubscriptionId::new());
        let mut earlier = claim(&scheduler, a, 5);
        answer(earlier.pop().unwrap()); // answering, the cap's worth claimed
        let plan = scheduler.plan();
        assert_eq!(room(&scheduler, a), 4);
        // The claim takes all of a's room, and b's small share (1).
        let now = OffsetDateTime::now_utc();
        let taken: Vec<_> = [vec![delivery(a, now); 4], vec![delivery(b, now)]].concat();
        let filled = scheduler.filled(&plan, &taken);
        assert_eq!(filled.len(), 2, "both used all their room");
        // While the claim ran, a's earlier attempts all finished: once the claimed rows
        // count, a still has room, without having been full in between (so no
        // `room_freed`); the loop must see it.
        earlier.drain(..).for_each(answer);
        let _claimed = scheduler.claimed(&taken);
        assert!(scheduler.any_has_room(&filled));
        assert!(!scheduler.any_has_room(&[b]), "b is full");
    }

    #[test]
    fn unknown_subscriptions_are_looked_for_on_new_work_or_after_a_while_and_the_loop_sleeps_no_longer() {
        let scheduler = Scheduler::new(64);
        let (now, poll) = (OffsetDateTime::now_utc(), Duration::from_secs(5));
        assert_eq!(scheduler.plan().small_share, 4, "the first claim looks");
        assert_eq!(scheduler.plan().small_share, 0, "the next one, at once after, does not");
        let sleep = scheduler.sleep_for(None, now, poll);
        assert!(sleep > Duration::ZERO && sleep <= DISCOVER_EVERY, "{sleep:?}: no longer than until the next look");

        scheduler.discover_soon();
        assert_eq!(scheduler.plan().small_share, 4, "new work: the next claim looks");
        assert_eq!(scheduler.sleep_for(None, now, poll), poll, "a claim that looked saw everything due");

        scheduler.lock().last_discovery = Some(Instant::now() - DISCOVER_EVERY);
        assert_eq!(scheduler.plan().small_share, 4, "a while later it looks again");
    }
}
