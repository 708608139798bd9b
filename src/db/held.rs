//! A connection that a busy loop keeps from one statement to the next.
//!
//! Each statement run through the pool costs two round trips more than the statement:
//! the pool's check of the connection it hands out (`silence::check_idle`, a ping) and
//! sqlx's ping of every connection given back. For the loops that write every webhook (the
//! ingest writer, its flusher, the outcome recorder) that was two pings for each of their
//! statements, each a wake-up of the database backend and of the service on a machine
//! whose cores the whole stack shares. A [`HeldConnection`] is kept while the loop has
//! work waiting, and given back to the pool, whose checks then apply to it as to any other:
//!
//! - once the loop has waited [`IDLE_LIMIT`] for more work (each loop waits for its next
//!   batch through [`HeldConnection::idle_until`]: below saturation their queues run dry
//!   between most batches), so an idle loop holds no connection;
//! - after any failed statement;
//! - after [`HOLD_LIMIT`] held, so that the pool's connection lifetime still applies,
//!
//! and a held connection that sat unused since a connection was found silent is closed
//! unasked, as the pool closes its idle ones (`db::silence`). Past the deadline the
//! connection is closed, as `db::within_deadline` does.
//!
//! One used again after more than [`RECHECK_AFTER`] unused is first pinged, as the pool
//! checks the connections it hands out: a database that went silent while the loop had
//! nothing to do (a failover, a dropped NAT mapping) then costs the next batch a second
//! (`silence::PING_LIMIT`) and a new connection, not the statement deadline. A database
//! that goes silent within a shorter pause is as likely as one that goes silent during a
//! statement, which waits out the deadline however it got its connection. At 200
//! webhooks a second the pauses are shorter, and no ping is sent.
//!
//! The loops take their connections from a pool of their own (`db::connect_writers`), with
//! a connection for each and one to spare: holding one leaves the API's pool untouched,
//! whatever its size.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::{before_deadline, no_answer_within, silence};

/// Longest a connection is kept before it goes back to the pool for its checks.
const HOLD_LIMIT: Duration = Duration::from_secs(10);
/// Longest a held connection goes unused before its next statement is preceded by a ping.
const RECHECK_AFTER: Duration = Duration::from_millis(100);
/// Longest a loop waiting for work through [`HeldConnection::idle_until`] keeps its
/// connection meanwhile.
const IDLE_LIMIT: Duration = Duration::from_millis(500);

/// A pooled connection kept between statements (see the module's documentation).
pub struct HeldConnection {
    pool: PgPool,
    held: Option<Held>,
}

struct Held {
    connection: PoolConnection<Postgres>,
    taken_at: Instant,
    last_used: Instant,
}

impl HeldConnection {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, held: None }
    }

    /// Runs `statement` as `db::within_deadline` does, on the connection held (taken from
    /// the pool when none is), and keeps the connection if the module's rules allow.
    pub async fn run<T>(
        &mut self,
        deadline: Duration,
        statement: impl AsyncFnOnce(&mut sqlx::PgConnection) -> sqlx::Result<T>,
    ) -> sqlx::Result<T> {
        let mut held = match self.held.take() {
            Some(held) => match Self::still_answering(held).await {
                Some(held) => held,
                None => self.take().await?,
            },
            None => self.take().await?,
        };
        match before_deadline(deadline, statement(&mut held.connection)).await {
            Some(result) => {
                held.last_used = Instant::now();
                if result.is_ok() && held.taken_at.elapsed() < HOLD_LIMIT {
                    self.held = Some(held);
                }
                result
            }
            None => {
                held.connection.close_on_drop();
                Err(no_answer_within(deadline))
            }
        }
    }

    /// Gives the connection back to the pool, if one is held: before the loop waits on
    /// work that is not its own (the recorder disabling a subscription).
    pub fn release(&mut self) {
        self.held = None;
    }

    /// Waits for `work` (the loop's next batch), giving the connection back to the pool if
    /// that takes longer than [`IDLE_LIMIT`].
    pub async fn idle_until<T>(&mut self, work: impl Future<Output = T>) -> T {
        if self.held.is_none() {
            return work.await;
        }
        let mut work = std::pin::pin!(work);
        match tokio::time::timeout(IDLE_LIMIT, &mut work).await {
            Ok(output) => output,
            Err(_) => {
                self.release();
                work.await
            }
        }
    }

    /// `held`, unless it sat unused since a connection was found silent, or fails the
    /// check due after [`RECHECK_AFTER`] unused (see the module's documentation); it is
    /// closed then.
    async fn still_answering(mut held: Held) -> Option<Held> {
        let unused_for = held.last_used.elapsed();
        let answering = if silence::idle_since_found_silent(unused_for) {
            false
        } else if unused_for <= RECHECK_AFTER {
            true
        } else if let Err(error) = silence::check_held(&mut held.connection).await {
            tracing::warn!(%error, "dropping a connection kept between statements; taking another");
            false
        } else {
            true
        };
        if !answering {
            held.connection.close_on_drop();
            return None;
        }
        Some(held)
    }

    async fn take(&self) -> sqlx::Result<Held> {
        let connection = self.pool.acquire().await?;
        let now = Instant::now();
        Ok(Held { connection, taken_at: now, last_used: now })
    }
}
