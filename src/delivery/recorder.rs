//! Writes attempt outcomes in batches: whatever finished while the previous batch was
//! being written goes into the next one, as one statement (an UPDATE of the deliveries and
//! an INSERT of the attempt rows, in one CTE).
//! At low load a batch is a single outcome, so batching adds no latency.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, Notify};

use super::in_flight::Slot;
use super::{worker, DeliveryContext};
use tokio::task::JoinHandle;

use crate::db::attempts::AttemptRow;
use crate::db::deliveries::{self, OutcomeUpdate, OutcomeWrite, Recorded};
use crate::domain::lifecycle::{DeliveryStatus, DisabledReason};
use crate::db::{self, partitions, HeldConnection};
use crate::supervision::{spawn_essential, Alarm};

/// Largest batch written at once.
const MAX_BATCH: usize = 512;
/// Outcomes waiting to be written before senders wait (back-pressure, bounded memory).
const QUEUE: usize = 4096;
/// How long shutdown waits for the last outcomes to be written.
const FINISH_LIMIT: Duration = Duration::from_secs(30);

/// One finished attempt: what it does to its delivery and its log row.
#[derive(Debug)]
pub struct Finished {
    pub update: OutcomeUpdate,
    pub attempt: AttemptRow,
    /// The send slot this attempt used, given back once its outcome is written: a delivery
    /// counts against the concurrency until its row is no longer `delivering`.
    pub slot: Option<Slot>,
}

pub struct RecorderHandle {
    task: JoinHandle<()>,
}

impl RecorderHandle {
    /// Waits until every outcome sent so far is written (all senders must be dropped).
    pub async fn finish(self) {
        let abort = self.task.abort_handle();
        if tokio::time::timeout(FINISH_LIMIT, self.task).await.is_err() {
            tracing::error!("could not write the last attempt outcomes before shutdown; their leases will expire and they will be retried");
            abort.abort();
        }
    }
}

/// Starts the recorder. `wake` is the claim loop's: a recorded retry may now be the
/// earliest due delivery, so the loop recomputes how long to sleep. A panic in it raises
/// `alarm`: sends without their outcomes written would be repeated at each lease expiry.
pub fn spawn(context: Arc<DeliveryContext>, wake: Arc<Notify>, alarm: &Alarm) -> (RecorderHandle, mpsc::Sender<Finished>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let task = spawn_essential("outcome recorder", alarm, run(context, receiver, wake));
    (RecorderHandle { task }, sender)
}

async fn run(context: Arc<DeliveryContext>, mut receiver: mpsc::Receiver<Finished>, wake: Arc<Notify>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Kept between batches, given back once none has come for a while (db/held.rs).
    let mut connection = HeldConnection::new(context.writers.clone());
    while connection.idle_until(receiver.recv_many(&mut batch, MAX_BATCH)).await > 0 {
        let recorded = write_until_done(&context, &mut connection, &batch).await;
        if batch.iter().any(|f| f.update.next_attempt_at.is_some()) {
            wake.notify_one();
        }
        if batch.iter().any(|f| f.update.status == DeliveryStatus::Failed) {
            // Gave up: the statement queued `webhookd.delivery.failed` events to relay.
            context.waker.wake_operations();
        }
        batch.clear(); // gives the send slots back
        context.progressed();
        // Sustained failure: rare, and after the slots are back. Its statements take
        // connections of their own, and may find the database silent: the outcome
        // writer's goes back to its pool meanwhile.
        if !recorded.to_disable.is_empty() {
            connection.release();
        }
        for subscription in recorded.to_disable {
            worker::disable_subscription(&context, subscription, DisabledReason::Failing, None).await;
        }
    }
}

/// Retries until the batch is written: an outcome is only dropped if the process dies,
/// and then the lease expires and the delivery is attempted again.
async fn write_until_done(context: &DeliveryContext, connection: &mut HeldConnection, batch: &[Finished]) -> Recorded {
    let pool = &context.pool;
    let mut failures = 0u32;
    let first = OutcomeWrite::first();
    loop {
        // After a failure the batch may be written already (a commit whose answer was lost),
        // or be about to be: the statement then waits for the earlier try to end and checks
        // for each attempt row before appending it.
        let attempt = if failures > 0 { first.again() } else { first };
        match write(connection, context.statement_deadline, batch, context.settings.auto_disable_after, attempt).await {
            Ok(recorded) => {
                let held = recorded.updated.len();
                if failures > 0 {
                    // Outcomes not applied now may have been by the try whose answer was lost.
                    tracing::info!(failures, applied_now = held, outcomes = batch.len(), "attempt outcomes recorded after retrying");
                } else if held < batch.len() {
                    tracing::warn!(lost = batch.len() - held, "leases expired before outcomes were recorded; those deliveries were claimed again");
                }
                return recorded;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, failures, outcomes = batch.len(), "cannot record attempt outcomes; retrying");
                // A missing partition is the one failure we can mend ourselves (within the
                // deadline: after a silence, the outcome writer must not wait for ever here).
                // Only then: each creation may queue attempt writes behind it for 500 ms.
                if lacks_partition(&error) {
                    let _ = db::bounded(context.statement_deadline, partitions::ensure_partitions(pool, OffsetDateTime::now_utc())).await;
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20)))).await;
            }
        }
    }
}

/// Whether `error` is PostgreSQL finding no partition of `attempts` for a row (SQLSTATE
/// 23514, "no partition of relation ... found for row").
fn lacks_partition(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("23514") && e.message().contains("no partition"))
}

/// One attempt at writing the batch, given up after `deadline` (`HeldConnection::run`): an
/// outcome statement waiting on a vanished database would hold every send slot of the batch.
async fn write(connection: &mut HeldConnection, deadline: Duration, batch: &[Finished], disable_after: Duration, attempt: OutcomeWrite) -> sqlx::Result<Recorded> {
    let updates: Vec<OutcomeUpdate> = batch.iter().map(|f| f.update.clone()).collect();
    let rows: Vec<AttemptRow> = batch.iter().map(|f| f.attempt.clone()).collect();
    let record = async |db: &mut sqlx::PgConnection| deliveries::record_attempts(db, &updates, &rows, disable_after, attempt).await;
    connection.run(deadline, record).await
}
