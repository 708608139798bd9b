//! Building and running the service: the HTTP server, the delivery engine and background
//! upkeep, all stopped by one cancellation token.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::Server;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiContext, GroupCommit};
use crate::config::{Secret, Settings};
use crate::db;
use crate::delivery::{self, DeliveryContext, Engine, Waker};
use crate::maintenance;
use crate::redis_cache::RedisCache;
use crate::subscription_cache::SubscriptionCache;

/// How soon maintenance runs after start-up, and tries again after a failure.
const MAINTENANCE_RETRY: Duration = Duration::from_secs(10);

/// A built service, bound to its port, not yet running.
pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    context: ApiContext,
    admin_token: Secret,
    /// LISTEN established before serving, so no change notification can be missed between
    /// the first cached read and the listener starting (`None` if the database was down).
    listener: Option<PgListener>,
}

impl Application {
    /// Prepares the database (migrations if enabled, attempt partitions) and binds the
    /// listener (port 0 picks a free one: see [`Application::port`]).
    pub async fn build(settings: Settings, pool: PgPool, admin_token: Secret) -> anyhow::Result<Self> {
        if settings.auto_migrate {
            db::migrate(&pool).await.context("cannot apply database migrations")?;
        }
        // Without migrations to apply, start even while the database is down: the API answers
        // 503 until it is back, and upkeep creates the partitions then.
        if let Err(error) = db::partitions::ensure_partitions(&pool, OffsetDateTime::now_utc()).await {
            tracing::error!(%error, "cannot create attempt partitions yet; retrying in the background");
        }
        let acceptor = TcpListener::bind(settings.listen)
            .into_acceptor()
            .await
            .with_context(|| format!("cannot listen on {} (WEBHOOKD_LISTEN)", settings.listen))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().map(|a| a.port()))
            .context("listener has no address")?;
        let shared = match &settings.redis_url {
            Some(url) => Some(Arc::new(
                RedisCache::new(url.expose(), settings.redis_timeout, settings.subscription_cache_ttl)
                    .context("invalid REDIS_URL")?,
            )),
            None => None,
        };
        let subscriptions = SubscriptionCache::new(
            pool.clone(),
            settings.subscription_cache_capacity,
            settings.subscription_cache_ttl,
            shared,
        );
        let listener = match tokio::time::timeout(Duration::from_secs(5), delivery::subscribe(&pool)).await {
            Ok(Ok(listener)) => Some(listener),
            _ => None,
        };
        let group_commit = GroupCommit::start(pool.clone());
        let context = ApiContext { pool, settings: Arc::new(settings), subscriptions, waker: Waker::new(), group_commit };
        Ok(Self { acceptor, port, context, admin_token, listener })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves the API and delivers webhooks until `shutdown` is cancelled, then stops
    /// accepting requests, lets in-flight deliveries finish within the grace period
    /// (releasing the rest), and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let settings = self.context.settings.clone();
        let client = delivery::build_client(settings.delivery.timeout, settings.allow_private_targets)?;
        let engine = Engine::start(
            DeliveryContext {
                pool: self.context.pool.clone(),
                client,
                subscriptions: self.context.subscriptions.clone(),
                settings: settings.delivery.clone(),
                allow_private_targets: settings.allow_private_targets,
            },
            self.listener,
            &self.context.waker,
            shutdown.clone(),
        );
        let upkeep = tokio::spawn(maintain(
            self.context.pool.clone(),
            settings.retention,
            settings.maintenance_interval,
            shutdown.clone(),
        ));
        tracing::info!(port = self.port, "webhookd listening");

        let routes = api::routes(self.context, self.admin_token);
        let server = Server::new_with_acceptor(self.acceptor).run_with_graceful_shutdown(
            routes,
            shutdown.clone().cancelled_owned(),
            Some(Duration::from_secs(5)),
        );
        let engine_stopped = async {
            shutdown.cancelled().await;
            engine.stop(settings.shutdown_grace).await;
        };
        let (served, ()) = tokio::join!(server, engine_stopped);
        let _ = upkeep.await;
        served.context("HTTP server failed")
    }
}

/// Runs a maintenance pass every `interval` (the first soon after start-up); only one
/// instance at a time does the work. A failed pass is logged and retried sooner.
async fn maintain(pool: PgPool, retention: Duration, interval: Duration, shutdown: CancellationToken) {
    let mut wait = MAINTENANCE_RETRY.min(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match maintenance::run_once(&pool, OffsetDateTime::now_utc(), retention).await {
            Ok(report) => {
                if !report.skipped {
                    tracing::info!(
                        created = ?report.created_partitions,
                        dropped = ?report.dropped_partitions,
                        deleted_deliveries = report.deleted_deliveries,
                        expired_parked = report.expired_parked_deliveries,
                        "maintenance pass done"
                    );
                }
                interval
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "maintenance pass failed; retrying soon");
                MAINTENANCE_RETRY.min(interval)
            }
        };
    }
}

/// The admin token: `WEBHOOKD_ADMIN_TOKEN` if set; otherwise the one kept in the data
/// directory, generated (and printed once) on first start.
pub fn resolve_admin_token(configured: Option<&Secret>, data_dir: &Path) -> anyhow::Result<Secret> {
    if let Some(token) = configured {
        return Ok(token.clone());
    }
    let path = data_dir.join("admin_token");
    if let Ok(existing) = fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            tracing::info!(path = %path.display(), "using the admin token kept in the data directory");
            return Ok(Secret::new(existing));
        }
    }
    fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let token = format!("whk_{}", crate::embedded_postgres::random_hex(24));
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{token}")?;
    // Printed this once so the operator can copy it; it is in the file from now on.
    tracing::warn!(path = %path.display(), "generated an admin token (shown only now): {token}");
    Ok(Secret::new(token))
}
