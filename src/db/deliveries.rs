//! Statements on `deliveries`, the queue.

use sqlx::{FromRow, PgExecutor, Row};

use crate::db::attempts::AttemptRow;
use crate::domain::lifecycle::DeliveryStatus;
use time::OffsetDateTime;
use uuid::Uuid;

/// A delivery's state as shown to API clients (the body is left out).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub event_type: Option<String>,
    pub event_id: Option<Uuid>,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

/// A delivery claimed by a worker, with what it needs to make the attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub event_type: Option<String>,
    pub body: Vec<u8>,
    /// The number of the attempt about to be made (1-based).
    pub attempt_count: i32,
    /// Attempts made before the current round (a manual retry starts a new round).
    pub round_start_attempt: i32,
    /// When it became due (or its previous lease expired): the start of its wait.
    pub due_at: OffsetDateTime,
}

impl ClaimedDelivery {
    /// The attempt's number within its round, which the retry schedule counts.
    pub fn attempt_in_round(&self) -> u32 {
        (self.attempt_count - self.round_start_attempt).max(1) as u32
    }
}

/// What a finished attempt does to its delivery.
#[derive(Debug, Clone)]
pub struct OutcomeUpdate {
    pub id: Uuid,
    pub lease_id: Uuid,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// Records one webhook as `queued` or `filtered`; returns its creation time.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    subscription_id: Uuid,
    event_type: Option<&str>,
    body: &[u8],
    status: &str,
) -> sqlx::Result<OffsetDateTime> {
    sqlx::query_scalar(include_str!("../../sql/deliveries/insert_delivery.sql"))
        .bind(id)
        .bind(subscription_id)
        .bind(event_type)
        .bind(body)
        .bind(status)
        .fetch_one(db)
        .await
}

/// A webhook to record, as ingest received it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub event_type: Option<String>,
    pub body: Vec<u8>,
    /// `queued` or `filtered`.
    pub status: &'static str,
}

/// Records many webhooks in one statement (ingest's group commit).
pub async fn insert_many(db: impl PgExecutor<'_>, rows: &[NewDelivery]) -> sqlx::Result<()> {
    sqlx::query(include_str!("../../sql/deliveries/insert_deliveries.sql"))
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.subscription_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.event_type.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .execute(db)
        .await?;
    Ok(())
}

/// Queues one delivery of an event per subscription (`ids[i]` goes to `subscriptions[i]`).
pub async fn insert_for_event(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    subscriptions: &[Uuid],
    event_type: &str,
    event_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(include_str!("../../sql/deliveries/insert_event_deliveries.sql"))
        .bind(ids)
        .bind(subscriptions)
        .bind(event_type)
        .bind(event_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The deliveries of one fan-out event.
pub async fn list_for_event(db: impl PgExecutor<'_>, event_id: Uuid) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(include_str!("../../sql/deliveries/list_deliveries_for_event.sql"))
        .bind(event_id)
        .fetch_all(db)
        .await
}

/// Re-queues a finished delivery for a new round of attempts; false if it is not finished.
pub async fn retry(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let row = sqlx::query(include_str!("../../sql/deliveries/retry_delivery.sql")).bind(id).fetch_optional(db).await?;
    Ok(row.is_some())
}

/// Reads one delivery's state.
pub async fn select(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<DeliveryRow>> {
    sqlx::query_as(include_str!("../../sql/deliveries/select_delivery.sql"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Reads a subscription's most recent deliveries, optionally only those in `status`.
pub async fn list_for_subscription(
    db: impl PgExecutor<'_>,
    subscription_id: Uuid,
    status: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(include_str!("../../sql/deliveries/list_deliveries_for_subscription.sql"))
        .bind(subscription_id)
        .bind(status)
        .bind(limit)
        .fetch_all(db)
        .await
}

/// What a claim may take: each known subscription's room, and the room of the others.
#[derive(Debug, Clone, Default)]
pub struct ClaimPlan {
    /// Subscriptions with deliveries claimed lately on this instance, with their room
    /// (0: none of their rows is read).
    pub known: Vec<SubscriptionRoom>,
    /// Room of any other subscription with due deliveries (the small share).
    pub small_share: i32,
}

/// How many more deliveries of one subscription a claim may take, and from where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubscriptionRoom {
    pub subscription_id: Uuid,
    pub room: i32,
    /// The earliest due time its rows are read from (`None`: its first row).
    pub scan_from: Option<OffsetDateTime>,
}

impl ClaimPlan {
    fn columns(&self) -> (Vec<Uuid>, Vec<i32>, Vec<Option<OffsetDateTime>>) {
        let ids = self.known.iter().map(|k| k.subscription_id).collect();
        let rooms = self.known.iter().map(|k| k.room).collect();
        let from = self.known.iter().map(|k| k.scan_from).collect();
        (ids, rooms, from)
    }
}

/// What one claim took, and what it saw of the queue.
#[derive(Debug, Default)]
pub struct Claim {
    pub deliveries: Vec<ClaimedDelivery>,
    /// Whether more may be due: the batch was full, or a subscription took its whole share
    /// of it and had room for more.
    pub more: bool,
    /// When not: when the next delivery of a subscription with room is due after now
    /// (`None`: none is).
    pub next_due: Option<OffsetDateTime>,
}

/// For the rest of the transaction, keeps the planner on the claim's index (see the file):
/// run it before [`claim_due`], in the same transaction.
pub async fn prefer_claim_index(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query(include_str!("../../sql/deliveries/prefer_claim_index.sql")).execute(db).await?;
    Ok(())
}

/// Claims up to `limit` due deliveries under `lease_id`, leased for `lease_seconds`, no
/// more of each subscription than its room in `plan`; reads nothing of a subscription
/// without room. Run after [`prefer_claim_index`] in the same transaction.
pub async fn claim_due(db: impl PgExecutor<'_>, limit: i64, lease_seconds: f64, lease_id: Uuid, plan: &ClaimPlan) -> sqlx::Result<Claim> {
    let (ids, rooms, from) = plan.columns();
    let rows = sqlx::query(include_str!("../../sql/deliveries/claim_due_deliveries.sql"))
        .bind(limit)
        .bind(lease_seconds)
        .bind(lease_id)
        .bind(ids)
        .bind(rooms)
        .bind(from)
        .bind(plan.small_share)
        .fetch_all(db)
        .await?;
    let Some(first) = rows.first() else { return Ok(Claim::default()) };
    let more = first.try_get("more")?;
    let next_due = first.try_get("next_due_at")?;
    // Nothing claimed: one row without a delivery.
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<Uuid>, _>("id")?.is_some() {
            deliveries.push(ClaimedDelivery::from_row(row)?);
        }
    }
    Ok(Claim { deliveries, more, next_due })
}

/// What recording a batch of attempts did.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Deliveries whose outcome was applied (their lease still held).
    pub updated: Vec<Uuid>,
    /// Active subscriptions whose failure streak is now long enough to disable them.
    pub to_disable: Vec<Uuid>,
}

/// Records many finished attempts in one statement: appends every attempt row, applies each
/// outcome whose lease still held, and keeps the subscriptions' failure streaks (a streak
/// longer than `disable_after` with 3 failures or more is reported; zero: never).
/// `outcomes[i]` and `attempts[i]` describe the same attempt.
pub async fn record_attempts(
    db: impl PgExecutor<'_>,
    outcomes: &[OutcomeUpdate],
    attempts: &[AttemptRow],
    disable_after: std::time::Duration,
) -> sqlx::Result<Recorded> {
    debug_assert_eq!(outcomes.len(), attempts.len());
    let outcome_column = |f: fn(&OutcomeUpdate) -> Option<String>| outcomes.iter().map(f).collect::<Vec<_>>();
    let attempt_text = |f: fn(&AttemptRow) -> Option<String>| attempts.iter().map(f).collect::<Vec<_>>();
    let rows = sqlx::query(include_str!("../../sql/deliveries/record_attempts.sql"))
        .bind(outcomes.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.lease_id).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.next_attempt_at).collect::<Vec<_>>())
        .bind(outcome_column(|o| o.last_error.clone()))
        .bind(attempts.iter().map(|a| a.subscription_id).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.attempt_number).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind(attempt_text(|a| a.error.clone()))
        .bind(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
        .bind(attempt_text(|a| a.response_excerpt.clone()))
        .bind(attempts.iter().map(|a| a.target_url.clone()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.created_at).collect::<Vec<_>>())
        .bind(disable_after.as_secs_f64())
        .fetch_all(db)
        .await?;
    let mut recorded = Recorded::default();
    for row in rows {
        if let Some(id) = row.try_get::<Option<Uuid>, _>("id")? {
            recorded.updated.push(id);
        }
        if let Some(id) = row.try_get::<Option<Uuid>, _>("disable")? {
            recorded.to_disable.push(id);
        }
    }
    Ok(recorded)
}

/// Returns claimed deliveries to the queue unattempted, due at `due_at` (`None`: parked).
pub async fn release(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    lease_id: Uuid,
    due_at: Option<OffsetDateTime>,
) -> sqlx::Result<u64> {
    let result = sqlx::query(include_str!("../../sql/deliveries/release_deliveries.sql"))
        .bind(ids)
        .bind(lease_id)
        .bind(due_at)
        .execute(db)
        .await?;
    Ok(result.rows_affected())
}

/// Ends a claimed delivery as failed without an attempt, with `reason` as its last error.
pub async fn cancel_claimed(db: impl PgExecutor<'_>, id: Uuid, lease_id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query(include_str!("../../sql/deliveries/cancel_claimed_delivery.sql"))
        .bind(id)
        .bind(lease_id)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(())
}

/// Parks the waiting deliveries of a paused subscription.
pub async fn park_for_subscription(db: impl PgExecutor<'_>, subscription_id: Uuid) -> sqlx::Result<u64> {
    execute_for_subscription(db, include_str!("../../sql/deliveries/park_subscription_deliveries.sql"), subscription_id).await
}

/// Makes a reactivated subscription's parked deliveries due now.
pub async fn resume_for_subscription(db: impl PgExecutor<'_>, subscription_id: Uuid) -> sqlx::Result<u64> {
    execute_for_subscription(db, include_str!("../../sql/deliveries/resume_subscription_deliveries.sql"), subscription_id).await
}

/// Fails the waiting deliveries of a deleted subscription.
pub async fn cancel_for_subscription(db: impl PgExecutor<'_>, subscription_id: Uuid) -> sqlx::Result<u64> {
    execute_for_subscription(db, include_str!("../../sql/deliveries/cancel_subscription_deliveries.sql"), subscription_id).await
}

async fn execute_for_subscription(db: impl PgExecutor<'_>, sql: &'static str, subscription_id: Uuid) -> sqlx::Result<u64> {
    Ok(sqlx::query(sql).bind(subscription_id).execute(db).await?.rows_affected())
}

/// The queue as the metrics endpoint reports it.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct QueueDepth {
    pub queued: i64,
    pub retrying: i64,
    pub delivering: i64,
    pub oldest_due_age_seconds: f64,
}

pub async fn queue_depth(db: impl PgExecutor<'_>) -> sqlx::Result<QueueDepth> {
    sqlx::query_as(include_str!("../../sql/deliveries/queue_depth.sql")).fetch_one(db).await
}
