//! Integration tests: the real service against a real PostgreSQL and real HTTP receivers.
//! One test binary (faster builds); each module covers one part of the service.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly: the panic and its message are the report")]

mod auth;
mod backlog;
mod bad_receivers;
mod cache;
mod claim_isolation;
mod delivery;
mod endpoint_health;
mod fuzz;
mod helpers;
mod ingest;
mod metrics;
mod openapi;
mod process;
mod recovery;
mod reliability;
mod retention;
mod routing;
mod secrets;
mod server_limits;
mod subscriptions;
mod tls;
mod trust;
mod ui;
