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

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::db::deliveries::{self, NewDelivery};

/// Most rows in one INSERT.
const MAX_BATCH: usize = 512;
/// Requests waiting for a batch; beyond this, handlers wait (back-pressure).
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<(), Arc<sqlx::Error>>>;

/// Hands rows to the batcher and waits for their commit.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::Sender<(NewDelivery, Reply)>,
}

impl GroupCommit {
    /// Starts the batcher on the current runtime.
    pub fn start(pool: PgPool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(batch_loop(pool, receiver));
        Self { sender }
    }

    /// Returns once `row` is committed (or its batch failed).
    pub async fn insert(&self, row: NewDelivery) -> Result<(), Arc<sqlx::Error>> {
        let (reply, committed) = oneshot::channel();
        let gone = || Arc::new(sqlx::Error::PoolClosed);
        self.sender.send((row, reply)).await.map_err(|_| gone())?;
        committed.await.map_err(|_| gone())?
    }
}

/// Writes one batch at a time: what queued while the last commit ran is the next batch.
async fn batch_loop(pool: PgPool, mut receiver: mpsc::Receiver<(NewDelivery, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (rows, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.drain(..).unzip();
        let result = deliveries::insert_many(&pool, &rows).await.map_err(Arc::new);
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
    // Every handle dropped: shutting down.
}
