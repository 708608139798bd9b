//! Group commit for ingest. Each request's 202 must wait for its row to be durably
//! committed, and one commit costs a disk flush; so requests arriving together share one
//! multi-row INSERT (one commit). A request that arrives while the database is idle is
//! written at once, alone: batching adds no latency at low load. Under load, requests queue
//! while the commit in flight runs, and the next batch takes all of them.
//!
//! One commit at a time, not several side by side: the fewer commits, the more rows each
//! takes, and on the benchmark machine one writer accepted 18,400-19,500 requests/s where
//! four accepted 12,200-15,100/s and two 12,900-14,100/s (API-only instance, 64
//! connections, docs/benchmark.md): each statement costs the service a write and a wake-up
//! of its database backend, and concurrent commits wait on each other's flushes.
//!
//! On an instance that also delivers, a webhook that gets a free send slot
//! (`delivery::Handoff`) is written already claimed and its delivery starts once the commit
//! is done, without a claim: one statement and one row version fewer per webhook. Such a
//! batch commits without waiting for its flush, and its 202s wait for the [`Flusher`]
//! instead (see [`Batch::write`]): the sends do not wait for the disk, the 202s do. So does
//! a batch whose webhooks got no slot (the subscription at its cap, or unknown here while a
//! claim that may find it is in the database): the instance's claim loop is woken as soon
//! as the rows are committed, and claims and sends them before their flush too.
//!
//! A batch whose write got no answer (a dropped connection, the statement deadline) may
//! have committed all the same. Its requests are not answered 503 at once: the rows are
//! looked for on another connection once the write has ended on the server, and those
//! found are answered 202 ([`confirm_unanswered_write`]). A 503 for a webhook the database
//! kept would have its producer send it again, and the receiver get it twice.

mod flusher;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use crate::db::deliveries::{self, BatchKey, NewDelivery};
use crate::db::{self, HeldConnection};
use crate::delivery::{Handoff, HeldSlot};
use crate::domain::lifecycle::DeliveryStatus;
use crate::domain::DeliveryId;
use crate::supervision::{spawn_essential, Alarm};
use flusher::Flusher;

/// Most rows in one INSERT.
const MAX_BATCH: usize = 512;
/// Most bytes of bodies in one INSERT (a larger body goes alone). All the bodies of a batch
/// travel as one array: 512 bodies at a `WEBHOOKD_MAX_PAYLOAD` of a few MiB made an array
/// over PostgreSQL's 1 GiB limit for one value, and every request of the batch failed.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Requests waiting for a batch; beyond this, handlers wait (back-pressure).
const QUEUE: usize = 8192;

/// What became of a committed webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Waiting in the queue for a claim.
    Queued,
    /// Written claimed; this instance is sending it.
    HandedOff,
}

type Reply = oneshot::Sender<Result<Placed, Arc<sqlx::Error>>>;

/// Hands rows to the batcher and waits for their commit.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::Sender<(NewDelivery, Reply)>,
    handoff: Arc<OnceLock<Handoff>>,
}

impl GroupCommit {
    /// Starts the batcher on the current runtime; each batch's INSERT may wait at most
    /// `deadline` for its answer (`HeldConnection::run`). A panic in it raises `alarm`.
    pub fn start(writers: PgPool, deadline: Duration, alarm: &Alarm) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let handoff = Arc::new(OnceLock::new());
        spawn_essential("ingest writer", alarm, batch_loop(writers, deadline, receiver, handoff.clone(), alarm.clone()));
        Self { sender, handoff }
    }

    /// From now on, webhooks that get a free send slot from `handoff` are written claimed
    /// and sent by it (once; the delivery engine starts after the API's state is built).
    pub fn hand_off_to(&self, handoff: Handoff) {
        let _ = self.handoff.set(handoff);
    }

    /// Returns once `row` is committed (or its batch failed).
    pub async fn insert(&self, row: NewDelivery) -> Result<Placed, Arc<sqlx::Error>> {
        let (reply, committed) = oneshot::channel();
        let gone = || Arc::new(sqlx::Error::PoolClosed);
        self.sender.send((row, reply)).await.map_err(|_| gone())?;
        committed.await.map_err(|_| gone())?
    }
}

/// Writes one batch at a time: what queued while the last commit ran is the next batch.
async fn batch_loop(
    writers: PgPool,
    deadline: Duration,
    mut receiver: mpsc::Receiver<(NewDelivery, Reply)>,
    handoff: Arc<OnceLock<Handoff>>,
    alarm: Alarm,
) {
    let mut writer = Writer {
        flusher: Flusher::start(writers.clone(), deadline, &alarm),
        connection: HeldConnection::new(writers.clone()),
        writers,
        deadline,
        handoff,
        looks: Arc::new(Semaphore::new(1)),
    };
    let mut queued = Vec::with_capacity(MAX_BATCH);
    // Kept between batches, given back once none has come for a while (db/held.rs).
    while writer.connection.idle_until(receiver.recv_many(&mut queued, MAX_BATCH)).await > 0 {
        while !queued.is_empty() {
            writer.write(take_batch(&mut queued)).await;
        }
    }
    // Every handle dropped: shutting down (the flusher answers what it holds, then ends).
}

/// The first of `queued`, in order, whose bodies make at most [`MAX_BATCH_BYTES`]
/// together, or the first alone if it is larger.
fn take_batch(queued: &mut Vec<(NewDelivery, Reply)>) -> Vec<(NewDelivery, Reply)> {
    let mut bytes = 0;
    let over = queued.iter().position(|(row, _)| {
        bytes += row.body.len();
        bytes > MAX_BATCH_BYTES
    });
    let end = over.map_or(queued.len(), |over| over.max(1));
    queued.drain(..end).collect()
}

/// The one ingest writer: its connection, kept between batches, and the flusher that
/// answers the batches it commits without waiting for their flush.
struct Writer {
    writers: PgPool,
    deadline: Duration,
    connection: HeldConnection,
    flusher: Flusher,
    handoff: Arc<OnceLock<Handoff>>,
    /// One look at an unanswered write at a time ([`confirm_unanswered_write`]): each
    /// takes a connection of the writers' pool, which has one to spare for the writer loops.
    looks: Arc<Semaphore>,
}

impl Writer {
    /// Commits one batch, and answers its requests or hands them to what will.
    async fn write(&mut self, batch: Vec<(NewDelivery, Reply)>) {
        let (flusher, handoff, deadline) = (&self.flusher, self.handoff.get(), self.deadline);
        let (mut rows, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.into_iter().unzip();
        let slots = hold_slots(handoff, &mut rows);
        let replies = Pending::for_batch(replies, &rows, &slots);
        // Rows this instance will send: handed over, or queued for its own claim loop.
        let queued_here = handoff.is_some() && rows.iter().any(|row| row.status == DeliveryStatus::Queued.as_str());
        let to_send_here = queued_here || slots.iter().any(Option::is_some);
        let key = BatchKey::new();
        let batch = Batch { rows, slots, lease_id: Uuid::new_v4(), lease_seconds: handoff.map_or(0.0, Handoff::lease_seconds), key };
        // Beyond MAX_AHEAD webhooks waiting for a flush (a disk that stays stopped, a
        // synchronous standby gone), a batch commits with its own flush, as it always may.
        let ahead = flusher.rows_waiting() < MAX_AHEAD;
        // Set once the INSERT is on its way.
        let sent = OnceLock::new();
        let write = async |db: &mut sqlx::PgConnection| {
            let flush_later = to_send_here && ahead && flusher.may_flush_later(db).await?;
            let _ = sent.set(());
            batch.write(db, flush_later).await.map(|()| flush_later)
        };
        // Given up after `deadline`: the one writer must not wait for ever on a database
        // that vanished, with all ingest queued behind it.
        let result = self.connection.run(deadline, write).await;
        match (result, sent.get()) {
            // The INSERT was sent, then the connection failed or fell silent: it may have
            // committed. (An error the database sent back about the statement means it did not.)
            (Err(error), Some(_)) if crate::error::is_unavailable(&error) => {
                // Looked into on the side: the writer goes on with the next batch.
                tracing::warn!(%error, webhooks = replies.len(), "an ingest batch's write got no answer; looking for its rows before answering");
                let look = UnansweredWrite { key, replies, error };
                tokio::spawn(confirm_unanswered_write(self.writers.clone(), deadline, self.looks.clone(), look));
            }
            (Ok(true), _) => {
                // Committed, not yet flushed: the claim loop takes the queued rows now
                // rather than after the 202s, which wait for the flush.
                if queued_here && let Some(handoff) = handoff {
                    handoff.wake_claim_loop();
                }
                // The next batch waits for this one's flush as a commit would, so batches
                // stay as large; but no longer than FLUSH_PATIENCE, so that a pause of
                // the disk holds up the 202s and not the sends.
                let flushed = flusher.reply_once_durable(replies);
                let _ = tokio::time::timeout(FLUSH_PATIENCE, flushed).await;
            }
            (result, _) => Pending::answer_all(replies, &result.map(|_| ()).map_err(Arc::new)),
        }
    }
}

/// Answers the requests of a batch whose write got no answer, one batch at a time (`looks`):
/// waits on another connection until that write has ended on the server (committed or
/// rolled back), then answers 202 for each row found, 503 for the others (not stored: their
/// producers send them again). Rows are looked for after a flush, as the [`Flusher`] does,
/// so that no 202 goes out before its row is durable (a batch written without waiting for
/// its flush, or one whose wait for a synchronous standby was cancelled on the server). A
/// look that fails too answers every request 503 with the write's `error`.
///
/// A row found that was written claimed lost its sender with the write's failure: it is
/// delivered once its lease ends, by any instance.
async fn confirm_unanswered_write(writers: PgPool, deadline: Duration, looks: Arc<Semaphore>, write: UnansweredWrite) {
    let UnansweredWrite { key, replies, error } = write;
    // The semaphore is never closed.
    let _turn = looks.acquire_owned().await;
    let ids: Vec<DeliveryId> = replies.iter().map(|pending| pending.id).collect();
    let look = db::within_deadline(&writers, deadline, async |db| {
        deliveries::wait_for_earlier_try(db, key).await?;
        deliveries::find_durable(db, &ids).await
    });
    match look.await {
        Ok(found) => {
            let kept = replies.iter().filter(|pending| found.contains(&pending.id)).count();
            tracing::info!(kept, lost = replies.len() - kept, "found what an ingest batch without an answer committed: 202 for the webhooks kept, 503 for the others");
            Pending::answer_found(replies, &found);
        }
        Err(look_error) => {
            tracing::warn!(error = %look_error, "cannot find out whether an ingest batch without an answer committed; answering 503");
            Pending::answer_all(replies, &Err(Arc::new(error)));
        }
    }
}

/// A batch whose INSERT was sent and got no answer.
struct UnansweredWrite {
    /// The advisory lock the INSERT held until it ended.
    key: BatchKey,
    replies: Vec<Pending>,
    /// What became of the INSERT: the answer to each request if the look fails too.
    error: sqlx::Error,
}

/// A request waiting for its batch: where its answer goes, and what it will say.
struct Pending {
    reply: Reply,
    id: DeliveryId,
    placed: Placed,
}

impl Pending {
    fn for_batch(replies: Vec<Reply>, rows: &[NewDelivery], slots: &[Option<HeldSlot>]) -> Vec<Self> {
        let placed = |slot: &Option<HeldSlot>| if slot.is_some() { Placed::HandedOff } else { Placed::Queued };
        replies.into_iter().zip(rows).zip(slots).map(|((reply, row), slot)| Self { reply, id: row.id, placed: placed(slot) }).collect()
    }

    /// Answers every request of a batch that failed, or was committed with its own flush.
    fn answer_all(replies: Vec<Self>, result: &Result<(), Arc<sqlx::Error>>) {
        for pending in replies {
            let _ = pending.reply.send(result.clone().map(|()| pending.placed));
        }
    }

    /// Answers the requests of a batch whose write got no answer: 202 for the rows `found`
    /// (queued: whatever sender was to take them is gone), 503 for the others.
    fn answer_found(replies: Vec<Self>, found: &HashSet<DeliveryId>) {
        for pending in replies {
            let answer = if found.contains(&pending.id) { Ok(Placed::Queued) } else { Err(Arc::new(not_stored())) };
            let _ = pending.reply.send(answer);
        }
    }
}

/// A webhook whose write got no answer and which the database does not have: answered 503,
/// to be sent again.
fn not_stored() -> sqlx::Error {
    flusher::not_durable("the write got no answer and the database does not have the webhook: not stored".into())
}

/// One batch of webhooks and the send slots held for some of them.
struct Batch {
    rows: Vec<NewDelivery>,
    slots: Vec<Option<HeldSlot>>,
    lease_id: Uuid,
    lease_seconds: f64,
    /// The advisory lock the write holds until it ends (see [`confirm_unanswered_write`]).
    key: BatchKey,
}

impl Batch {
    /// Commits the rows and starts the sends of those handed over. Dropped before the
    /// commit (a failure, the deadline), it gives the held slots back.
    ///
    /// With `flush_later` the commit does not wait for its flush: the sends start as soon as
    /// the rows are committed, and the 202s wait for the [`Flusher`]. So a pause of the
    /// disk delays the 202s but not the deliveries (a virtual disk that stops for 100-1,700
    /// ms now and then made those pauses the p99 of ingest to receipt). A send may then
    /// reach its receiver before the producer has its 202; and should the database crash
    /// or fail over before the flush, the webhook's row is lost after its send, and its
    /// producer is answered 503 (the flusher finds the row missing) and sends it again.
    /// No 202 goes out before its row is durable.
    async fn write(self, db: &mut sqlx::PgConnection, flush_later: bool) -> sqlx::Result<()> {
        let (written_at, leased_at) = (OffsetDateTime::now_utc(), tokio::time::Instant::now());
        deliveries::insert_many(&mut *db, &self.rows, self.lease_id, self.lease_seconds, flush_later, self.key).await?;
        for (row, slot) in self.rows.into_iter().zip(self.slots) {
            if let Some(slot) = slot {
                slot.start(row, written_at, self.lease_id, leased_at);
            }
        }
        Ok(())
    }
}

/// Longest the writer waits for a batch committed with `flush_later` to be flushed before
/// it writes the next one: about as long as a flush takes on a disk that is not pausing.
const FLUSH_PATIENCE: Duration = Duration::from_millis(2);
/// Most webhooks sent ahead of their flush: beyond this, batches commit with their own
/// flush again (their sends wait for it, and the writer's wait is bounded by the statement
/// deadline as ever), so that what a crash could take back from the record of sent
/// webhooks stays bounded.
const MAX_AHEAD: usize = 1_000;

/// Holds a send slot for each queued row that can have one, and marks those rows to be
/// written claimed.
fn hold_slots(handoff: Option<&Handoff>, rows: &mut [NewDelivery]) -> Vec<Option<HeldSlot>> {
    rows.iter_mut()
        .map(|row| {
            let queued = row.status == DeliveryStatus::Queued.as_str();
            let slot = handoff.filter(|_| queued).and_then(|h| h.hold(row.subscription_id));
            if slot.is_some() {
                row.status = DeliveryStatus::Delivering.as_str();
            }
            slot
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SubscriptionId;

    const MIB: usize = 1024 * 1024;

    fn queued(body_sizes: &[usize]) -> Vec<(NewDelivery, Reply)> {
        body_sizes
            .iter()
            .map(|&size| {
                let row = NewDelivery {
                    id: DeliveryId::new(),
                    subscription_id: SubscriptionId::new(),
                    event_type: None,
                    body: vec![b'x'; size],
                    status: DeliveryStatus::Queued.as_str(),
                };
                (row, oneshot::channel().0)
            })
            .collect()
    }

    fn batch_sizes(mut queue: Vec<(NewDelivery, Reply)>) -> Vec<usize> {
        let mut sizes = Vec::new();
        while !queue.is_empty() {
            sizes.push(take_batch(&mut queue).len());
        }
        sizes
    }

    #[test]
    fn a_batch_holds_at_most_its_bytes_of_bodies_and_a_larger_body_goes_alone() {
        assert_eq!(batch_sizes(queued(&[1024; 512])), [512], "small bodies: one batch");
        assert_eq!(batch_sizes(queued(&[4 * MIB; 20])), [8, 8, 4], "32 MiB a batch");
        assert_eq!(batch_sizes(queued(&[40 * MIB, 10, 40 * MIB])), [1, 1, 1], "a body over the budget goes alone, and so does what follows it");
        assert_eq!(batch_sizes(queued(&[10, 10, 40 * MIB])), [2, 1]);
    }

    #[test]
    fn a_batch_keeps_the_order_of_arrival() {
        let mut queue = queued(&[8 * MIB; 6]);
        let ids: Vec<DeliveryId> = queue.iter().map(|(row, _)| row.id).collect();
        let first: Vec<DeliveryId> = take_batch(&mut queue).iter().map(|(row, _)| row.id).collect();
        assert_eq!(first, ids[..4]);
        assert_eq!(queue.iter().map(|(row, _)| row.id).collect::<Vec<_>>(), ids[4..]);
    }
}
