//! The optional second cache level: subscriptions shared across instances in Redis
//! (`REDIS_URL`). It only ever saves database reads: every failure or slow answer falls
//! back to PostgreSQL, and an outage is logged once, not per request.
//!
//! Entries hold the whole subscription row, secrets included, sealed ([`CacheSeal`]): Redis
//! sees only ciphertext, and an entry modified, forged or moved in Redis does not open and
//! is ignored (the subscription is read from PostgreSQL). Still use a Redis with a password,
//! over TLS (`rediss://`) unless the network is private: `rediss://` verifies the server
//! against the system's CA certificates, or the bundle named by `SSL_CERT_FILE`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

use crate::db::subscriptions::SubscriptionRow;
use crate::domain::SubscriptionId;
use crate::secrets::CacheSeal;
use time::OffsetDateTime;

/// After a failure, Redis is skipped this long so an outage costs no time per request.
const BACKOFF: Duration = Duration::from_secs(2);

pub struct RedisCache {
    client: redis::Client,
    seal: CacheSeal,
    connection: OnceCell<ConnectionManager>,
    timeout: Duration,
    ttl: Duration,
    down: AtomicBool,
    skip_until: Mutex<Option<Instant>>,
}

/// Now, in milliseconds since the Unix epoch (how entries carry their expiry).
fn unix_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn key(id: SubscriptionId) -> String {
    format!("webhookd:subscription:{id}")
}

impl RedisCache {
    /// Checks the URL; connects lazily on first use.
    pub fn new(url: &str, timeout: Duration, ttl: Duration, seal: CacheSeal) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            seal,
            connection: OnceCell::new(),
            timeout,
            ttl,
            down: AtomicBool::new(false),
            skip_until: Mutex::new(None),
        })
    }

    /// The cached subscription, or `None` on a miss, an error, a timeout, or an entry that
    /// does not open (modified or forged: logged, and read from PostgreSQL instead).
    pub async fn get(&self, id: SubscriptionId) -> Option<SubscriptionRow> {
        let name = key(id);
        let lookup = name.clone();
        let sealed: Vec<u8> = self.call(|mut c| async move { c.get::<_, Option<Vec<u8>>>(lookup).await }).await.flatten()?;
        let Some(text) = self.seal.open(&name, &sealed) else {
            tracing::warn!(subscription.id = %id, "ignored a shared cache entry that does not authenticate");
            return None;
        };
        // The entry carries its own expiry, sealed with it: an old entry written back into
        // Redis (after the subscription changed) is not trusted beyond its time to live.
        let (expires, row) = text.split_at_checked(8)?;
        let expires = i64::from_be_bytes(expires.try_into().ok()?);
        if unix_millis() > expires {
            return None;
        }
        serde_json::from_slice(row).ok().filter(|row: &SubscriptionRow| row.id == id)
    }

    /// Stores a subscription loaded from PostgreSQL (secrets as stored), sealed.
    pub async fn put(&self, row: &SubscriptionRow) {
        let Ok(text) = serde_json::to_vec(row) else { return };
        let (name, ttl) = (key(row.id), self.ttl.as_secs().max(1));
        let expires = unix_millis() + self.ttl.as_millis() as i64;
        let sealed = self.seal.seal(&name, &[expires.to_be_bytes().as_slice(), &text].concat());
        let _: Option<()> = self.call(|mut c| async move { c.set_ex(name, sealed, ttl).await }).await;
    }

    /// Removes a subscription after a write.
    pub async fn delete(&self, id: SubscriptionId) {
        let _: Option<usize> = self.call(|mut c| async move { c.del(key(id)).await }).await;
    }

    /// Runs one command within the timeout; `None` if Redis is down, slow or in back-off.
    async fn call<T, F, Fut>(&self, command: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.skip_until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let attempt = async {
            let connection = self.connection.get_or_try_init(|| self.connect()).await?.clone();
            command(connection).await
        };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        match outcome {
            Ok(value) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis is reachable again; using the shared subscription cache");
                }
                Some(value)
            }
            Err(error) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis unavailable; reading subscriptions from PostgreSQL until it is back");
                }
                *self.skip_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + BACKOFF);
                None
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }
}
