//! Fan-out: one event stored once, and one queued delivery per subscription that wants it,
//! in the caller's transaction. `POST /events` publishes producers' events; the relay of
//! operational events (`delivery::relay`) publishes webhookd's own the same way, so that they
//! are signed, retried and logged like any other delivery.

use sqlx::PgConnection;

use crate::db::deliveries::{self, BatchKey};
use crate::db::{events, subscriptions};
use crate::domain::event_type::matching_patterns;
use crate::domain::{DeliveryId, EventId, SubscriptionId};

/// Who an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A producer's event: subscriptions whose filters match it, and those without filters.
    Subscribers,
    /// One of webhookd's `webhookd.*` events: only subscriptions whose filters name it (an
    /// operator subscribes with `["webhookd.*"]`); those without filters take every producer
    /// event, but these describe other subscriptions and are not theirs to see.
    Operators,
}

/// The stored event and its deliveries, as `(subscription, delivery)` ids.
#[derive(Debug, Clone)]
pub struct Published {
    pub event_id: EventId,
    pub deliveries: Vec<(SubscriptionId, DeliveryId)>,
}

/// Stores the event and one delivery per subscription of `audience` that wants it.
/// With `key`, the transaction holds its advisory lock from its first write until it ends
/// (see `events::insert`).
pub async fn publish(tx: &mut PgConnection, audience: Audience, event_type: &str, payload: &[u8], key: Option<BatchKey>) -> sqlx::Result<Published> {
    let subscription_ids = subscribers(&mut *tx, audience, event_type).await?;
    publish_to(tx, subscription_ids, event_type, payload, key).await
}

/// The subscriptions of `audience` that want `event_type`.
pub async fn subscribers(tx: &mut PgConnection, audience: Audience, event_type: &str) -> sqlx::Result<Vec<SubscriptionId>> {
    let patterns = matching_patterns(event_type);
    match audience {
        Audience::Subscribers => subscriptions::matching_event(&mut *tx, &patterns).await,
        Audience::Operators => subscriptions::matching_operational_event(&mut *tx, &patterns).await,
    }
}

/// Stores the event and one delivery per subscription in `subscription_ids` (`key`: as for
/// [`publish`]).
pub async fn publish_to(
    tx: &mut PgConnection,
    subscription_ids: Vec<SubscriptionId>,
    event_type: &str,
    payload: &[u8],
    key: Option<BatchKey>,
) -> sqlx::Result<Published> {
    let event_id = EventId::new();
    events::insert(&mut *tx, event_id, event_type, payload, key).await?;
    let delivery_ids: Vec<DeliveryId> = subscription_ids.iter().map(|_| DeliveryId::new()).collect();
    if !delivery_ids.is_empty() {
        deliveries::insert_for_event(&mut *tx, &delivery_ids, &subscription_ids, event_type, event_id).await?;
    }
    Ok(Published { event_id, deliveries: subscription_ids.into_iter().zip(delivery_ids).collect() })
}
