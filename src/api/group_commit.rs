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
//! is done, without a claim: one statement and one row version fewer per webhook.

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
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (mut rows, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.drain(..).unzip();
        let handoff = handoff.get();
        let slots = hold_slots(handoff, &mut rows);
        let lease_id = Uuid::new_v4();
        let lease_seconds = handoff.map_or(0.0, Handoff::lease_seconds);
        let written_at = OffsetDateTime::now_utc();
        // Given up after `deadline`: the one writer must not wait for ever on a database
        // that vanished, with all ingest queued behind it.
        let insert = async |db: &mut sqlx::PgConnection| deliveries::insert_many(db, &rows, lease_id, lease_seconds).await;
        let result = db::within_deadline(&pool, deadline, insert).await.map_err(Arc::new);
        let placed: Vec<Placed> = slots.iter().map(|slot| if slot.is_some() { Placed::HandedOff } else { Placed::Queued }).collect();
        if result.is_ok() {
            for (row, slot) in rows.into_iter().zip(slots) {
                if let Some(slot) = slot {
                    slot.start(row, written_at, lease_id);
                }
            }
        }
        // A failed batch drops its held slots: they are free again.
        for (reply, placed) in replies.into_iter().zip(placed) {
            let _ = reply.send(result.clone().map(|()| placed));
        }
    }
    // Every handle dropped: shutting down.
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
