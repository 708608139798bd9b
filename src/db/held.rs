//! A connection that a busy loop keeps from one statement to the next.
//!
//! Each statement run through the pool costs two round trips more than the statement:
//! the pool's check of the connection it hands out (`silence::check_idle`, a ping) and
//! sqlx's ping of every connection given back. For the loops that write every webhook (the
//! ingest writer, its flusher, the outcome recorder) that was two pings for each of their
//! statements, each a wake-up of the database backend and of the service on a machine
//! whose cores the whole stack shares. A [`HeldConnection`] is taken once and kept while
//! the loop has work waiting; the loop gives it back when its queue runs dry, so an idle
//! loop holds no connection and the pool's checks still cover it after any pause.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::{before_deadline, no_answer_within};

/// A pooled connection kept between statements (see the module's documentation).
pub struct HeldConnection {
    pool: PgPool,
    held: Option<PoolConnection<Postgres>>,
}

impl HeldConnection {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, held: None }
    }

    /// Runs `statement` as `db::within_deadline` does, on the connection held (taken from
    /// the pool when none is). The connection is kept unless the statement failed other
    /// than in the database (a broken socket, a protocol error: the pool's check decides
    /// what becomes of it) or passed its deadline (then it is closed).
    pub async fn run<T>(
        &mut self,
        deadline: Duration,
        statement: impl AsyncFnOnce(&mut sqlx::PgConnection) -> sqlx::Result<T>,
    ) -> sqlx::Result<T> {
        let mut connection = match self.held.take() {
            Some(connection) => connection,
            None => self.pool.acquire().await?,
        };
        match before_deadline(deadline, statement(&mut connection)).await {
            Some(result) => {
                if leaves_connection_usable(&result) {
                    self.held = Some(connection);
                }
                result
            }
            None => {
                connection.close_on_drop();
                Err(no_answer_within(deadline))
            }
        }
    }

    /// Gives the connection back to the pool, if one is held: the loop has nothing waiting.
    pub fn release(&mut self) {
        self.held = None;
    }
}

/// Whether a statement's result leaves its connection fit for the next statement: it
/// succeeded, or the database refused it and said so (a constraint, a missing partition).
fn leaves_connection_usable<T>(result: &sqlx::Result<T>) -> bool {
    matches!(result, Ok(_) | Err(sqlx::Error::Database(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_database_error_keeps_the_connection() {
        assert!(leaves_connection_usable(&Ok(1)));
        assert!(!leaves_connection_usable::<()>(&Err(sqlx::Error::Io(std::io::Error::other("reset")))));
        assert!(!leaves_connection_usable::<()>(&Err(sqlx::Error::Protocol("unexpected message".into()))));
    }
}
