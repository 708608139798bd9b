//! Cross-instance wake-ups over LISTEN/NOTIFY.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::WORK_CHANNEL;
use crate::db::{self, deliveries};
use crate::domain::SubscriptionId;
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
    initial: Option<Subscribed>,
    wake: Arc<Notify>,
    cache: SubscriptionCache,
    shutdown: CancellationToken,
) {
    let mut initial = initial;
    let mut after_loss = false;
    while !shutdown.is_cancelled() {
        let Some(mut subscribed) = connect(&pool, deadline, initial.take(), after_loss, &shutdown).await else {
            return;
        };
        cache.evict_all_local();
        wake.notify_one();
        match relay(&mut subscribed.listener, deadline, &wake, &cache, &shutdown).await {
            Ending::Shutdown => return subscribed.close().await,
            Ending::Lost => {}
            Ending::Failed => backoff(1, &shutdown).await,
        }
        after_loss = true;
    }
    // Stopped before the first LISTEN was used: it ends its session as the others do.
    if let Some(subscribed) = initial {
        subscribed.close().await;
    }
}

/// Why [`relay`] stopped.
enum Ending {
    Shutdown,
    /// The connection was lost or went silent: LISTEN again at once.
    Lost,
    /// Reading failed: LISTEN again after a pause.
    Failed,
}

/// `initial`, or a new LISTEN, retried with a growing pause until it succeeds; `None` at
/// shutdown. `after_loss`: a LISTEN was lost before (and that was logged), so a first
/// failure here is not logged again, and success is.
async fn connect(
    pool: &PgPool,
    deadline: Duration,
    initial: Option<Subscribed>,
    after_loss: bool,
    shutdown: &CancellationToken,
) -> Option<Subscribed> {
    if initial.is_some() {
        return initial;
    }
    let mut failures = u32::from(after_loss);
    loop {
        // Bounded, and given up at shutdown: the database may be the silent one.
        let subscribed = tokio::select! {
            _ = shutdown.cancelled() => return None,
            subscribed = db::bounded(deadline, subscribe(pool)) => subscribed,
        };
        match subscribed {
            Ok(listener) => {
                if failures > 0 {
                    tracing::info!("LISTEN re-established");
                }
                return Some(listener);
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%error, "cannot LISTEN for work; retrying");
                }
                backoff(failures, shutdown).await;
                if shutdown.is_cancelled() {
                    return None;
                }
            }
        }
    }
}

/// Passes notifications on (work wakes the claim loop, a changed subscription leaves the
/// cache) until the connection is lost, goes silent, or the instance shuts down.
async fn relay(
    listener: &mut PgListener,
    deadline: Duration,
    wake: &Notify,
    cache: &SubscriptionCache,
    shutdown: &CancellationToken,
) -> Ending {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ending::Shutdown,
            // Each notification restarts the wait (the select is built anew).
            () = tokio::time::sleep(deadline) => {
                let alive = tokio::select! {
                    _ = shutdown.cancelled() => return Ending::Shutdown,
                    alive = answers_within(listener, deadline) => alive,
                };
                if !alive {
                    return Ending::Lost;
                }
            }
            // Cancel-safe: with reconnects left to `listen` (see `subscribe`), it only
            // reads, and takes a message off the socket only once whole.
            received = listener.try_recv() => match received {
                Ok(Some(notification)) if notification.channel() == SUBSCRIPTIONS_CHANNEL => {
                    match parse_change(notification.payload()) {
                        Some((id, version)) => cache.evict_local(id, version).await,
                        None => cache.evict_all_local(),
                    }
                }
                Ok(Some(_)) => wake.notify_one(),
                // The connection was lost: LISTEN again on a new one, in `listen`, where no
                // other branch can cancel it halfway.
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    return Ending::Lost;
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN failed; reconnecting");
                    return Ending::Failed;
                }
            },
        }
    }
}

/// A changed subscription's notification: `<id> <version>`, or `<id>` alone (as webhookd
/// sent it before versions, during a rolling upgrade).
fn parse_change(payload: &str) -> Option<(SubscriptionId, Option<i64>)> {
    let mut parts = payload.split(' ');
    let id = parts.next()?.parse().ok()?;
    let version = match parts.next() {
        Some(version) => Some(version.parse().ok()?),
        None => None,
    };
    Some((id, version))
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
pub async fn subscribe(pool: &PgPool) -> sqlx::Result<Subscribed> {
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
    Ok(Subscribed { listener, own })
}

/// A connection LISTENing on both channels, and the pool of one it came from.
pub struct Subscribed {
    listener: PgListener,
    own: PgPool,
}

impl Subscribed {
    /// Ends the session with a goodbye to the server, at shutdown (`db::close`).
    async fn close(self) {
        // Dropping the listener sends UNLISTEN and gives the connection back to its pool,
        // which closing then ends properly.
        drop(self.listener);
        db::close(&self.own).await;
    }
}

/// Sends one NOTIFY per burst of local wake-ups, at most every [`NOTIFY_INTERVAL`]; one
/// without an answer within `deadline` is given up (a silent database must not stop the
/// NOTIFYs that follow it).
pub async fn notify_others(pool: PgPool, deadline: Duration, wanted: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wanted.notified() => {}
        }
        let sent = db::bounded(deadline, deliveries::notify_work(&pool)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_the_subscription_and_its_version_if_the_writer_sent_one() {
        let id = SubscriptionId::new();
        assert_eq!(parse_change(&format!("{id} 1764676800123456")), Some((id, Some(1_764_676_800_123_456))));
        assert_eq!(parse_change(&id.to_string()), Some((id, None)), "as sent before versions");
        assert_eq!(parse_change(&format!("{id} soon")), None);
        assert_eq!(parse_change("not an id"), None);
    }
}
