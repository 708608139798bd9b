//! A deadline on every request: its body's time (`WEBHOOKD_HTTP_BODY_TIMEOUT`) plus the
//! database's (`WEBHOOKD_DB_STATEMENT_DEADLINE`). Past it, the request answers 503.
//!
//! Why: a handler's statements have no limit of their own, and sqlx sets no TCP keepalive.
//! After a failover that leaves the old sockets open and silent, a request caught
//! mid-statement would wait for its answer until the kernel gave up on the socket (about
//! 15 minutes), holding its pooled connection the while: a few such requests and the pool
//! is empty, ingest included. At the deadline the silence is recorded first, then the
//! handler is dropped, and its connection goes back to a pool that now checks it within a
//! second and drops it (`db::silence::check_released`).
//!
//! A request that is slow with the database alive is given up the same way: a pause,
//! resume or delete of a subscription updates its whole backlog in one statement, so with
//! millions of deliveries waiting the statement deadline must allow for it.
//!
//! The request may or may not have taken effect (a write can commit after its answer was
//! lost), as with any 503 from a database that could not confirm: the error says so.

use std::future::Future;
use std::time::Duration;

use poem::http::Method;
use poem::{IntoResponse, Response};

use crate::db;
use crate::error::ApiError;

/// The answer `work` gives, or 503 once `limit` has passed. The log names the route's
/// template, never the path: a portal link's path is its credential.
pub async fn answer_within(limit: Duration, method: &Method, route: &str, work: impl Future<Output = Response>) -> Response {
    match db::before_deadline(limit, work).await {
        Some(response) => response,
        None => {
            tracing::warn!(%method, route, limit_ms = limit.as_millis() as u64, "a request got no answer from the database in time; answered 503");
            ApiError::no_answer_within(limit).into_response()
        }
    }
}
