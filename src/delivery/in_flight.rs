//! Per-subscription accounting of deliveries in flight on this instance, so that one
//! subscription (say, a receiver that hangs until every attempt times out) cannot take every
//! send slot. A subscription may have `WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION` deliveries
//! in flight while its receiver keeps answering; one that has completed nothing for
//! [`STALL`] while it has some in flight is held to a sixteenth of that (at least 1).
//! Fast receivers get full throughput; stalled ones cannot take over the instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit};
use uuid::Uuid;

use crate::db::deliveries::InFlightLimits;

/// No completion for this long while deliveries are in flight marks a subscription stalled.
pub const STALL: Duration = Duration::from_secs(1);

/// One subscription's deliveries in flight, and when one last finished (or the first began).
#[derive(Debug, Clone, Copy)]
struct Usage {
    in_flight: i32,
    progress_at: Instant,
}

#[derive(Clone, Default)]
pub struct InFlight {
    usage: Arc<Mutex<HashMap<Uuid, Usage>>>,
    /// Signalled whenever a slot is given back.
    released: Arc<Notify>,
}

impl InFlight {
    /// Waits until some slot is given back.
    pub async fn released(&self) {
        self.released.notified().await;
    }
    /// The limits to pass to the next claim. A stalled subscription is reported as using
    /// more than it does, so that the claim leaves it only its reduced room.
    pub fn limits(&self, per_subscription: i32) -> InFlightLimits {
        let stalled_cap = (per_subscription / 16).max(1);
        let now = Instant::now();
        let busy = self
            .usage
            .lock()
            .unwrap()
            .iter()
            .map(|(id, usage)| {
                let stalled = now.duration_since(usage.progress_at) >= STALL;
                let counted = if stalled { usage.in_flight + per_subscription - stalled_cap } else { usage.in_flight };
                (*id, counted)
            })
            .collect();
        InFlightLimits { per_subscription, busy }
    }

    /// Counts one delivery of `subscription` in flight until the returned slot is dropped.
    pub fn slot(&self, subscription: Uuid, permit: OwnedSemaphorePermit) -> Slot {
        let mut usage = self.usage.lock().unwrap();
        let entry = usage.entry(subscription).or_insert(Usage { in_flight: 0, progress_at: Instant::now() });
        entry.in_flight += 1;
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
        let mut usage = self.owner.usage.lock().unwrap();
        if let Some(entry) = usage.get_mut(&self.subscription) {
            entry.in_flight -= 1;
            entry.progress_at = Instant::now();
            if entry.in_flight <= 0 {
                usage.remove(&self.subscription);
            }
        }
        drop(usage);
        self.owner.released.notify_one();
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
        let mut busy = in_flight.limits(32).busy;
        busy.sort();
        let mut expected = vec![(a, 2), (b, 1)];
        expected.sort();
        assert_eq!(busy, expected);

        // Nothing finished for a while: a stalled subscription keeps only 32 / 16 = 2 slots.
        in_flight.usage.lock().unwrap().get_mut(&a).unwrap().progress_at -= STALL;
        let stalled = in_flight.limits(32).busy.into_iter().find(|(id, _)| *id == a).unwrap();
        assert_eq!(stalled.1, 2 + 32 - 2, "reported as having no room left");
        assert_eq!(permits.available_permits(), 7);
        drop((first, second, other));
        assert!(in_flight.limits(4).busy.is_empty());
        assert_eq!(permits.available_permits(), 10);
    }
}
