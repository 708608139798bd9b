//! Per-subscription accounting of deliveries in flight on this instance, so that one
//! subscription (say, a receiver that hangs until every attempt times out) cannot take every
//! send slot: the claim query skips subscriptions at `WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::db::deliveries::InFlightLimits;

#[derive(Clone, Default)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<Uuid, i32>>>,
}

impl InFlight {
    /// The limits to pass to the next claim.
    pub fn limits(&self, per_subscription: i32) -> InFlightLimits {
        let busy = self.counts.lock().unwrap().iter().map(|(id, n)| (*id, *n)).collect();
        InFlightLimits { per_subscription, busy }
    }

    /// Counts one delivery of `subscription` in flight until the returned slot is dropped.
    pub fn slot(&self, subscription: Uuid, permit: OwnedSemaphorePermit) -> Slot {
        *self.counts.lock().unwrap().entry(subscription).or_insert(0) += 1;
        Slot { owner: self.clone(), subscription, _permit: permit }
    }
}

/// One send slot: a share of the instance's concurrency and of its subscription's.
/// Held until the attempt's outcome is written.
#[derive(Debug)]
pub struct Slot {
    owner: InFlight,
    subscription: Uuid,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap();
        if let Some(count) = counts.get_mut(&self.subscription) {
            *count -= 1;
            if *count <= 0 {
                counts.remove(&self.subscription);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[test]
    fn slots_count_per_subscription_until_dropped() {
        let permits = Arc::new(Semaphore::new(10));
        let in_flight = InFlight::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = in_flight.slot(a, permits.clone().try_acquire_owned().unwrap());
        let second = in_flight.slot(a, permits.clone().try_acquire_owned().unwrap());
        let other = in_flight.slot(b, permits.clone().try_acquire_owned().unwrap());
        let mut busy = in_flight.limits(4).busy;
        busy.sort();
        let mut expected = vec![(a, 2), (b, 1)];
        expected.sort();
        assert_eq!(busy, expected);
        assert_eq!(permits.available_permits(), 7);
        drop((first, second, other));
        assert!(in_flight.limits(4).busy.is_empty());
        assert_eq!(permits.available_permits(), 10);
    }
}
