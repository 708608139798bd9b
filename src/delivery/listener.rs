//! Cross-instance wake-ups over LISTEN/NOTIFY.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::WORK_CHANNEL;
use crate::db::{self, deliveries};
use crate::subscription_cache::SubscriptionCache;

/// The NOTIFY channel on which writers announce a changed subscription (payload: its id).
pub const SUBSCRIPTIONS_CHANNEL: &str = "webhookd_subscriptions";

/// Least time between two NOTIFYs from this instance.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(20);

/// Listens for work (waking the local claim loop) and for changed subscriptions (evicting
/// them from the local cache). `initial` is a LISTEN made at start-up, before any request
/// was served (see [`subscribe`]). The LISTEN is re-established after a lost connection;
/// since notifications sent meanwhile are lost, every reconnect wakes the claim loop and
/// empties the local cache.
///
/// A connection can also go silent without being lost (a failover or a dropped NAT mapping
/// that leaves the socket open: sqlx sets no TCP keepalive), and a silent LISTEN hears
/// nothing for good. So after `deadline` without a notification the connection must answer
/// a query within `deadline`, or it is dropped and the LISTEN made again on a new one.
pub async fn listen(
    pool: PgPool,
    deadline: Duration,
    initial: Option<PgListener>,
    wake: Arc<Notify>,
    cache: SubscriptionCache,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut initial = initial;
    while !shutdown.is_cancelled() {
        let connected = match initial.take() {
            Some(listener) => Ok(listener),
            // Bounded, and given up at shutdown: the database may be the silent one.
            None => tokio::select! {
                _ = shutdown.cancelled() => return,
                subscribed = db::bounded(deadline, subscribe(&pool)) => subscribed,
            },
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%error, "cannot LISTEN for work; retrying");
                }
                backoff(failures, &shutdown).await;
                continue;
            }
        };
        if std::mem::take(&mut failures) > 0 {
            tracing::info!("LISTEN re-established");
        }
        cache.evict_all_local();
        wake.notify_one();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Each notification restarts the wait (the select is built anew).
                () = tokio::time::sleep(deadline) => {
                    let alive = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        alive = answers_within(&mut listener, deadline) => alive,
                    };
                    if !alive {
                        failures = 1;
                        break;
                    }
                }
                // Cancel-safe: with reconnects left to this loop (see `subscribe`), it only
                // reads, and takes a message off the socket only once whole.
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) if notification.channel() == SUBSCRIPTIONS_CHANNEL => {
                        match notification.payload().parse() {
                            Ok(id) => cache.evict_local(id).await,
                            Err(_) => cache.evict_all_local(),
                        }
                    }
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection was lost: LISTEN again on a new one, out here, where no
                    // other branch can cancel it halfway.
                    Ok(None) => {
                        tracing::warn!("LISTEN connection lost; reconnecting");
                        failures = 1;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "LISTEN failed; reconnecting");
                        failures = 1;
                        backoff(failures, &shutdown).await;
                        break;
                    }
                },
            }
        }
    }
}

/// Whether a quiet LISTEN connection still answers a query within `deadline`. One that
/// does not answer at all marks the database silent (`db::before_deadline`).
async fn answers_within(listener: &mut PgListener, deadline: Duration) -> bool {
    match db::before_deadline(deadline, sqlx::query("SELECT 1").execute(&mut *listener)).await {
        Some(Ok(_)) => true,
        Some(Err(error)) => {
            tracing::warn!(%error, "LISTEN connection failed its check; reconnecting");
            false
        }
        None => {
            let error = db::no_answer_within(deadline);
            tracing::warn!(%error, "LISTEN connection silent; listening again on a new connection");
            false
        }
    }
}

/// Opens a connection that LISTENs on both channels. The connection comes from a pool of
/// its own, made with `pool`'s settings: dropping a listener sends UNLISTEN and waits for
/// its answer before giving the connection back, so a silent one would hold its place in
/// `pool` for good; in a pool of its own it holds nothing anyone else needs.
pub async fn subscribe(pool: &PgPool) -> sqlx::Result<PgListener> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(db::ACQUIRE_TIMEOUT)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await?;
    // A lost connection ends `try_recv` with `None` instead of reconnecting inside it:
    // `listen` reconnects, where a reconnect cannot be cancelled halfway.
    listener.eager_reconnect(false);
    listener.listen_all([WORK_CHANNEL, SUBSCRIPTIONS_CHANNEL]).await?;
    Ok(listener)
}

/// Sends one NOTIFY per burst of local wake-ups, at most every [`NOTIFY_INTERVAL`].
pub async fn notify_others(pool: PgPool, wanted: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wanted.notified() => {}
        }
        let sent = deliveries::notify_work(&pool).await;
        if let Err(error) = sent {
            tracing::debug!(%error, "NOTIFY failed; other instances will find the work on their next poll");
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
    }
}

async fn backoff(failures: u32, shutdown: &CancellationToken) {
    let wait = Duration::from_millis(200 * u64::from(failures.min(10)));
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}
