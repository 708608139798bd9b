//! The relay of operational events: takes what the outbox (`operational_events`) holds and
//! publishes each as an ordinary fan-out event to the operators' subscriptions, deleting it
//! in the same transaction. Whatever raised an event only wrote a row; a crash before the
//! relay commits leaves the row for the next pass, on this or another instance.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::value::RawValue;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{self, operational_events};
use crate::domain::operational_event::envelope;
use crate::domain::SubscriptionId;
use crate::publish::{self, Audience};

/// Events relayed per transaction.
const BATCH: i64 = 100;

/// Relays queued events until none is left (or shutdown); returns how many deliveries
/// were queued. Each batch's transaction is given up after `deadline` (`db::bounded`).
pub async fn relay_all(pool: &PgPool, deadline: Duration, shutdown: &CancellationToken) -> sqlx::Result<usize> {
    let mut queued = 0;
    loop {
        let (events, deliveries) = db::bounded(deadline, relay_batch(pool)).await?;
        queued += deliveries;
        if events < BATCH as usize || shutdown.is_cancelled() {
            return Ok(queued);
        }
    }
}

/// One transaction: take up to a batch of events and publish each. Returns how many events
/// were taken and how many deliveries they made.
async fn relay_batch(pool: &PgPool) -> sqlx::Result<(usize, usize)> {
    let mut tx = pool.begin().await?;
    let events = operational_events::take(&mut *tx, BATCH).await?;
    let mut deliveries = 0;
    // Who wants each type, asked once per batch; with nobody subscribed nothing is stored.
    let mut audiences: HashMap<&str, Vec<SubscriptionId>> = HashMap::new();
    for event in &events {
        if !audiences.contains_key(event.event_type.as_str()) {
            let subscribers = publish::subscribers(&mut tx, Audience::Operators, &event.event_type).await?;
            audiences.insert(&event.event_type, subscribers);
        }
        let subscribers = audiences.get(event.event_type.as_str()).cloned().unwrap_or_default();
        if subscribers.is_empty() {
            continue;
        }
        let data = match RawValue::from_string(event.data.clone()) {
            Ok(data) => data,
            Err(error) => {
                // PostgreSQL printed this jsonb itself; this cannot happen, but an event
                // that cannot be read must not block the ones behind it.
                tracing::error!(event.id = event.id, %error, "dropping an unreadable operational event");
                continue;
            }
        };
        let body = envelope(&event.event_type, event.created_at, &data);
        let published = publish::publish_to(&mut tx, subscribers, &event.event_type, &body, None).await?;
        deliveries += published.deliveries.len();
        tracing::info!(event_type = event.event_type, event.id = %published.event_id, deliveries = published.deliveries.len(), "operational event published");
    }
    tx.commit().await?;
    Ok((events.len(), deliveries))
}
