//! The ids of what webhookd stores, each its own type over the `uuid` column it is stored
//! in: a delivery id cannot be passed where a subscription id is expected, nor two lists of
//! ids swapped. They read, write and print as the uuid they wrap (hyphenated), in
//! PostgreSQL, JSON and logs alike; the HTTP API converts at its handlers and keeps the
//! `string/uuid` schema.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Declares an id type over a `Uuid`.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id: a UUIDv7, so that ids sort by creation time (the statements that
            /// page or scan by id rely on it).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A subscription: a receiver's URL, secret and filters.
    SubscriptionId
);
uuid_id!(
    /// One webhook to one subscription, and the queue row that carries it.
    DeliveryId
);
impl DeliveryId {
    /// When the id was made, from its UUIDv7 timestamp (milliseconds; `None` for an id
    /// that is not a UUIDv7, as tests may make).
    pub fn created_at(self) -> Option<time::OffsetDateTime> {
        let (seconds, nanos) = self.0.get_timestamp()?.to_unix();
        let seconds = i64::try_from(seconds).ok()?;
        time::OffsetDateTime::from_unix_timestamp(seconds).ok().map(|at| at + time::Duration::nanoseconds(i64::from(nanos)))
    }
}

uuid_id!(
    /// A fan-out event, stored once for all of its deliveries.
    EventId
);
uuid_id!(
    /// A bulk recovery of a subscription's failed deliveries.
    RecoveryId
);

/// The uuids of `ids`, as a statement's `uuid[]` parameter takes them.
pub fn uuids<Id: Into<Uuid>>(ids: impl IntoIterator<Item = Id>) -> Vec<Uuid> {
    ids.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_and_writes_as_its_uuid() {
        let uuid = Uuid::now_v7();
        let id = DeliveryId::from(uuid);
        assert_eq!(id.to_string(), uuid.hyphenated().to_string());
        assert_eq!(serde_json::to_string(&id).unwrap(), serde_json::to_string(&uuid).unwrap());
        assert_eq!(serde_json::from_str::<DeliveryId>(&format!("\"{uuid}\"")).unwrap(), id);
        assert_eq!(uuid.to_string().parse::<DeliveryId>().unwrap(), id);
        assert_eq!(Uuid::from(id), uuid);
    }
}
