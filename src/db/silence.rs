//! Telling silent connections from live ones. sqlx sets no TCP keepalive, so a database
//! that vanishes without closing its sockets (a failover, a dropped NAT mapping) leaves
//! connections that never answer. The service notices when a statement goes unanswered
//! past its deadline ([`super::before_deadline`]: the engine's statements, the claim
//! loop, the LISTEN connection's check and re-subscribe, API requests, maintenance). From
//! then on, a connection that was idle in the pool since before that moment is dropped,
//! unasked, when it is next taken: each would otherwise cost a request a hung check until
//! the pool's acquire timeout, one connection at a time, and an instance could take a
//! minute to get through the silent connections of a full pool after a failover. Other
//! idle connections are checked with a ping that must answer within [`PING_LIMIT`].
//!
//! A connection given back to the pool soon after a silence was found
//! ([`check_released`]) is pinged with the same limit before the pool's own check: that
//! check (sqlx's, on every release) has no limit of its own, and on a silent connection it
//! would hold the connection's place in the pool until the kernel gives up on the socket
//! (about 15 minutes of retransmits). Such releases are those of API requests given up at
//! their deadline (`api::deadline`), whose handlers are dropped mid-statement.
//!
//! A database that is alive but slow past a deadline (a lock wait, a synchronous standby
//! that stops confirming) is treated the same way: the idle connections are closed and
//! new ones opened, which costs each a connection set-up and nothing else.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnectionMetadata;
use sqlx::{Connection, PgConnection};

/// Longest a pooled connection's check may take: an idle backend answers a ping at once,
/// so a second means the connection is silent, or the machine far too busy to matter.
const PING_LIMIT: Duration = Duration::from_secs(1);

/// How long after a silence was found released connections are pinged before sqlx's
/// check: the releases it is for follow the finding at once (`api::deadline` records the
/// silence, then drops the request), so this only has to cover scheduling delays.
const RELEASE_CHECK_WINDOW: Duration = Duration::from_secs(10);

/// When a connection was last found silent, in milliseconds since [`epoch`], plus one
/// (0: never).
static FOUND_SILENT_AT: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// A connection went unanswered past its deadline: every connection idle since before now
/// is as likely to be silent.
pub fn found_silent() {
    FOUND_SILENT_AT.fetch_max(now_ms(), Ordering::Relaxed);
}

/// Whether a connection idle for `idle_for` was already idle when a connection was last
/// found silent.
pub(super) fn idle_since_found_silent(idle_for: Duration) -> bool {
    let found_at = FOUND_SILENT_AT.load(Ordering::Relaxed);
    let idle_since = now_ms().saturating_sub(u64::try_from(idle_for.as_millis()).unwrap_or(u64::MAX));
    found_at > 0 && idle_since <= found_at
}

/// Whether a connection was found silent within the last `window`.
fn found_within(window: Duration) -> bool {
    let found_at = FOUND_SILENT_AT.load(Ordering::Relaxed);
    found_at > 0 && now_ms().saturating_sub(found_at) <= u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// The pool's check of an idle connection before handing it out (`before_acquire`):
/// `Ok(false)` closes it and an error drops it; either way the pool opens a new one.
pub fn check_idle(connection: &mut PgConnection, metadata: PoolConnectionMetadata) -> Pin<Box<dyn Future<Output = sqlx::Result<bool>> + Send + '_>> {
    Box::pin(async move {
        if idle_since_found_silent(metadata.idle_for) {
            tracing::info!(idle_ms = metadata.idle_for.as_millis() as u64, "dropping a pooled connection left idle since a connection was found silent");
            return Ok(false);
        }
        answers_ping(connection, "an idle connection").await.map(|()| true)
    })
}

/// The pool's check of a connection given back (`after_release`), before sqlx's own ping:
/// nothing unless a silence was found lately, else a ping within [`PING_LIMIT`]. An error
/// makes the pool drop the connection without a word to the server (its own ping and
/// close would wait on the silent socket).
pub fn check_released(connection: &mut PgConnection, _: PoolConnectionMetadata) -> Pin<Box<dyn Future<Output = sqlx::Result<bool>> + Send + '_>> {
    Box::pin(async move {
        if !found_within(RELEASE_CHECK_WINDOW) {
            return Ok(true);
        }
        answers_ping(connection, "a connection given back to the pool").await.map(|()| true)
    })
}

/// The check of a connection a loop kept (`db::HeldConnection`) and is about to use again
/// after a pause: a ping within [`PING_LIMIT`], as the pool checks those it hands out.
pub(super) async fn check_held(connection: &mut PgConnection) -> sqlx::Result<()> {
    answers_ping(connection, "a connection kept between statements").await
}

/// A ping answered within [`PING_LIMIT`]; no answer marks the silence. The ping first
/// waits for anything still owed on the connection (a statement given up mid-way).
async fn answers_ping(connection: &mut PgConnection, which: &str) -> sqlx::Result<()> {
    match tokio::time::timeout(PING_LIMIT, connection.ping()).await {
        Ok(answered) => answered,
        Err(_) => {
            found_silent();
            let message = format!("{which} did not answer a ping within {PING_LIMIT:?}");
            Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn only_connections_idle_since_before_a_silence_are_dropped_unasked() {
        // One test for the process-wide mark: before any silence, nothing is dropped.
        assert!(!idle_since_found_silent(Duration::from_secs(3600)), "no silence found yet");
        assert!(!found_within(Duration::from_secs(3600)), "no silence found yet");
        std::thread::sleep(Duration::from_millis(20));
        found_silent();
        std::thread::sleep(Duration::from_millis(20));
        assert!(idle_since_found_silent(Duration::from_millis(500)), "idle since before the silence");
        assert!(!idle_since_found_silent(Duration::from_millis(5)), "taken back after it");
        assert!(found_within(Duration::from_secs(1)), "found lately");
        assert!(!found_within(Duration::from_millis(10)), "not within the last 10 ms");

        // Work given up at its deadline is dropped only once the silence is recorded: the
        // pool's check of the connections it gives back depends on that order.
        struct SeesTheMark(Arc<AtomicBool>);
        impl Drop for SeesTheMark {
            fn drop(&mut self) {
                self.0.store(found_within(Duration::from_millis(5)), Ordering::SeqCst);
            }
        }
        let saw = Arc::new(AtomicBool::new(false));
        let guard = SeesTheMark(saw.clone());
        let work = async move {
            let _held = guard;
            std::future::pending::<()>().await
        };
        assert!(crate::db::before_deadline(Duration::from_millis(50), work).await.is_none());
        assert!(saw.load(Ordering::SeqCst), "the work was dropped before the silence was recorded");
    }
}
