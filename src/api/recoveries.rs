//! Bulk recovery: `POST /subscriptions/{id}/recover` re-queues a subscription's failed
//! deliveries created in a time range; `GET /recoveries/{id}` says how far it got. The work
//! itself is done in batches by the delivering instances (`delivery::recovery`).

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::AdminAuth;
use super::{ApiContext, ApiTags};
use crate::db::recoveries::{self as store, NewRecovery, RecoveryRow};
use crate::db::{deliveries, subscriptions};
use crate::domain::lifecycle::RecoveryStatus;
use crate::domain::{RecoveryId, SubscriptionId};
use crate::error::ApiError;

/// Which failed deliveries to re-queue.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Re-queue failed deliveries created at or after this time (RFC 3339).
    pub since: OffsetDateTime,
    /// ... and before this time; absent: now.
    pub until: Option<OffsetDateTime>,
    /// Only count the matching deliveries; change nothing (default false).
    pub dry_run: Option<bool>,
}

/// A dry run's answer.
#[derive(Debug, Object)]
pub struct RecoveryCount {
    /// Failed deliveries in the range.
    pub matched: i64,
}

/// A recovery was started.
#[derive(Debug, Object)]
pub struct RecoveryStarted {
    pub recovery_id: Uuid,
    /// Failed deliveries in the range when it started.
    pub matched: i64,
}

/// A recovery and how far it got.
#[derive(Debug, Object)]
pub struct Recovery {
    pub id: Uuid,
    pub subscription_id: Uuid,
    /// `running` while batches are re-queued, then `done`.
    pub status: RecoveryStatus,
    /// Failed deliveries in the range when it started.
    pub matched: i64,
    /// Deliveries re-queued so far. It can end below `matched` when some of them were
    /// retried by hand or removed by retention before the recovery reached them; deliveries
    /// that fail after the recovery started are not its own.
    pub requeued: i64,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

impl From<RecoveryRow> for Recovery {
    fn from(row: RecoveryRow) -> Self {
        Self {
            id: row.id.into(),
            subscription_id: row.subscription_id.into(),
            status: row.status,
            matched: row.matched.into(),
            requeued: row.requeued.into(),
            since: row.since,
            until: row.until,
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

/// A client's time as UTC, which is how it is stored; 400 when it does not fit (an offset can
/// push a valid year-9999 time past the representable range).
fn in_utc(at: OffsetDateTime, field: &str) -> Result<OffsetDateTime, ApiError> {
    at.checked_to_offset(time::UtcOffset::UTC)
        .filter(|utc| (1..=9999).contains(&utc.year()))
        .ok_or_else(|| ApiError::bad_request("invalid_range", format!("`{field}` is out of range")))
}

#[derive(ApiResponse)]
enum RecoverResponse {
    /// Dry run: how many failed deliveries match; nothing was changed.
    #[oai(status = 200)]
    Counted(Json<RecoveryCount>),
    /// Started: the matching deliveries are re-queued in batches; follow it at
    /// `GET /recoveries/{recovery_id}`.
    #[oai(status = 202)]
    Started(Json<RecoveryStarted>),
}

pub struct RecoveriesApi {
    context: ApiContext,
}

impl RecoveriesApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[OpenApi(tag = "ApiTags::Recovery")]
impl RecoveriesApi {
    /// Re-queue a subscription's failed deliveries created in `[since, until)`.
    ///
    /// Each keeps its id (so `webhook-id` is unchanged and receivers can deduplicate), its
    /// attempt numbers continue, and a new round of retries starts for it, sent to the
    /// subscription's current target under its usual limits. The subscription must be
    /// active (a dry run works on any), with no other recovery running (409
    /// `recovery_running`). At most `WEBHOOKD_RECOVER_MAX` deliveries per recovery. When it is done, `webhookd.recovery.completed` is published.
    #[oai(path = "/subscriptions/:id/recover", method = "post")]
    async fn recover(&self, _auth: AdminAuth, id: Path<Uuid>, body: Json<RecoverRequest>) -> Result<RecoverResponse, ApiError> {
        let request = body.0;
        let id = SubscriptionId::from(id.0);
        let since = in_utc(request.since, "since")?;
        let until = request.until.map(|until| in_utc(until, "until")).transpose()?.unwrap_or_else(OffsetDateTime::now_utc);
        if since >= until {
            return Err(ApiError::bad_request("invalid_range", "`since` must be before `until` (or before now when `until` is absent)"));
        }
        let limit = self.context.settings.delivery.recover_max;
        let mut tx = self.context.pool.begin().await?;
        let subscription = subscriptions::select(&mut *tx, id)
            .await?
            .filter(|s| s.deleted_at.is_none())
            .ok_or_else(|| ApiError::not_found("no subscription with this id"))?;
        let matched = deliveries::count_failed_in_range(&mut *tx, id, since, until, i64::from(limit) + 1).await?;
        if matched > i64::from(limit) {
            return Err(ApiError::bad_request(
                "too_many_deliveries",
                format!("more than {limit} failed deliveries match (WEBHOOKD_RECOVER_MAX); recover a shorter range at a time"),
            ));
        }
        if request.dry_run.unwrap_or(false) {
            return Ok(RecoverResponse::Counted(Json(RecoveryCount { matched })));
        }
        if !subscription.is_active {
            return Err(ApiError::conflict("subscription_inactive", "the subscription is inactive; activate it before recovering its deliveries"));
        }
        let recovery = NewRecovery { id: RecoveryId::new(), subscription_id: id, since, until, matched: matched as i32 };
        match store::insert(&mut *tx, &recovery).await {
            // recoveries_one_running_idx: two at once could each re-queue a delivery.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ApiError::conflict("recovery_running", "a recovery of this subscription is still running; wait until it is done"));
            }
            other => other?,
        };
        tx.commit().await?;
        self.context.waker.wake_operations();
        tracing::info!(recovery.id = %recovery.id, subscription.id = %id, matched, "recovery started");
        Ok(RecoverResponse::Started(Json(RecoveryStarted { recovery_id: recovery.id.into(), matched })))
    }

    /// Get a recovery and how far it got.
    #[oai(path = "/recoveries/:id", method = "get")]
    async fn get(&self, _auth: AdminAuth, id: Path<Uuid>) -> Result<Json<Recovery>, ApiError> {
        let row = store::select(&self.context.pool, id.0.into()).await?.ok_or_else(|| ApiError::not_found("no recovery with this id"))?;
        Ok(Json(row.into()))
    }
}
