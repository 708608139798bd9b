//! The delivery lifecycle: the statuses a delivery goes through, how each attempt ended,
//! and the one rule that turns what an HTTP attempt produced into the delivery's next state.
//!
//! ```text
//! queued ──claim──▶ delivering ──2xx──────────────▶ succeeded
//!                     │   ▲
//!      failed attempt │   │ claim (when due)
//!                     ▼   │
//!                   retrying ──schedule used up──▶ failed
//! filtered: recorded at ingest, never attempted.
//! ```
//!
//! Statuses and outcomes are stored as text (the SQL files name them); this module is the
//! only mapping between the two, and an unknown stored value is an error, never a guess.

use std::time::Duration;

use super::retry::{NextStep, RetrySchedule};

/// Implements the text mapping, and reading from PostgreSQL, of an enum stored as text.
macro_rules! stored_as_text {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The stored (and API) spelling.
            #[allow(dead_code, reason = "generated for every stored enum; some are only read")]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Self::parse(text).ok_or_else(|| format!("unknown {} `{text}` in the database", stringify!($name)).into())
            }
        }
    };
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt is being made now.
    Delivering,
    /// An attempt failed; the next one is due at `next_attempt_at`.
    Retrying,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every attempt failed, or the subscription was deleted.
    Failed,
    /// The subscription does not want this event type: never attempted.
    Filtered,
}

stored_as_text!(DeliveryStatus {
    Queued => "queued",
    Delivering => "delivering",
    Retrying => "retrying",
    Succeeded => "succeeded",
    Failed => "failed",
    Filtered => "filtered",
});

impl DeliveryStatus {
    /// Waiting for an attempt (its due time, if any, is meaningful).
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Queued | Self::Retrying)
    }

    /// Not finished: waiting, or being attempted. Only these rows are in the queue's
    /// indexes (`deliveries_subscription_due_idx`, `deliveries_parked_idx`).
    pub fn is_unfinished(self) -> bool {
        matches!(self, Self::Queued | Self::Retrying | Self::Delivering)
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Success,
    /// It failed and another attempt follows.
    FailedAttempt,
    /// It failed and was the last attempt: the delivery gave up.
    Failure,
}

stored_as_text!(AttemptOutcome {
    Success => "success",
    FailedAttempt => "failed_attempt",
    Failure => "failure",
});

/// Why webhookd took a subscription out of service (it is then inactive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// The receiver answered 410 Gone: it says the endpoint no longer exists.
    EndpointGone,
    /// Every attempt failed for longer than `WEBHOOKD_AUTO_DISABLE_AFTER`.
    Failing,
}

stored_as_text!(DisabledReason {
    EndpointGone => "endpoint_gone",
    Failing => "failing",
});

/// Where a bulk recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum RecoveryStatus {
    /// Batches are still being re-queued.
    Running,
    /// Every matching delivery was re-queued.
    Done,
}

stored_as_text!(RecoveryStatus {
    Running => "running",
    Done => "done",
});

/// What one HTTP attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The receiver answered (with any status), perhaps asking for a later retry.
    Answered { status: u16, retry_after: Option<Duration> },
    /// No complete answer within the delivery timeout.
    TimedOut,
    /// Connection, DNS, TLS or protocol failure.
    Failed,
    /// The guard refused every address of the target (server-side request forgery).
    Blocked,
}

impl SendOutcome {
    /// A response arrived: the receiver is alive, whatever it said.
    pub fn answered(&self) -> bool {
        matches!(self, Self::Answered { .. })
    }
}

/// What an attempt does to its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub status: DeliveryStatus,
    pub outcome: AttemptOutcome,
    /// When the delivery is retrying: how long after this attempt the next one is due.
    pub retry_in: Option<Duration>,
    /// The attempt showed the subscription must be taken out of service.
    pub disable: Option<DisabledReason>,
}

/// The rule: a 2xx succeeds; a blocked address fails at once (retrying cannot help); a 410
/// Gone fails at once and disables the subscription (the receiver says it is gone); any
/// other failure retries while the schedule allows (`Retry-After` may lengthen the wait),
/// then gives up. `attempt_in_round` counts from the last manual retry.
pub fn after_attempt(sent: &SendOutcome, attempt_in_round: u32, schedule: &RetrySchedule, random: f64) -> Transition {
    let give_up = Transition { status: DeliveryStatus::Failed, outcome: AttemptOutcome::Failure, retry_in: None, disable: None };
    let retry = |retry_after| match schedule.after_failure(attempt_in_round, retry_after, random) {
        NextStep::RetryIn(wait) => Transition {
            status: DeliveryStatus::Retrying,
            outcome: AttemptOutcome::FailedAttempt,
            retry_in: Some(wait),
            disable: None,
        },
        NextStep::GiveUp => give_up,
    };
    match sent {
        SendOutcome::Answered { status: 200..=299, .. } => {
            Transition { status: DeliveryStatus::Succeeded, outcome: AttemptOutcome::Success, retry_in: None, disable: None }
        }
        SendOutcome::Answered { status: 410, .. } => Transition { disable: Some(DisabledReason::EndpointGone), ..give_up },
        SendOutcome::Answered { retry_after, .. } => retry(*retry_after),
        SendOutcome::TimedOut | SendOutcome::Failed => retry(None),
        SendOutcome::Blocked => give_up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(text: &str) -> RetrySchedule {
        RetrySchedule::parse(text, 0.0).unwrap()
    }

    fn answered(status: u16) -> SendOutcome {
        SendOutcome::Answered { status, retry_after: None }
    }

    #[test]
    fn a_2xx_succeeds() {
        for status in [200, 204, 299] {
            let next = after_attempt(&answered(status), 1, &schedule("1s"), 0.0);
            assert_eq!((next.status, next.outcome, next.retry_in), (DeliveryStatus::Succeeded, AttemptOutcome::Success, None));
        }
    }

    #[test]
    fn failures_retry_while_the_schedule_allows_then_give_up() {
        for failed in [answered(500), answered(301), answered(404), SendOutcome::TimedOut, SendOutcome::Failed] {
            let first = after_attempt(&failed, 1, &schedule("1s"), 0.0);
            assert_eq!(first.status, DeliveryStatus::Retrying, "{failed:?}");
            assert_eq!((first.outcome, first.retry_in), (AttemptOutcome::FailedAttempt, Some(Duration::from_secs(1))));
            let last = after_attempt(&failed, 2, &schedule("1s"), 0.0);
            assert_eq!((last.status, last.outcome), (DeliveryStatus::Failed, AttemptOutcome::Failure), "{failed:?}");
        }
    }

    #[test]
    fn retry_after_lengthens_the_wait() {
        let asked = SendOutcome::Answered { status: 503, retry_after: Some(Duration::from_secs(30)) };
        assert_eq!(after_attempt(&asked, 1, &schedule("1s"), 0.0).retry_in, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_410_gone_fails_at_once_and_disables_the_subscription() {
        let next = after_attempt(&answered(410), 1, &schedule("1s,1s"), 0.0);
        assert_eq!((next.status, next.outcome, next.retry_in), (DeliveryStatus::Failed, AttemptOutcome::Failure, None));
        assert_eq!(next.disable, Some(DisabledReason::EndpointGone));
        assert_eq!(after_attempt(&answered(500), 1, &schedule("1s"), 0.0).disable, None);
    }

    #[test]
    fn a_blocked_address_fails_at_once() {
        let next = after_attempt(&SendOutcome::Blocked, 1, &schedule("1s,1s"), 0.0);
        assert_eq!((next.status, next.outcome), (DeliveryStatus::Failed, AttemptOutcome::Failure));
    }

    #[test]
    fn every_status_and_outcome_reads_back_its_own_spelling() {
        use DeliveryStatus::*;
        for status in [Queued, Delivering, Retrying, Succeeded, Failed, Filtered] {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        for outcome in [AttemptOutcome::Success, AttemptOutcome::FailedAttempt, AttemptOutcome::Failure] {
            assert_eq!(AttemptOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }
}
