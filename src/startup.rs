//! Building and running the service: the HTTP server, the delivery engine and background
//! upkeep, all stopped by one cancellation token.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiContext, GroupCommit};
use crate::config::{AdminTokenPolicy, Secret, Settings};
use crate::db::{self, subscriptions::StoredSecrets};
use crate::domain::SubscriptionId;
use crate::delivery::{self, DeliveryContext, Engine, Waker};
use crate::http_server::{self, ServerLimits};
use crate::maintenance;
use crate::metrics::Metrics;
use crate::secrets::{self, CacheSeal, Keyring, OpenError, SecretValue};
use crate::redis_cache::RedisCache;
use crate::subscription_cache::SubscriptionCache;
use crate::supervision::{spawn_essential, Alarm};
use crate::ui::portal_link::PortalLinks;

/// How soon maintenance runs after start-up, and tries again after a failure.
const MAINTENANCE_RETRY: Duration = Duration::from_secs(10);

/// A built service, bound to its port, not yet running.
pub struct Application {
    listener: tokio::net::TcpListener,
    port: u16,
    context: ApiContext,
    admin_token: Secret,
    /// LISTEN established before serving, so no change notification can be missed between
    /// the first cached read and the listener starting (`None` if the database was down).
    changes: Option<delivery::Subscribed>,
    /// Made before any database session is opened: its failure leaves none to close.
    client: reqwest::Client,
    /// Bumped by the delivery engine at each write to deliveries (see [`Application::progress`]).
    progress: watch::Sender<u64>,
    /// Raised by a panic in a task the instance cannot work without: it then stops.
    alarm: Alarm,
}

impl Application {
    /// Prepares the database (migrations if enabled, attempt partitions) and binds the
    /// listener (port 0 picks a free one: see [`Application::port`]).
    pub async fn build(settings: Settings, pool: PgPool, admin_token: Secret) -> anyhow::Result<Self> {
        if settings.database.auto_migrate {
            db::migrate(&pool).await.context("cannot apply database migrations")?;
        }
        // Without migrations to apply, start even while the database is down: the API answers
        // 503 until it is back, and upkeep creates the partitions then.
        if let Err(error) = db::partitions::ensure_partitions(&pool, OffsetDateTime::now_utc()).await {
            tracing::error!(%error, "cannot create attempt partitions yet; retrying in the background");
        }
        warn_if_a_stop_can_cut_sends_off(&settings);
        let client = delivery::build_client(settings.delivery.timeout, settings.delivery.allow_private_targets)?;
        let listener = http_server::bind(settings.http.listen)
            .with_context(|| format!("cannot listen on {} (WEBHOOKD_LISTEN)", settings.http.listen))?;
        let port = listener.local_addr().context("listener has no address")?.port();
        let keyring = keyring(&settings)?.map(Arc::new);
        check_secrets_at_rest(&pool, keyring.as_deref()).await?;
        let shared = match &settings.cache.redis_url {
            Some(url) => {
                // Every instance sharing the cache shares the encryption key, or else the admin token.
                let material = settings.database.encryption_key.as_ref().unwrap_or(&admin_token).expose().as_bytes();
                let seal = CacheSeal::derive(material);
                Some(Arc::new(
                    RedisCache::new(url.expose(), settings.cache.redis_timeout, settings.cache.ttl, seal)
                        .context("invalid REDIS_URL")?,
                ))
            }
            None => None,
        };
        let subscriptions = SubscriptionCache::new(
            pool.clone(),
            settings.database.statement_deadline,
            settings.cache.capacity,
            settings.cache.ttl,
            shared,
            keyring.clone(),
        );
        let changes = match tokio::time::timeout(Duration::from_secs(5), delivery::subscribe(&pool)).await {
            Ok(Ok(changes)) => Some(changes),
            _ => None,
        };
        let writers = db::connect_writers(&pool, settings.database.statement_deadline);
        let alarm = Alarm::default();
        let group_commit = GroupCommit::start(writers.clone(), settings.database.statement_deadline, &alarm);
        let metrics = Metrics::new();
        let portal_links = Arc::new(PortalLinks::new(pool.clone(), admin_token.clone()));
        let context = ApiContext {
            pool,
            writers,
            settings: Arc::new(settings),
            subscriptions,
            waker: Waker::new(),
            group_commit,
            metrics,
            keyring,
            portal_links,
        };
        Ok(Self { listener, port, context, admin_token, changes, client, progress: watch::Sender::new(0), alarm })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes each time the delivery engine commits a write to deliveries (an attempt's
    /// outcome, a release, a recovery batch): wait on it to see the queue move.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Serves the API and delivers webhooks until `shutdown` is cancelled, then stops
    /// accepting requests, lets in-flight deliveries finish within the grace period
    /// (releasing the rest), and returns. A panic in a task the instance cannot work
    /// without (crate::supervision) stops it the same way, and it returns that error.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let settings = self.context.settings.clone();
        let alarm = self.alarm;
        let stop_at_alarm = {
            let (alarm, shutdown) = (alarm.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = alarm.raised() => shutdown.cancel(),
                    _ = shutdown.cancelled() => {}
                }
            })
        };
        let engine = Engine::start(
            DeliveryContext {
                pool: self.context.pool.clone(),
                writers: self.context.writers.clone(),
                client: self.client,
                subscriptions: self.context.subscriptions.clone(),
                settings: settings.delivery.clone(),
                statement_deadline: settings.database.statement_deadline,
                allow_private_targets: settings.delivery.allow_private_targets,
                metrics: self.context.metrics.clone(),
                waker: self.context.waker.clone(),
                progress: self.progress.clone(),
            },
            self.changes,
            &self.context.waker,
            shutdown.clone(),
            &alarm,
        );
        if let Some(handoff) = engine.handoff() {
            self.context.group_commit.hand_off_to(handoff);
        }
        let upkeep = spawn_essential(
            "maintenance",
            &alarm,
            maintain(
                self.context.pool.clone(),
                settings.retention.period,
                settings.retention.maintenance_interval,
                settings.database.statement_deadline,
                shutdown.clone(),
            ),
        );
        tracing::info!(port = self.port, "webhookd listening");

        let limits = ServerLimits {
            header_timeout: settings.http.header_timeout,
            body_timeout: settings.http.body_timeout,
            max_connections: max_connections(&settings),
        };
        let metrics = self.context.metrics.clone();
        let writers = self.context.writers.clone();
        let routes = api::routes(self.context, self.admin_token);
        let server = http_server::serve(self.listener, routes, limits, metrics, shutdown.clone());
        let engine_stopped = async {
            shutdown.cancelled().await;
            engine.stop(settings.delivery.shutdown_grace).await;
        };
        tokio::join!(server, engine_stopped);
        let _ = upkeep.await;
        let _ = stop_at_alarm.await;
        // The pool it was given is its caller's to close; this one it made.
        db::close(&writers).await;
        match alarm.task() {
            Some(task) => bail!("stopped: its {task} task panicked (logged above)"),
            None => Ok(()),
        }
    }
}

/// Checks the stored secrets against the encryption settings before anything signs with
/// them: a secret sealed while no key is set, or sealed with a key this instance does not
/// have, refuses the start (it would sign with garbage). A single value that does not
/// decrypt with its own key is logged and left: that subscription alone fails (its
/// deliveries end `secret_unreadable`, `delivery::worker`). Skipped,
/// with a warning, while the database is unreachable (the service starts and answers 503).
async fn check_secrets_at_rest(pool: &PgPool, keyring: Option<&Keyring>) -> anyhow::Result<()> {
    let stored = match db::subscriptions::list_stored_secrets(pool).await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(%error, "cannot check the stored secrets against WEBHOOKD_ENCRYPTION_KEY yet");
            return Ok(());
        }
    };
    for row in &stored {
        for value in [&row.secret_key, &row.previous_secret_key].into_iter().flatten() {
            match secrets::reveal(row.id, value.expose(), keyring) {
                Ok(_) => {}
                Err(error @ (OpenError::NoKey | OpenError::UnknownKey(_))) => {
                    bail!("{error}: start with the key that encrypted the stored secrets (docs/deployment.md: encryption at rest)")
                }
                Err(error) => tracing::error!(subscription.id = %row.id, %error, "a stored secret does not decrypt"),
            }
        }
    }
    Ok(())
}

/// What `webhookd encrypt-secrets` did.
#[derive(Debug, Default)]
pub struct Resealed {
    /// Subscriptions whose secrets it wrote again, encrypted with the current key.
    pub rewritten: usize,
    /// Subscriptions whose previous secret did not decrypt and was dropped: it could
    /// verify and sign nothing (the cache and a rotation set such a secret aside too).
    pub dropped_previous: Vec<SubscriptionId>,
    /// Deleted subscriptions whose current secret did not decrypt and was dropped: they
    /// sign nothing any more, and a new secret cannot be set on them.
    pub dropped_of_deleted: Vec<SubscriptionId>,
    /// Subscriptions whose current secret does not decrypt, left as they are: they fail
    /// until a new secret is set, and until then a value sealed with the previous key
    /// stays stored, so that key must stay configured.
    pub unreadable: Vec<SubscriptionId>,
}

/// Passes over the stored secrets, each over the rows the previous one found changed under
/// it: a rotation on a running instance meanwhile moves the current secret, maybe still
/// sealed with the old key, to the previous one.
const RESEAL_PASSES: usize = 5;

/// `webhookd encrypt-secrets`: encrypts every stored secret that is in plaintext, or sealed
/// with the previous key, with the current key. Run it once every instance has the key.
/// A secret corrupt at rest does not stop it: the others are still sealed, and the report
/// names the subscriptions to look at. A value sealed with a key it was not given stops it
/// at once: it was run without the key being rotated out as the previous key.
pub async fn encrypt_stored_secrets(pool: &PgPool, keyring: &Keyring) -> anyhow::Result<Resealed> {
    let mut report = Resealed::default();
    // `None`: every row.
    let mut to_look_at: Option<HashSet<SubscriptionId>> = None;
    for _ in 0..RESEAL_PASSES {
        let mut changed = HashSet::new();
        for row in db::subscriptions::list_stored_secrets(pool).await? {
            if to_look_at.as_ref().is_some_and(|ids| !ids.contains(&row.id)) {
                continue;
            }
            match reseal_row(pool, keyring, &row).await? {
                Resealing::NotNeeded => {}
                Resealing::Unreadable => report.unreadable.push(row.id),
                Resealing::Changed => {
                    changed.insert(row.id);
                }
                Resealing::Rewritten { dropped_current, dropped_previous } => {
                    report.rewritten += 1;
                    if dropped_current {
                        report.dropped_of_deleted.push(row.id);
                    } else if dropped_previous {
                        report.dropped_previous.push(row.id);
                    }
                }
            }
        }
        if changed.is_empty() {
            return Ok(report);
        }
        to_look_at = Some(changed);
    }
    bail!("some subscriptions' secrets kept changing while being sealed again (rotations under way?): run encrypt-secrets again")
}

/// What became of one subscription's stored secrets.
enum Resealing {
    /// Both already sealed with the current key.
    NotNeeded,
    /// Sealed again; what did not decrypt was dropped.
    Rewritten { dropped_current: bool, dropped_previous: bool },
    /// Its current secret does not decrypt: left as it is.
    Unreadable,
    /// Changed since it was read: to be read again.
    Changed,
}

async fn reseal_row(pool: &PgPool, keyring: &Keyring, row: &StoredSecrets) -> anyhow::Result<Resealing> {
    let kept = [&row.secret_key, &row.previous_secret_key].map(|v| v.as_ref().map(SecretValue::expose));
    if !kept.into_iter().flatten().any(|v| keyring.needs_sealing(v)) {
        return Ok(Resealing::NotNeeded);
    }
    let [current, previous] = kept.map(|value| value.map(|value| reseal(keyring, row.id, value)).transpose());
    let (current, previous) = (current?, previous?);
    // `Some(None)`: stored, but corrupt.
    let dropped_current = current.as_ref().is_some_and(Option::is_none);
    let dropped_previous = previous.as_ref().is_some_and(Option::is_none);
    if dropped_current && !row.deleted {
        tracing::error!(subscription.id = %row.id, "its current secret does not decrypt; left as it is until a new secret is set");
        return Ok(Resealing::Unreadable);
    }
    let sealed = [current.flatten(), previous.flatten()];
    if !db::subscriptions::reseal_secrets(pool, row, [sealed[0].as_deref(), sealed[1].as_deref()]).await? {
        return Ok(Resealing::Changed);
    }
    if dropped_current || dropped_previous {
        tracing::warn!(subscription.id = %row.id, dropped_current, dropped_previous, "a stored secret does not decrypt; dropped");
    }
    Ok(Resealing::Rewritten { dropped_current, dropped_previous })
}

/// `value` of subscription `owner` sealed with the current key; `None` if it is corrupt.
fn reseal(keyring: &Keyring, owner: SubscriptionId, value: &str) -> anyhow::Result<Option<String>> {
    match secrets::reveal(owner, value, Some(keyring)) {
        Ok(plain) => Ok(Some(keyring.seal(owner, &plain))),
        Err(OpenError::Corrupt) => Ok(None),
        Err(error) => Err(error).with_context(|| format!("subscription {owner}: give the key that sealed it as WEBHOOKD_PREVIOUS_ENCRYPTION_KEY")),
    }
}

/// The keyring configured by `settings`, if any.
pub fn keyring(settings: &Settings) -> anyhow::Result<Option<Keyring>> {
    let Some(key) = &settings.database.encryption_key else { return Ok(None) };
    let previous = settings.database.previous_encryption_key.as_ref().map(Secret::expose);
    Keyring::new(key.expose(), previous).map(Some).map_err(anyhow::Error::msg)
}

/// A stop lets sends under way run for the grace period, then releases those still waiting
/// for their receiver without logging their attempt (whether the receiver got the request
/// is unknown). With a grace at least the delivery timeout, every send ends on its own
/// first, answered or timed out, and is logged. A shorter grace is allowed (a fast stop),
/// but said.
fn warn_if_a_stop_can_cut_sends_off(settings: &Settings) {
    let (grace, timeout) = (settings.delivery.shutdown_grace, settings.delivery.timeout);
    if settings.delivery.concurrency > 0 && grace < timeout {
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            timeout_s = timeout.as_secs_f64(),
            "WEBHOOKD_SHUTDOWN_GRACE is shorter than WEBHOOKD_DELIVERY_TIMEOUT: at a stop, a send still waiting for its receiver after the grace is released without its attempt logged"
        );
    }
}

/// The connection cap: as configured, or one that leaves file descriptors for outbound
/// deliveries, the database pool and the process's own files. The open-files limit is
/// raised either way, and a configured cap it cannot hold is reported.
fn max_connections(settings: &Settings) -> usize {
    let open_files = http_server::raise_open_files_limit();
    let reserved = settings.delivery.concurrency as usize + settings.database.pool_size as usize + 64;
    match settings.http.max_connections {
        None => http_server::default_max_connections(open_files, reserved),
        Some(cap) => {
            if cap as u64 + reserved as u64 > open_files {
                tracing::warn!(cap, open_files, "WEBHOOKD_MAX_CONNECTIONS and the delivery connections may exceed the open-files limit");
            }
            cap as usize
        }
    }
}

/// Runs a maintenance pass every `interval` (the first soon after start-up); only one
/// instance at a time does the work. A failed pass is logged and retried sooner.
async fn maintain(pool: PgPool, retention: Duration, interval: Duration, deadline: Duration, shutdown: CancellationToken) {
    let mut wait = MAINTENANCE_RETRY.min(interval);
    let mut events_checked_until = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match maintenance::run_once_after(&pool, OffsetDateTime::now_utc(), retention, deadline, events_checked_until).await {
            Ok(report) => {
                if !report.skipped {
                    events_checked_until = report.events_checked_until.or(events_checked_until);
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
/// directory, generated (and printed once) on first start if `policy` allows it here.
pub fn resolve_admin_token(configured: Option<&Secret>, data_dir: &Path, policy: AdminTokenPolicy) -> anyhow::Result<Secret> {
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
    if policy == AdminTokenPolicy::RequireOrVolume && !is_mount_point(data_dir) {
        bail!(
            "set WEBHOOKD_ADMIN_TOKEN (e.g. `openssl rand -hex 24`): without it a token would be generated into {}, \
             which is not a mounted volume, so every restart would mint a new one",
            data_dir.display()
        );
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

/// Whether `directory` is the root of a mounted file system (a volume), judged the way
/// `mountpoint(1)` does: it lies on another device than its parent.
fn is_mount_point(directory: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(directory) = directory.canonicalize() else { return false };
    let Some(parent) = directory.parent() else { return true };
    match (fs::metadata(&directory), fs::metadata(parent)) {
        (Ok(inner), Ok(outer)) => inner.dev() != outer.dev(),
        _ => false,
    }
}
