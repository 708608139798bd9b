//! webhookd's own events (`webhookd.*`): what an operator subscribes to, to hear about
//! endpoint health without polling. They travel as ordinary fan-out events, so they are
//! signed, retried and logged like any other delivery. Their body is an envelope:
//! `{"type": "<event type>", "timestamp": "<RFC 3339>", "data": {...}}`.

use serde::Serialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ids::{RecoveryId, SubscriptionId};
use super::lifecycle::DisabledReason;

/// A subscription was taken out of service by webhookd (see `DisabledReason`).
pub const SUBSCRIPTION_DISABLED: &str = "webhookd.subscription.disabled";
/// A delivery gave up: its last attempt failed and no retry is left. Emitted by the outcome
/// statement itself (`sql/deliveries/record_attempts.sql`); never for a delivery of a
/// `webhookd.*` event, so a failing operator endpoint cannot feed itself events.
pub const DELIVERY_FAILED: &str = "webhookd.delivery.failed";
/// A bulk recovery re-queued everything it matched.
pub const RECOVERY_COMPLETED: &str = "webhookd.recovery.completed";

/// An operational event raised from Rust, stored in the same transaction as its cause.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationalEvent {
    SubscriptionDisabled { subscription_id: SubscriptionId, reason: DisabledReason, disabled_at: OffsetDateTime },
    RecoveryCompleted { recovery_id: RecoveryId, subscription_id: SubscriptionId, matched: i64, requeued: i64 },
}

impl OperationalEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::SubscriptionDisabled { .. } => SUBSCRIPTION_DISABLED,
            Self::RecoveryCompleted { .. } => RECOVERY_COMPLETED,
        }
    }

    /// The envelope's `data` object.
    pub fn data(&self) -> serde_json::Value {
        match self {
            Self::SubscriptionDisabled { subscription_id, reason, disabled_at } => serde_json::json!({
                "subscription_id": subscription_id,
                "reason": reason.as_str(),
                "disabled_at": rfc3339(*disabled_at),
            }),
            Self::RecoveryCompleted { recovery_id, subscription_id, matched, requeued } => serde_json::json!({
                "recovery_id": recovery_id,
                "subscription_id": subscription_id,
                "matched": matched,
                "requeued": requeued,
            }),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a RawValue,
}

/// The body delivered for an operational event raised at `timestamp` with `data` (JSON text).
pub fn envelope(event_type: &str, timestamp: OffsetDateTime, data: &RawValue) -> Vec<u8> {
    let envelope = Envelope { event_type, timestamp: rfc3339(timestamp), data };
    // Serialising strings and an already-valid JSON value cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_carries_type_timestamp_and_data_in_that_order() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let data = RawValue::from_string(r#"{"subscription_id":"x"}"#.to_owned()).unwrap();
        let body = String::from_utf8(envelope(SUBSCRIPTION_DISABLED, at, &data)).unwrap();
        assert_eq!(body, r#"{"type":"webhookd.subscription.disabled","timestamp":"2027-01-15T08:00:00Z","data":{"subscription_id":"x"}}"#);
    }

    #[test]
    fn a_disabled_subscription_names_its_reason() {
        let id = SubscriptionId::from(uuid::Uuid::nil());
        let at = OffsetDateTime::from_unix_timestamp(0).unwrap();
        let event = OperationalEvent::SubscriptionDisabled { subscription_id: id, reason: DisabledReason::EndpointGone, disabled_at: at };
        assert_eq!(event.event_type(), "webhookd.subscription.disabled");
        assert_eq!(event.data()["reason"], "endpoint_gone");
        assert_eq!(event.data()["disabled_at"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn every_operational_type_is_reserved() {
        for event_type in [SUBSCRIPTION_DISABLED, DELIVERY_FAILED, RECOVERY_COMPLETED] {
            assert!(super::super::event_type::validate_producer_event_type(event_type).is_err());
        }
    }
}
