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
//! instead (see [`Batch::write`]): the sends do not wait for the disk, the 202s do.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::{self, deliveries::{self, NewDelivery}};
use crate::delivery::{Handoff, HeldSlot};
use crate::domain::lifecycle::DeliveryStatus;

/// Most rows in one INSERT.
const MAX_BATCH: usize = 512;
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
    /// `deadline` for its answer (`db::within_deadline`).
    pub fn start(pool: PgPool, deadline: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let handoff = Arc::new(OnceLock::new());
        tokio::spawn(batch_loop(pool, deadline, receiver, handoff.clone()));
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
async fn batch_loop(pool: PgPool, deadline: Duration, mut receiver: mpsc::Receiver<(NewDelivery, Reply)>, handoff: Arc<OnceLock<Handoff>>) {
    let flusher = Flusher::start(pool.clone(), deadline);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (mut rows, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.drain(..).unzip();
        let slots = hold_slots(handoff.get(), &mut rows);
        let placed: Vec<Placed> = slots.iter().map(|slot| if slot.is_some() { Placed::HandedOff } else { Placed::Queued }).collect();
        let replies: Vec<(Reply, Placed)> = replies.into_iter().zip(placed).collect();
        let any_handed_over = slots.iter().any(Option::is_some);
        let batch = Batch { rows, slots, lease_id: Uuid::new_v4(), lease_seconds: handoff.get().map_or(0.0, Handoff::lease_seconds) };
        let write = async |db: &mut sqlx::PgConnection| {
            let flush_later = any_handed_over && flusher.may_flush_later(db).await?;
            batch.write(db, flush_later).await.map(|()| flush_later)
        };
        // Given up after `deadline`: the one writer must not wait for ever on a database
        // that vanished, with all ingest queued behind it.
        match db::within_deadline(&pool, deadline, write).await {
            Ok(true) => {
                // The next batch waits for this one's flush as a commit would, so batches
                // stay as large; but no longer than FLUSH_PATIENCE, so that a pause of
                // the disk holds up the 202s and not the sends.
                let flushed = flusher.reply_once_durable(replies);
                let _ = tokio::time::timeout(FLUSH_PATIENCE, flushed).await;
            }
            result => reply_all(replies, &result.map(|_| ()).map_err(Arc::new)),
        }
    }
    // Every handle dropped: shutting down (the flusher answers what it holds, then ends).
}

fn reply_all(replies: Vec<(Reply, Placed)>, result: &Result<(), Arc<sqlx::Error>>) {
    for (reply, placed) in replies {
        let _ = reply.send(result.clone().map(|()| placed));
    }
}

/// One batch of webhooks and the send slots held for some of them.
struct Batch {
    rows: Vec<NewDelivery>,
    slots: Vec<Option<HeldSlot>>,
    lease_id: Uuid,
    lease_seconds: f64,
}

impl Batch {
    /// Commits the rows and starts the sends of those handed over. Dropped before the
    /// commit (a failure, the deadline), it gives the held slots back.
    ///
    /// With `flush_later` the commit does not wait for its flush: the sends start as soon as
    /// the rows are committed, and the 202s wait for the [`Flusher`]. So a pause of the
    /// disk delays the 202s but not the deliveries (a virtual disk that stops for 100-600 ms
    /// now and then made those pauses the p99 of ingest to receipt). A send may then reach
    /// its receiver before the producer has its 202, and a database crash in the
    /// milliseconds before the flush would lose the record of a webhook already sent; its
    /// producer got no 202 and sends it again, as after any failed request. An accepted
    /// webhook is never lost: no 202 goes out before its row is on disk.
    async fn write(self, db: &mut sqlx::PgConnection, flush_later: bool) -> sqlx::Result<()> {
        let written_at = OffsetDateTime::now_utc();
        deliveries::insert_many(&mut *db, &self.rows, self.lease_id, self.lease_seconds, flush_later).await?;
        for (row, slot) in self.rows.into_iter().zip(self.slots) {
            if let Some(slot) = slot {
                slot.start(row, written_at, self.lease_id);
            }
        }
        Ok(())
    }
}

/// Longest the writer waits for a batch committed with `flush_later` to be flushed before
/// it writes the next one: about as long as a flush takes on a disk that is not pausing.
const FLUSH_PATIENCE: Duration = Duration::from_millis(2);

/// Answers the batches committed without waiting for their flush, once they are durable:
/// one wait for a flush covers every batch committed before it, so batches committed while
/// one wait is under way share the next.
struct Flusher {
    sender: mpsc::UnboundedSender<Committed>,
    /// Whether the database lets this service wait for a flush (UNKNOWN, ALLOWED, REFUSED):
    /// asked once, and refused for good if a wait is ever refused.
    permission: Arc<AtomicU8>,
}

const UNKNOWN: u8 = 0;
const ALLOWED: u8 = 1;
const REFUSED: u8 = 2;

/// A batch's replies, and who to tell once they are sent.
struct Committed {
    replies: Vec<(Reply, Placed)>,
    answered: oneshot::Sender<()>,
}

impl Flusher {
    fn start(pool: PgPool, deadline: Duration) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let permission = Arc::new(AtomicU8::new(UNKNOWN));
        tokio::spawn(flush_loop(pool, deadline, receiver, permission.clone()));
        Self { sender, permission }
    }

    /// Whether a batch may commit without waiting for its flush; the first time, `db` asks
    /// the database.
    async fn may_flush_later(&self, db: &mut sqlx::PgConnection) -> sqlx::Result<bool> {
        match self.permission.load(Ordering::Relaxed) {
            ALLOWED => Ok(true),
            REFUSED => Ok(false),
            _ if deliveries::may_wait_until_durable(db).await? => {
                self.permission.store(ALLOWED, Ordering::Relaxed);
                Ok(true)
            }
            _ => {
                refuse_for_good(&self.permission);
                Ok(false)
            }
        }
    }

    /// Replies once the batch is durable; the returned future ends then.
    fn reply_once_durable(&self, replies: Vec<(Reply, Placed)>) -> oneshot::Receiver<()> {
        let (answered, done) = oneshot::channel();
        // The flush loop ends only after this sender is dropped, so the send cannot fail.
        let _ = self.sender.send(Committed { replies, answered });
        done
    }
}

fn refuse_for_good(permission: &AtomicU8) {
    if permission.swap(REFUSED, Ordering::Relaxed) != REFUSED {
        tracing::warn!("this database does not let webhookd run pg_logical_emit_message, which it uses to wait for a flush after a commit: ingest commits wait for their own flush, and a webhook's delivery starts after it");
    }
}

async fn flush_loop(pool: PgPool, deadline: Duration, mut receiver: mpsc::UnboundedReceiver<Committed>, permission: Arc<AtomicU8>) {
    let mut waiting = Vec::new();
    while receiver.recv_many(&mut waiting, usize::MAX).await > 0 {
        let result = db::within_deadline(&pool, deadline, async |db| deliveries::wait_until_durable(db).await).await;
        if result.as_ref().is_err_and(flush_wait_not_allowed) {
            // Revoked since it was asked: these batches are answered with an error, the
            // next ones wait for their own flush.
            refuse_for_good(&permission);
        }
        // An error leaves these batches committed but perhaps not durable: their producers
        // get an error (503 if the database is unreachable) and send them again, as after
        // an ambiguous commit.
        let result = result.map_err(Arc::new);
        for committed in waiting.drain(..) {
            reply_all(committed.replies, &result);
            let _ = committed.answered.send(());
        }
    }
}

/// Whether `error` says the session may not run `wait_until_durable`, rather than that the
/// database failed.
fn flush_wait_not_allowed(error: &sqlx::Error) -> bool {
    const INSUFFICIENT_PRIVILEGE: &str = "42501";
    const UNDEFINED_FUNCTION: &str = "42883";
    error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == INSUFFICIENT_PRIVILEGE || code == UNDEFINED_FUNCTION)
}

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
