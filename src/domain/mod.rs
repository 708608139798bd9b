//! Parsed, validated values and pure rules: no I/O here, so all of it is unit-tested.

pub mod address;
pub mod event_type;
pub mod ids;
pub mod lifecycle;
pub mod operational_event;
pub mod retry;
pub mod signing;
pub mod target_url;

pub use ids::{DeliveryId, EventId, RecoveryId, SubscriptionId};
