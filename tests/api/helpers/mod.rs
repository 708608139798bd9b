//! The test harness, one module per kind of real part: the PostgreSQL cluster, the app
//! in-process, HTTP receivers, Redis, and the binary as a process. Tests import from here.

use sqlx::PgPool;
use uuid::Uuid;

mod app;
mod browser;
mod cluster;
mod process;
mod receiver;
mod redis;
mod vanishing_proxy;

pub use app::*;
pub use browser::*;
pub use cluster::*;
pub use process::*;
pub use receiver::*;
pub use redis::*;
pub use vanishing_proxy::*;

/// The admin token every test app and test process uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Queues `count` deliveries of `subscription` (with bodies) straight into the table, due at
/// `due` (an SQL expression; `'infinity'` parks them); returns their ids.
pub async fn queue(pool: &PgPool, subscription: Uuid, count: i64, due: &str) -> Vec<Uuid> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH backlog AS (
             SELECT gen_random_uuid() AS id FROM generate_series(1, $2)
         ), bodies AS (
             INSERT INTO delivery_bodies (delivery_id, body) SELECT id, '{{}}' FROM backlog
         )
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, parked_at)
         SELECT id, $1, 'queued', {due}, CASE WHEN {due} = 'infinity' THEN now() END FROM backlog
         RETURNING id"
    )))
    .bind(subscription)
    .bind(count)
    .fetch_all(pool)
    .await
    .unwrap()
}
