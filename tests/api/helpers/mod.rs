//! The test harness, one module per kind of real part: the PostgreSQL cluster, the app
//! in-process, HTTP receivers, Redis, and the binary as a process. Tests import from here.

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
