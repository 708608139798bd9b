//! Answers the ingest batches that were committed without waiting for their flush
//! (`Batch::write` in the parent module), once their rows are durable. One wait for a
//! flush covers every batch committed before it, so batches committed while one wait is
//! under way share the next. The wait also says which rows it still finds: a row lost in a
//! crash or failover before its flush is answered 503, never 202.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::Pending;
use crate::db::{deliveries, HeldConnection};
use crate::domain::DeliveryId;
use crate::supervision::{spawn_essential, Alarm};

/// Tries at a wait for a flush that failed for want of the database (a lost connection,
/// a deadline), each on a new connection, before its batches are answered 503.
const FLUSH_TRIES: u32 = 3;

/// The writer's handle on the flush loop (see the module's documentation).
pub(super) struct Flusher {
    sender: mpsc::UnboundedSender<Committed>,
    /// Whether the database lets this service wait for a flush (UNKNOWN, ALLOWED, REFUSED):
    /// tried once, and refused for good if a wait ever fails in the database itself.
    permission: Arc<AtomicU8>,
    /// Webhooks committed and not yet answered.
    waiting: Arc<AtomicUsize>,
}

const UNKNOWN: u8 = 0;
const ALLOWED: u8 = 1;
const REFUSED: u8 = 2;

/// A batch's requests, and who to tell once they are answered.
struct Committed {
    replies: Vec<Pending>,
    answered: oneshot::Sender<()>,
}

impl Committed {
    /// Answers each request: 202 (its placement) if its row was found durable, 503 if it
    /// was lost before its flush, or the wait's error.
    fn answer(self, durable: &Result<HashSet<DeliveryId>, Arc<sqlx::Error>>) {
        for pending in self.replies {
            let answer = match durable {
                Ok(found) if found.contains(&pending.id) => Ok(pending.placed),
                Ok(_) => Err(Arc::new(lost_before_flush())),
                Err(error) => Err(error.clone()),
            };
            let _ = pending.reply.send(answer);
        }
        let _ = self.answered.send(());
    }
}

/// A webhook whose durability is not known: answered 503 (`error::is_unavailable`).
pub(super) fn not_durable(message: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, message))
}

fn unconfirmed(error: &dyn std::fmt::Display) -> sqlx::Error {
    not_durable(format!("the database could not confirm the webhook's flush: {error}"))
}

fn lost_before_flush() -> sqlx::Error {
    not_durable("the database lost the webhook before flushing it (a crash or failover): not stored".into())
}

impl Flusher {
    pub(super) fn start(pool: PgPool, deadline: Duration, alarm: &Alarm) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let permission = Arc::new(AtomicU8::new(UNKNOWN));
        let waiting = Arc::new(AtomicUsize::new(0));
        spawn_essential("ingest flusher", alarm, flush_loop(pool, deadline, receiver, permission.clone(), waiting.clone()));
        Self { sender, permission, waiting }
    }

    /// Whether a batch may commit without waiting for its flush. The first time, `db`
    /// tries a wait: a database that refuses it (a function revoked from PUBLIC, a
    /// PostgreSQL look-alike without it) gets commits that wait for their own flush.
    pub(super) async fn may_flush_later(&self, db: &mut sqlx::PgConnection) -> sqlx::Result<bool> {
        match self.permission.load(Ordering::Relaxed) {
            ALLOWED => Ok(true),
            REFUSED => Ok(false),
            _ => match deliveries::wait_until_durable(db, &[]).await {
                Ok(_) => {
                    self.permission.store(ALLOWED, Ordering::Relaxed);
                    Ok(true)
                }
                Err(sqlx::Error::Database(error)) if deliveries::refuses_flush_wait(error.code().as_deref()) => {
                    refuse_for_good(&self.permission, &error);
                    Ok(false)
                }
                // Anything else says nothing about the permission (a failover under way, a
                // cancelled statement): this batch waits for its own flush, the next asks again.
                Err(sqlx::Error::Database(error)) => {
                    tracing::debug!(%error, "cannot try a wait for a flush now");
                    Ok(false)
                }
                Err(error) => Err(error),
            },
        }
    }

    pub(super) fn rows_waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Answers the requests once their rows are durable; the returned future ends then.
    pub(super) fn reply_once_durable(&self, replies: Vec<Pending>) -> oneshot::Receiver<()> {
        let (answered, done) = oneshot::channel();
        self.waiting.fetch_add(replies.len(), Ordering::Relaxed);
        // The flush loop ends only after this sender is dropped, or by a panic: the requests
        // are then dropped, and answered 503.
        let _ = self.sender.send(Committed { replies, answered });
        done
    }
}

fn refuse_for_good(permission: &AtomicU8, error: &dyn std::fmt::Display) {
    if permission.swap(REFUSED, Ordering::Relaxed) != REFUSED {
        tracing::warn!(%error, "this database does not let webhookd wait for a flush after a commit (pg_logical_emit_message): ingest commits wait for their own flush, and a webhook's delivery starts after it");
    }
}

async fn flush_loop(
    pool: PgPool,
    deadline: Duration,
    mut receiver: mpsc::UnboundedReceiver<Committed>,
    permission: Arc<AtomicU8>,
    waiting: Arc<AtomicUsize>,
) {
    let mut batches = Vec::new();
    let mut connection = HeldConnection::new(pool);
    // Waits for a flush after nearly every ingest batch: the connection is kept between
    // them (db/held.rs).
    while connection.idle_until(receiver.recv_many(&mut batches, usize::MAX)).await > 0 {
        let ids: Vec<DeliveryId> = batches.iter().flat_map(|c: &Committed| c.replies.iter().map(|p| p.id)).collect();
        let durable = flush_with_retries(&mut connection, deadline, &ids, &permission).await.map_err(Arc::new);
        for committed in batches.drain(..) {
            committed.answer(&durable);
        }
        waiting.fetch_sub(ids.len(), Ordering::Relaxed);
    }
}

/// Waits for the flush past `ids`, on a new connection after each failed try. A failure
/// for want of the database is tried again: these webhooks are committed and maybe sent,
/// and an error would have their producers send them again under new ids.
async fn flush_with_retries(connection: &mut HeldConnection, deadline: Duration, ids: &[DeliveryId], permission: &AtomicU8) -> sqlx::Result<HashSet<DeliveryId>> {
    let mut tries = 0;
    loop {
        tries += 1;
        match connection.run(deadline, async |db| deliveries::wait_until_durable(db, ids).await).await {
            Err(sqlx::Error::Database(error)) if deliveries::refuses_flush_wait(error.code().as_deref()) => {
                // Revoked since it was tried: these are answered 503 (committed, maybe sent,
                // durability unknown), the next batches wait for their own flush.
                refuse_for_good(permission, &error);
                return Err(unconfirmed(&error));
            }
            Err(error) if tries < FLUSH_TRIES => {
                tracing::warn!(%error, "cannot wait for ingest's flush; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Committed, maybe sent, and not known to be durable: 503, "may or may not have
            // taken effect", never a 500.
            Err(sqlx::Error::Database(error)) => return Err(unconfirmed(&error)),
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::group_commit::Placed;

    fn pending(placed: Placed) -> (Pending, oneshot::Receiver<Result<Placed, Arc<sqlx::Error>>>) {
        let (reply, answer) = oneshot::channel();
        (Pending { reply, id: DeliveryId::new(), placed }, answer)
    }

    #[test]
    fn only_webhooks_found_durable_are_acknowledged() {
        let (kept, kept_answer) = pending(Placed::HandedOff);
        let (lost, lost_answer) = pending(Placed::Queued);
        let durable = Ok(HashSet::from([kept.id]));
        let (answered, done) = oneshot::channel();
        Committed { replies: vec![kept, lost], answered }.answer(&durable);

        assert_eq!(kept_answer.blocking_recv().unwrap().unwrap(), Placed::HandedOff);
        let error = lost_answer.blocking_recv().unwrap().unwrap_err();
        assert!(crate::error::is_unavailable(&error), "a lost webhook is answered 503: {error}");
        assert!(done.blocking_recv().is_ok(), "the writer is told");
    }

    #[test]
    fn only_a_missing_right_or_function_turns_the_wait_off_for_good() {
        for refused in ["42501", "42883", "0A000"] {
            assert!(deliveries::refuses_flush_wait(Some(refused)), "{refused}");
        }
        // Terminated in a failover, a read-only standby, cancelled, a deadlock, unknown.
        for passing in ["57P01", "25006", "57014", "40P01", "XX000"] {
            assert!(!deliveries::refuses_flush_wait(Some(passing)), "{passing}");
        }
        assert!(!deliveries::refuses_flush_wait(None));
    }

    #[test]
    fn a_failed_wait_answers_every_webhook_with_its_error() {
        let (first, first_answer) = pending(Placed::HandedOff);
        let (second, second_answer) = pending(Placed::HandedOff);
        let (answered, _done) = oneshot::channel();
        Committed { replies: vec![first, second], answered }.answer(&Err(Arc::new(sqlx::Error::PoolTimedOut)));

        for answer in [first_answer, second_answer] {
            assert!(matches!(*answer.blocking_recv().unwrap().unwrap_err(), sqlx::Error::PoolTimedOut));
        }
    }
}
