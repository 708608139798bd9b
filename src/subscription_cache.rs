//! Subscriptions read through an in-process cache (moka), optionally backed by a cache
//! shared between instances (Redis), so the ingest and delivery paths do not read the
//! subscription row for every webhook. Every write invalidates the entry here and in Redis,
//! and NOTIFYs the other instances, which evict it too (see `delivery::listener`).

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::subscriptions::{self, SubscriptionRow};
use crate::error::ApiError;
use crate::redis_cache::RedisCache;

#[derive(Clone)]
pub struct SubscriptionCache {
    cache: Cache<Uuid, Arc<SubscriptionRow>>,
    shared: Option<Arc<RedisCache>>,
    pool: PgPool,
}

/// The result of a lookup. Deleted subscriptions are `Found` with `deleted_at` set, so
/// that workers can tell "deleted" from "never existed".
pub enum Lookup {
    Found(Arc<SubscriptionRow>),
    Missing,
}

/// The database failed while loading a subscription.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot load subscription: {}", self.cause())]
pub struct LoadError(Arc<Miss>);

impl LoadError {
    fn cause(&self) -> &sqlx::Error {
        match &*self.0 {
            Miss::Failed(error) => error,
            Miss::Absent => unreachable!("an absent subscription is not an error"),
        }
    }

}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        ApiError::from_database(error.cause())
    }
}

#[derive(Debug)]
enum Miss {
    Absent,
    Failed(sqlx::Error),
}

impl SubscriptionCache {
    /// A cache of at most `capacity` subscriptions, each kept at most `ttl`.
    pub fn new(pool: PgPool, capacity: u64, ttl: Duration, shared: Option<Arc<RedisCache>>) -> Self {
        let cache = Cache::builder().name("subscriptions").max_capacity(capacity).time_to_live(ttl).build();
        Self { cache, shared, pool }
    }

    /// The subscription `id`, from memory when possible. Concurrent misses for the same id
    /// share one database read. Absent ids are not cached (they may be created later).
    pub async fn get(&self, id: Uuid) -> Result<Lookup, LoadError> {
        let load = async {
            if let Some(row) = self.read_shared(id).await {
                return Ok(Arc::new(row));
            }
            match subscriptions::select(&self.pool, id).await {
                Ok(Some(row)) => {
                    if let Some(shared) = &self.shared {
                        shared.put(&row).await;
                    }
                    Ok(Arc::new(row))
                }
                Ok(None) => Err(Miss::Absent),
                Err(error) => Err(Miss::Failed(error)),
            }
        };
        match self.cache.try_get_with(id, load).await {
            Ok(row) => Ok(Lookup::Found(row)),
            Err(miss) => match &*miss {
                Miss::Absent => Ok(Lookup::Missing),
                Miss::Failed(_) => Err(LoadError(miss)),
            },
        }
    }

    async fn read_shared(&self, id: Uuid) -> Option<SubscriptionRow> {
        self.shared.as_ref()?.get(id).await
    }

    /// After this instance wrote subscription `id`: forget it here and in Redis (the other
    /// instances learn of it through the NOTIFY sent with the write).
    pub async fn invalidate(&self, id: Uuid) {
        self.cache.invalidate(&id).await;
        if let Some(shared) = &self.shared {
            shared.delete(id).await;
            // An instance that read the old row just before the write may put it back into
            // Redis after this delete; a second delete a moment later removes it.
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                shared.delete(id).await;
            });
        }
    }

    /// After another instance wrote subscription `id`: forget the local copy.
    pub async fn evict_local(&self, id: Uuid) {
        self.cache.invalidate(&id).await;
    }

    /// Forgets every local entry (after missing notifications, e.g. a lost LISTEN).
    pub fn evict_all_local(&self) {
        self.cache.invalidate_all();
    }
}
