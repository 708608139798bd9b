//! Subscriptions read through an in-process cache, so the ingest and delivery paths do not
//! read the subscription row for every webhook. Every write path invalidates its entry.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::subscriptions::{self, SubscriptionRow};
use crate::error::ApiError;

/// Most subscriptions kept in memory.
const CAPACITY: u64 = 100_000;

#[derive(Clone)]
pub struct SubscriptionCache {
    cache: Cache<Uuid, Arc<SubscriptionRow>>,
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

    pub fn is_unavailable(&self) -> bool {
        crate::error::is_unavailable(self.cause())
    }
}

impl From<LoadError> for ApiError {
    fn from(error: LoadError) -> Self {
        if error.is_unavailable() {
            ApiError::unavailable()
        } else {
            tracing::error!(%error, "subscription lookup failed");
            ApiError::internal()
        }
    }
}

#[derive(Debug)]
enum Miss {
    Absent,
    Failed(sqlx::Error),
}

impl SubscriptionCache {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        let cache = Cache::builder().name("subscriptions").max_capacity(CAPACITY).time_to_live(ttl).build();
        Self { cache, pool }
    }

    /// The subscription `id`, from memory when possible. Concurrent misses for the same id
    /// share one database read. Absent ids are not cached (they may be created later).
    pub async fn get(&self, id: Uuid) -> Result<Lookup, LoadError> {
        let load = async {
            match subscriptions::select(&self.pool, id).await {
                Ok(Some(row)) => Ok(Arc::new(row)),
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

    /// Forgets `id` after a write, so the next read sees the new row.
    pub async fn invalidate(&self, id: Uuid) {
        self.cache.invalidate(&id).await;
    }
}
