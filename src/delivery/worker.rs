//! The claim loop and the per-delivery task.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use super::backlog;
use super::dispatch::{self, AttemptResult};
use super::in_flight::{Readiness, Slot};
use super::recorder::Finished;
use super::scheduler::{Scheduler, TooLate};
use super::{DeliveryContext, DeliverySettings};
use crate::db::attempts::AttemptRow;
use crate::db::deliveries::{self, ClaimedDelivery, OutcomeUpdate};
use crate::db::subscriptions::SubscriptionRow;
use crate::db::{self, operational_events, subscriptions};
use crate::domain::lifecycle::{self, DisabledReason};
use crate::domain::operational_event::OperationalEvent;
use crate::domain::retry::RetrySchedule;
use crate::domain::SubscriptionId;
use crate::subscription_cache::{CachedSubscription, Lookup};

/// Most deliveries claimed by one statement.
const CLAIM_BATCH: usize = 256;
/// Longest wait for the claim loop's connection (the pool waits as long for one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait after a failed claim (database down) before trying again.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

pub struct ClaimLoop {
    pub senders: Senders,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
}

/// What starts delivery tasks, shared by the claim loop and the ingest handoff
/// (`handoff.rs`): the instance's send slots, its per-subscription fairness state, and where
/// finished attempts go.
#[derive(Clone)]
pub struct Senders {
    pub context: Arc<DeliveryContext>,
    /// One permit per delivery task: at most `WEBHOOKD_WORKER_CONCURRENCY` at once.
    pub capacity: Arc<Semaphore>,
    pub scheduler: Scheduler,
    pub in_flight: TaskTracker,
    /// The instance is shutting down: deliveries still waiting for their turn go back to
    /// the queue instead of starting a send the grace period might cut off.
    pub stopping: CancellationToken,
    /// The grace period is over: sends under way are abandoned.
    pub abort_sends: CancellationToken,
    pub outcomes: mpsc::Sender<Finished>,
}

impl Senders {
    pub fn new(
        context: Arc<DeliveryContext>,
        in_flight: TaskTracker,
        stopping: CancellationToken,
        abort_sends: CancellationToken,
        outcomes: mpsc::Sender<Finished>,
    ) -> Self {
        let capacity = Arc::new(Semaphore::new(context.settings.concurrency as usize));
        let scheduler = Scheduler::new(context.settings.max_in_flight_per_subscription as usize);
        Self { context, capacity, scheduler, in_flight, stopping, abort_sends, outcomes }
    }

    /// Starts one delivery's task under lease `lease_id` (taken at `leased_at`, or just
    /// before), holding `slot` until its outcome is recorded.
    pub fn start(&self, delivery: ClaimedDelivery, slot: Slot, lease_id: Uuid, leased_at: Instant) {
        let span = tracing::info_span!(
            "delivery",
            delivery.id = %delivery.id,
            subscription.id = %delivery.subscription_id,
            attempt = delivery.attempt_count
        );
        let task = DeliveryTask {
            latest_start: latest_start(leased_at, &self.context.settings),
            context: self.context.clone(),
            lease_id,
            stopping: self.stopping.clone(),
            abort: self.abort_sends.clone(),
            outcomes: self.outcomes.clone(),
            slot,
        };
        self.in_flight.spawn(task.run(delivery).instrument(span));
    }
}

/// What the claim loop waits for before it claims again.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wait {
    /// A free send slot: nothing can be claimed without one.
    Capacity,
    /// New work (a wake-up), room for a full subscription, or `Duration` (the next due
    /// delivery of a subscription with room, or the poll interval).
    Work(Duration),
    /// Only `Duration`: the database failed, and a wake-up would not make it work.
    Retry(Duration),
}

/// Claims due deliveries while there is a free send slot and something to claim, then
/// sleeps until something may be claimed again: one `select!` over every wake-up.
pub async fn claim_loop(state: ClaimLoop) {
    // The claim loop's own connection, beside the pool (see `connect_for_claims`).
    let mut connection = None;
    claim_until_stopped(&state, &mut connection).await;
    if let Some(connection) = connection {
        db::close_connection(connection).await;
    }
}

async fn claim_until_stopped(state: &ClaimLoop, connection: &mut Option<PgConnection>) {
    let capacity = &state.senders.capacity;
    let scheduler = &state.senders.scheduler;
    loop {
        if state.shutdown.is_cancelled() {
            return;
        }
        // Listen for freed room before claiming, so that room freed from now on is not missed.
        let mut room_freed = std::pin::pin!(scheduler.room_freed());
        room_freed.as_mut().enable();
        // New work signalled while the loop was busy claiming: it may be an unknown
        // subscription's, which the next claim then looks for.
        if super::notified_already(std::pin::pin!(state.wake.notified())) {
            scheduler.discover_soon();
        }
        let wait = match capacity.clone().try_acquire_owned() {
            Ok(first) => match claim(&state.senders, connection, first).await {
                Some(wait) => wait,
                None => continue,
            },
            Err(_) => Wait::Capacity,
        };
        let (work, sleep) = match wait {
            Wait::Capacity => (false, None),
            Wait::Work(sleep) => (true, Some(sleep)),
            Wait::Retry(sleep) => (false, Some(sleep)),
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = capacity.acquire(), if wait == Wait::Capacity => {}
            _ = state.wake.notified(), if work => scheduler.discover_soon(),
            _ = room_freed, if work => {}
            _ = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
        }
    }
}

/// One claim of as many due deliveries as there are free send slots (`first` and the
/// others), started at once. `None`: claim again now; otherwise what to wait for.
async fn claim(senders: &Senders, connection: &mut Option<PgConnection>, first: OwnedSemaphorePermit) -> Option<Wait> {
    let (context, scheduler, capacity) = (&senders.context, &senders.scheduler, &senders.capacity);
    // Every claimed row gets its permit now: taken later, some could have gone to webhooks
    // handed over at ingest meanwhile, leaving claimed rows without a task.
    let mut permits = vec![first];
    while permits.len() < CLAIM_BATCH {
        let Ok(permit) = capacity.clone().try_acquire_owned() else { break };
        permits.push(permit);
    }
    let wanted = permits.len();
    let lease_id = Uuid::new_v4();
    let lease_seconds = context.settings.lease_duration().as_secs_f64();
    let plan = scheduler.plan();
    // The lease starts when the claim statement does (its `now()`), not when it answers.
    let leased_at = Instant::now();
    let claimed = async {
        let db = match connection {
            Some(db) => db,
            None => connection.insert(open_claim_connection(&context.pool).await?),
        };
        // No further ahead than the loop would sleep anyway (see `sleep_for`).
        deliveries::claim_due(db, wanted as i64, lease_seconds, lease_id, &plan, context.settings.poll_interval).await
    };
    // A claim without an answer by the deadline (a database gone without closing the
    // socket) is given up; its connection is dropped below, as after any error. Rows it
    // may have claimed come back when their lease ends.
    let deadline = context.statement_deadline;
    let claimed = db::bounded(deadline, claimed).await;
    let claim = match claimed {
        Ok(claim) => claim,
        Err(error) => {
            tracing::warn!(%error, "cannot claim deliveries; retrying");
            scheduler.claim_failed();
            // Whatever went wrong, the next claim starts on a new connection.
            *connection = None;
            return Some(Wait::Retry(CLAIM_RETRY));
        }
    };
    // More may be due: claim again as soon as there is a free slot. The same if a
    // subscription took all the room the claim was planned with (at most a cap's worth) and
    // still has room (it had more, or its earlier attempts finished while the claim ran): it
    // may have more due, and nothing else would wake the loop for it. Those without room
    // are full, and the next claim does not read them.
    let more = claim.more;
    let filled = scheduler.filled(&plan, &claim.deliveries);
    let next_due = claim.next_due;
    spawn_deliveries(senders, claim.deliveries, permits, lease_id, leased_at);
    if more || scheduler.any_has_room(&filled) {
        return None;
    }
    // Every due row of a subscription with room is claimed. What else is due belongs to
    // full subscriptions, which `room_freed` signals; sleep until the next delivery of a
    // subscription with room is due.
    let sleep = scheduler.sleep_for(next_due, OffsetDateTime::now_utc(), context.settings.poll_interval);
    (!sleep.is_zero()).then_some(Wait::Work(sleep))
}

/// Opens the claim loop's connection with the pool's settings, within the pool's usual wait
/// for a connection.
async fn open_claim_connection(pool: &PgPool) -> sqlx::Result<PgConnection> {
    let options = pool.connect_options();
    let connect = deliveries::connect_for_claims(&options);
    tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// Starts one task per claimed delivery, each holding one of the send permits taken for
/// the claim (at least as many as rows claimed; the rest are given back).
fn spawn_deliveries(senders: &Senders, claimed: Vec<ClaimedDelivery>, permits: Vec<OwnedSemaphorePermit>, lease_id: Uuid, leased_at: Instant) {
    let guards = senders.scheduler.claimed(&claimed);
    for ((delivery, guard), permit) in claimed.into_iter().zip(guards).zip(permits) {
        senders.start(delivery, Slot::new(guard, permit), lease_id, leased_at);
    }
}

/// The last moment a delivery leased at `claimed_at` may start its attempt: one that
/// starts later could outlive its lease, and another claim could then send it too (the
/// recorder would drop the first outcome as lost). A margin of up to 5 s leaves time to
/// write the outcome. With the default lease (twice the timeout and 30 s) that is 35 s after
/// the claim; a claimed row still waiting then (a rate limit lowered under a full
/// allowance, a lease configured short) goes back to the queue unsent.
fn latest_start(claimed_at: Instant, settings: &DeliverySettings) -> Instant {
    let lease = settings.lease_duration();
    let spare = lease.saturating_sub(settings.timeout);
    claimed_at + spare - (spare / 2).min(LATEST_START_MARGIN)
}

/// Why a claimed delivery goes back to the queue unsent.
#[derive(Debug, Clone, Copy)]
enum Unsent {
    /// The instance is shutting down.
    Stopping,
    /// An attempt started now could outlive the lease ([`latest_start`]).
    TooLate,
}

/// What the last start of an attempt keeps from the end of its lease, at most.
const LATEST_START_MARGIN: Duration = Duration::from_secs(5);

/// One claimed delivery on its way: look up the subscription, wait for its turn, send,
/// hand the outcome on.
struct DeliveryTask {
    context: Arc<DeliveryContext>,
    lease_id: Uuid,
    /// See [`latest_start`].
    latest_start: Instant,
    stopping: CancellationToken,
    abort: CancellationToken,
    outcomes: mpsc::Sender<Finished>,
    /// Held until the outcome is recorded (see [`Finished::slot`]).
    slot: Slot,
}

impl DeliveryTask {
    async fn run(mut self, mut delivery: ClaimedDelivery) {
        // Boxed, as `send` below and the rare paths: see there.
        let Some(mut subscription) = Box::pin(self.subscription_to_send(&delivery)).await else { return };
        // Claimed beyond the cap: wait here for a turn at the receiver; but not past the
        // lease's last useful start, nor once the instance is stopping (a send started then
        // could be cut off by the end of the grace period, its attempt left unrecorded).
        let ready = tokio::select! {
            biased;
            _ = self.stopping.cancelled() => Err(Unsent::Stopping),
            ready = self.slot.ready_to_send(subscription.rate_limit, self.latest_start) => ready.map_err(|TooLate| Unsent::TooLate),
        };
        match ready {
            Err(unsent) => return Box::pin(self.give_back(&delivery, unsent)).await,
            // The subscription may have changed while the delivery waited: paused, disabled
            // by a 410 to an earlier attempt, deleted, or given a new target or secret. The
            // cache knows (a change invalidates it on every instance).
            Ok(Readiness { waited: true }) => match Box::pin(self.subscription_to_send(&delivery)).await {
                Some(fresh) => subscription = fresh,
                None => return,
            },
            Ok(Readiness { waited: false }) => {}
        }
        // The look-up above may have taken a while (up to the statement deadline), and
        // shutdown may have begun meanwhile.
        if self.stopping.is_cancelled() {
            return Box::pin(self.give_back(&delivery, Unsent::Stopping)).await;
        }
        if Instant::now() > self.latest_start {
            return Box::pin(self.give_back(&delivery, Unsent::TooLate)).await;
        }
        // Moved, not copied: nothing after the send reads the body.
        let body = Bytes::from(std::mem::take(&mut delivery.body));
        let signing = dispatch::Signing {
            secrets: subscription.live_secrets(OffsetDateTime::now_utc()),
            github_signature: subscription.github_signature,
        };
        // Boxed: the HTTP request's future is large, and kept inline it made this task's
        // future large too, copied whole at each spawn and state change (a sixth of the
        // service's CPU during a drain went to those copies).
        let send = Box::pin(dispatch::send(
            &self.context.client,
            subscription.target(),
            &delivery,
            body,
            &signing,
            self.context.allow_private_targets,
        ));
        let result = tokio::select! {
            result = send => result,
            _ = self.abort.cancelled() => {
                tracing::info!("shutting down: released unfinished attempt");
                return Box::pin(self.release(&delivery, Some(OffsetDateTime::now_utc()))).await;
            }
        };
        self.slot.attempt_done(result.outcome.answered());
        let (mut finished, disable) =
            finish(&delivery, &subscription, self.lease_id, &result, &self.context.settings.retry_schedule, random_unit());
        tracing::info!(
            outcome = finished.attempt.outcome.as_str(),
            status_code = result.status_code(),
            duration_ms = finished.attempt.duration_ms,
            error = result.error.as_deref(),
            "attempt finished"
        );
        self.count_attempt(&delivery, &result, &finished);
        finished.slot = Some(self.slot);
        if self.outcomes.send(finished).await.is_err() {
            tracing::error!("outcome recorder stopped; the lease will expire and the delivery will be retried");
        }
        if let Some(reason) = disable {
            Box::pin(disable_subscription(&self.context, delivery.subscription_id, reason, Some(&subscription.target_url))).await;
        }
    }

    /// Gives back a delivery that will not be sent now. Too late in its lease, it is due
    /// again after a delivery timeout, not at once: its subscription's turns are as far off
    /// as they were, and a claim at once would only give it back again.
    async fn give_back(&self, delivery: &ClaimedDelivery, unsent: Unsent) {
        let due = match unsent {
            Unsent::Stopping => {
                tracing::info!("shutting down: a delivery waiting for its turn goes back to the queue");
                OffsetDateTime::now_utc()
            }
            Unsent::TooLate => {
                tracing::info!("its turn at the receiver would come too late in its lease: back to the queue");
                OffsetDateTime::now_utc() + self.context.settings.timeout
            }
        };
        self.release(delivery, Some(due)).await;
    }

    /// The delivery's subscription as the cache has it now, if the delivery is to be sent:
    /// a deleted subscription's delivery is cancelled, a paused one's parked, one whose
    /// secret is corrupt at rest fails unsent, and one whose subscription cannot be read
    /// goes back to the queue for a few seconds (`None`).
    async fn subscription_to_send(&self, delivery: &ClaimedDelivery) -> Option<Arc<CachedSubscription>> {
        match self.context.subscriptions.get(delivery.subscription_id).await {
            Ok(Lookup::Found(subscription)) if subscription.deleted_at.is_none() => {
                if subscription.is_active {
                    return Some(subscription);
                }
                // Parked until the subscription is reactivated.
                self.release(delivery, None).await;
            }
            Ok(_) => self.cancel(delivery, "subscription_deleted").await,
            // Going back to the queue would bring it back here every few seconds for ever,
            // unsent and unexplained: it fails at once, saying why (a new secret and a
            // retry send it).
            Err(error) if error.is_unreadable_secret() => {
                tracing::error!(%error, "the subscription's stored secret does not decrypt: the delivery fails unsent");
                self.cancel(delivery, "secret_unreadable").await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot load the subscription; the delivery goes back to the queue");
                self.release(delivery, Some(OffsetDateTime::now_utc() + Duration::from_secs(5))).await;
            }
        }
        None
    }

    fn count_attempt(&self, delivery: &ClaimedDelivery, result: &AttemptResult, finished: &Finished) {
        let lag = (result.started_at - delivery.due_at).max(time::Duration::ZERO);
        self.context.metrics.attempt_finished(finished.attempt.outcome, result.duration, lag.unsigned_abs());
    }

    /// Gives the delivery back unattempted, due at `due_at` (`None`: parked).
    async fn release(&self, delivery: &ClaimedDelivery, due_at: Option<OffsetDateTime>) {
        let ids = [delivery.id];
        let release = deliveries::release(&self.context.pool, &ids, self.lease_id, due_at);
        match db::bounded(self.context.statement_deadline, release).await {
            Ok(_) => self.context.progressed(),
            Err(error) => tracing::warn!(delivery.id = %delivery.id, %error, "cannot release the delivery; it will be retried when its lease expires"),
        }
    }

    async fn cancel(&self, delivery: &ClaimedDelivery, reason: &str) {
        let cancel = deliveries::cancel_claimed(&self.context.pool, delivery.id, self.lease_id, reason);
        match db::bounded(self.context.statement_deadline, cancel).await {
            Ok(()) => self.context.progressed(),
            Err(error) => tracing::warn!(delivery.id = %delivery.id, %error, "cannot cancel the delivery; it will be looked at again when its lease expires"),
        }
    }
}

/// Takes the subscription out of service: inactive, every instance told, and
/// `webhookd.subscription.disabled` queued, in one transaction; then its waiting deliveries
/// parked as for a pause (`backlog::start_moving`). Attempts already under way finish.
/// `attempted_target`: where the attempt that decided it went; a subscription moved to
/// another target since is left alone.
pub(super) async fn disable_subscription(context: &DeliveryContext, id: SubscriptionId, reason: DisabledReason, attempted_target: Option<&str>) {
    let disabled = async {
        let mut tx = context.pool.begin().await?;
        deliveries::take_backlog_turn(&mut *tx, id).await?;
        let disabled_at = subscriptions::disable(&mut *tx, id, reason, attempted_target).await?;
        if let Some(disabled_at) = disabled_at {
            subscriptions::notify_changed(&mut *tx, id).await?;
            let event = OperationalEvent::SubscriptionDisabled { subscription_id: id, reason, disabled_at };
            operational_events::insert(&mut *tx, &event).await?;
        }
        tx.commit().await.map(|()| disabled_at.is_some())
    };
    // Bounded: the disable may wait for its turn on the backlog (one batch under way).
    match db::bounded(context.statement_deadline, disabled).await {
        Ok(newly_disabled) => {
            context.subscriptions.invalidate(id).await;
            if newly_disabled {
                backlog::start_moving(&context.pool, context.statement_deadline, &context.waker, id).await;
                context.progressed(); // its waiting deliveries are being parked
                context.waker.wake_operations();
                context.metrics.subscription_disabled(reason);
                tracing::warn!(subscription.id = %id, reason = reason.as_str(), "subscription disabled");
            }
        }
        Err(error) => tracing::error!(subscription.id = %id, %error, "cannot disable the subscription"),
    }
}

/// What an attempt's result means for its delivery (see `domain::lifecycle`), its log row,
/// and whether it disables the subscription.
fn finish(
    delivery: &ClaimedDelivery,
    subscription: &SubscriptionRow,
    lease_id: Uuid,
    result: &AttemptResult,
    schedule: &RetrySchedule,
    random: f64,
) -> (Finished, Option<DisabledReason>) {
    let finished_at = result.started_at + result.duration;
    let next = lifecycle::after_attempt(&result.outcome, delivery.attempt_in_round(), schedule, random);
    let finished = Finished {
        slot: None,
        update: OutcomeUpdate {
            id: delivery.id,
            lease_id,
            status: next.status,
            next_attempt_at: next.retry_in.map(|wait| finished_at + wait),
            last_error: result.error.clone(),
        },
        attempt: AttemptRow {
            delivery_id: delivery.id,
            subscription_id: delivery.subscription_id,
            attempt_number: delivery.attempt_count,
            outcome: next.outcome,
            status_code: result.status_code().map(i32::from),
            error: result.error.clone(),
            duration_ms: result.duration.as_millis().min(i32::MAX as u128) as i32,
            response_excerpt: result.response_excerpt.clone(),
            target_url: subscription.target_url.clone(),
            created_at: result.started_at,
        },
    };
    (finished, next.disable)
}

/// A uniform random number in [0, 1) for retry jitter.
fn random_unit() -> f64 {
    let bits = getrandom::u64().unwrap_or(0) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::AttemptOutcome::*;
    use crate::domain::lifecycle::DeliveryStatus::*;
    use crate::domain::lifecycle::SendOutcome;
    use crate::domain::DeliveryId;

    fn delivery(attempt: i32) -> ClaimedDelivery {
        ClaimedDelivery {
            id: DeliveryId::new(),
            subscription_id: SubscriptionId::new(),
            event_type: None,
            body: b"{}".to_vec(),
            attempt_count: attempt,
            round_start_attempt: 0,
            due_at: OffsetDateTime::now_utc(),
        }
    }

    fn subscription() -> SubscriptionRow {
        let now = OffsetDateTime::now_utc();
        SubscriptionRow {
            id: SubscriptionId::new(), name: None, target_url: "http://example.com/".into(), secret_key: None,
            event_types: vec![], is_active: true, created_at: now, updated_at: now, deleted_at: None,
            previous_secret_key: None, previous_secret_expires_at: None, rate_limit: None, github_signature: false,
            disabled_reason: None, disabled_at: None,
        }
    }

    fn result(outcome: SendOutcome) -> AttemptResult {
        AttemptResult { started_at: OffsetDateTime::now_utc(), duration: Duration::from_millis(5), outcome, error: None, response_excerpt: None }
    }

    fn answered(status: u16) -> SendOutcome {
        SendOutcome::Answered { status, retry_after: None }
    }

    #[test]
    fn a_2xx_answer_succeeds_the_delivery() {
        let schedule = RetrySchedule::parse("1s", 0.0).unwrap();
        let done = finish(&delivery(1), &subscription(), Uuid::nil(), &result(answered(204)), &schedule, 0.0).0;
        assert_eq!((done.update.status, done.attempt.outcome), (Succeeded, Success));
        assert_eq!(done.update.next_attempt_at, None);
    }

    #[test]
    fn a_failure_retries_until_the_schedule_runs_out() {
        let schedule = RetrySchedule::parse("1s", 0.0).unwrap();
        let first = finish(&delivery(1), &subscription(), Uuid::nil(), &result(answered(500)), &schedule, 0.0).0;
        assert_eq!((first.update.status, first.attempt.outcome), (Retrying, FailedAttempt));
        let r = result(answered(500));
        let wait = first.update.next_attempt_at.unwrap() - (first.attempt.created_at + Duration::from_millis(5));
        assert_eq!(wait, time::Duration::seconds(1));
        let last = finish(&delivery(2), &subscription(), Uuid::nil(), &r, &schedule, 0.0).0;
        assert_eq!((last.update.status, last.attempt.outcome), (Failed, Failure));
    }

    #[test]
    fn a_manual_retry_starts_a_fresh_round_of_the_schedule() {
        let schedule = RetrySchedule::parse("1s", 0.0).unwrap();
        let mut retried = delivery(3);
        retried.round_start_attempt = 2;
        let done = finish(&retried, &subscription(), Uuid::nil(), &result(answered(500)), &schedule, 0.0).0;
        assert_eq!(done.update.status, Retrying);
        assert_eq!(done.attempt.attempt_number, 3, "attempt numbers continue");
    }

    #[test]
    fn a_blocked_address_fails_at_once() {
        let schedule = RetrySchedule::parse("1s,1s", 0.0).unwrap();
        let done = finish(&delivery(1), &subscription(), Uuid::nil(), &result(SendOutcome::Blocked), &schedule, 0.0).0;
        assert_eq!((done.update.status, done.attempt.outcome), (Failed, Failure));
    }
}
