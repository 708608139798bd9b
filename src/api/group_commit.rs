//! Group commit for ingest. Each request's 202 must wait for its row to be durably
//! committed, and one commit costs a disk flush; so requests arriving together share one
//! multi-row INSERT (one commit). A request that arrives while the database is idle is
//! written at once, alone: batching adds no latency at low load. Under load, requests queue
//! while the commit in flight runs, and the next batch takes all of them.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::deliveries::{self, NewDelivery};

/// Commits in flight at once. One: the fewer commits run side by side, the more rows each
/// takes, and on the benchmark machine one writer accepted 18,400-19,500 requests/s where
/// four accepted 12,200-15,100/s and two 12,900-14,100/s (API-only instance, 64
/// connections, docs/benchmark.md): each statement costs the service a write and a
/// wake-up of its database backend, and concurrent commits wait on each other's flushes.
/// At low load a request is still written at once, so this adds no latency there.
const WRITERS: usize = 1;
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

async fn batch_loop(pool: PgPool, mut receiver: mpsc::Receiver<(NewDelivery, Reply)>) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    loop {
        // Wait for a free writer first, so that requests pile up meanwhile.
        let Ok(writer) = writers.clone().acquire_owned().await else { return }; // never closed
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every handle dropped: shutting down
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let (rows, replies): (Vec<NewDelivery>, Vec<Reply>) = batch.into_iter().unzip();
            let result = deliveries::insert_many(&pool, &rows).await.map_err(Arc::new);
            for reply in replies {
                let _ = reply.send(result.clone());
            }
            drop(writer);
        });
    }
}
