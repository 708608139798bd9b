//! webhookd: a webhook delivery service in which PostgreSQL is the queue.
//!
//! - [`api`]: the HTTP API (poem-openapi), one module per resource.
//! - [`delivery`]: the engine that claims, sends and records deliveries.
//! - [`db`]: one function per SQL statement in `sql/`.
//! - [`domain`]: parsed values and pure rules (retry schedule, addresses, event types).
//! - [`embedded_postgres`]: the default database the binary runs itself.
//! - [`maintenance`]: retention and partition upkeep.
//! - [`publish`]: fan-out of one event to every subscription that wants it.
//! - [`subscription_cache`], [`redis_cache`]: subscriptions read without the database.
//! - [`http_server`]: the HTTP server and its limits; [`metrics`]: what Prometheus scrapes.
//! - [`healthcheck`]: the `webhookd healthcheck` probe for container health checks.
//! - [`secrets`]: secrets never printed, encrypted at rest, sealed in Redis.
//! - [`ui`]: the operator dashboard (`/ui`) and the subscriber portal (`/portal`).
//! - [`supervision`]: a panic in a task the instance cannot work without stops it.

mod api;
pub mod config;
pub mod db;
pub mod delivery;
mod domain;
pub mod embedded_postgres;
mod error;
pub mod healthcheck;
pub mod http_server;
pub mod maintenance;
mod metrics;
mod publish;
mod redis_cache;
pub mod secrets;
pub mod startup;
mod supervision;
mod subscription_cache;
pub mod telemetry;
mod ui;
