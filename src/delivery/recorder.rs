//! Writes attempt outcomes in batches: whatever finished while the previous batch was
//! being written goes into the next one, as one UPDATE and one INSERT in one transaction.
//! At low load a batch is a single outcome, so batching adds no latency.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::DeliverySettings;
use crate::db::attempts::{self, AttemptRow};
use crate::db::deliveries::{self, OutcomeUpdate};
use crate::db::partitions;

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

pub fn spawn(pool: PgPool, _settings: DeliverySettings) -> (RecorderHandle, mpsc::Sender<Finished>) {
    let (sender, receiver) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(pool, receiver));
    (RecorderHandle { task }, sender)
}

async fn run(pool: PgPool, mut receiver: mpsc::Receiver<Finished>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_until_done(&pool, &batch).await;
        batch.clear();
    }
}

/// Retries until the batch is written: an outcome is only dropped if the process dies,
/// and then the lease expires and the delivery is attempted again.
async fn write_until_done(pool: &PgPool, batch: &[Finished]) {
    let mut failures = 0u32;
    loop {
        match write(pool, batch).await {
            Ok(held) => {
                if held < batch.len() {
                    tracing::warn!(lost = batch.len() - held, "leases expired before outcomes were recorded; those deliveries were claimed again");
                }
                if failures > 0 {
                    tracing::info!(failures, "attempt outcomes recorded after retrying");
                }
                return;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, failures, outcomes = batch.len(), "cannot record attempt outcomes; retrying");
                // A missing partition is the one failure we can mend ourselves.
                let _ = partitions::ensure_partitions(pool, OffsetDateTime::now_utc()).await;
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20)))).await;
            }
        }
    }
}

/// Returns how many deliveries were still leased to us and got updated.
async fn write(pool: &PgPool, batch: &[Finished]) -> sqlx::Result<usize> {
    let updates: Vec<OutcomeUpdate> = batch.iter().map(|f| f.update.clone()).collect();
    let rows: Vec<AttemptRow> = batch.iter().map(|f| f.attempt.clone()).collect();
    let mut tx = pool.begin().await?;
    let held = deliveries::record_outcomes(&mut *tx, &updates).await?;
    // Attempts are logged even when the lease was lost: the request was really sent.
    attempts::insert_many(&mut *tx, &rows).await?;
    tx.commit().await?;
    Ok(held.len())
}
