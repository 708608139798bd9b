//! Statements on `deliveries`, the queue.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool};

use crate::db::attempts::AttemptRow;
use crate::domain::ids::uuids;
use crate::domain::lifecycle::DeliveryStatus;
use crate::domain::operational_event;
use crate::domain::{DeliveryId, EventId, SubscriptionId};
use time::OffsetDateTime;
use uuid::Uuid;

/// A delivery's state as shown to API clients (the body is left out).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub event_type: Option<String>,
    pub event_id: Option<EventId>,
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
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
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
    pub id: DeliveryId,
    pub lease_id: Uuid,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// Records one webhook as `queued` or `filtered`; returns its creation time.
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: DeliveryId,
    subscription_id: SubscriptionId,
    event_type: Option<&str>,
    body: &[u8],
    status: &str,
) -> sqlx::Result<OffsetDateTime> {
    sqlx::query_file_scalar!("sql/deliveries/insert_delivery.sql", id.as_uuid(), subscription_id.as_uuid(), event_type, body, status).fetch_one(db).await
}

/// A webhook to record, as ingest received it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub event_type: Option<String>,
    pub body: Vec<u8>,
    /// `queued`, `filtered`, or `delivering`: handed to this instance's senders at ingest,
    /// written claimed with its first attempt under way (see `delivery/handoff.rs`).
    pub status: &'static str,
}

/// Records many webhooks in one statement (ingest's group commit). Those written claimed
/// hold lease `lease_id` for `lease_seconds`. With `flush_later`, the commit returns before
/// its WAL is flushed: the rows are visible, but durable only once [`wait_until_durable`]
/// has found them (on any connection).
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    rows: &[NewDelivery],
    lease_id: Uuid,
    lease_seconds: f64,
    flush_later: bool,
    batch: BatchKey,
) -> sqlx::Result<()> {
    sqlx::query_file!(
        "sql/deliveries/insert_deliveries.sql",
        &uuids(rows.iter().map(|r| r.id)),
        &uuids(rows.iter().map(|r| r.subscription_id)),
        // `as _`: borrowed slices, not the owned types the check expects (no body copied).
        &rows.iter().map(|r| r.event_type.as_deref()).collect::<Vec<_>>() as _,
        &rows.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>() as _,
        &rows.iter().map(|r| r.status).collect::<Vec<_>>() as _,
        lease_id,
        lease_seconds,
        flush_later,
        batch.0,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Which of `ids` exist, once they are durable ([`wait_until_durable`]); on a database
/// that does not let us wait for a flush ([`refuses_flush_wait`]), which exist. For a
/// write whose answer was lost: a COMMIT cancelled while it waited for a synchronous
/// standby is visible all the same, but a failover could still take it back.
pub async fn find_durable(db: &mut PgConnection, ids: &[DeliveryId]) -> sqlx::Result<HashSet<DeliveryId>> {
    match wait_until_durable(&mut *db, ids).await {
        Err(sqlx::Error::Database(error)) if refuses_flush_wait(error.code().as_deref()) => {
            let row = sqlx::query_file!("sql/deliveries/find_deliveries.sql", &uuids(ids.iter().copied())).fetch_one(db).await?;
            Ok(row.found.into_iter().map(DeliveryId::from).collect())
        }
        found => found,
    }
}

/// Whether a failed wait for a flush ([`wait_until_durable`]) says, by its SQLSTATE, that
/// the database does not let us wait this way (no right to the function, no such function
/// or feature), for good. Other errors (a backend terminated in a failover, a read-only
/// standby, a cancelled statement, a deadlock) may pass.
pub fn refuses_flush_wait(code: Option<&str>) -> bool {
    matches!(code, Some("42501" | "42883" | "0A000"))
}

/// The key a batch write holds an advisory lock on until its transaction ends, the same for
/// every try of the batch: a later look at what an earlier try did first waits for it
/// ([`wait_for_earlier_try`]). An event's fan-out holds one the same way
/// (`events::insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchKey(pub(super) i64);

impl BatchKey {
    pub fn new() -> Self {
        Self(Uuid::new_v4().as_u64_pair().0 as i64)
    }
}

impl Default for BatchKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits until every earlier try of `batch` has ended on the server, committed or rolled
/// back (see `sql/deliveries/wait_for_earlier_try.sql`).
pub async fn wait_for_earlier_try(db: &mut PgConnection, batch: BatchKey) -> sqlx::Result<()> {
    sqlx::query_file!("sql/deliveries/wait_for_earlier_try.sql", batch.0).execute(db).await?;
    Ok(())
}

/// Waits until every row committed before is on disk, and returns which of `ids` exist
/// then: those are durable; one missing was lost before its flush (see the SQL file).
pub async fn wait_until_durable(db: impl PgExecutor<'_>, ids: &[DeliveryId]) -> sqlx::Result<HashSet<DeliveryId>> {
    let row = sqlx::query_file!("sql/deliveries/wait_until_durable.sql", &uuids(ids.iter().copied())).fetch_one(db).await?;
    Ok(row.durable.into_iter().map(DeliveryId::from).collect())
}

/// Queues one delivery of an event per subscription (`ids[i]` goes to `subscriptions[i]`).
pub async fn insert_for_event(
    db: impl PgExecutor<'_>,
    ids: &[DeliveryId],
    subscriptions: &[SubscriptionId],
    event_type: &str,
    event_id: EventId,
) -> sqlx::Result<()> {
    sqlx::query_file!(
        "sql/deliveries/insert_event_deliveries.sql",
        &uuids(ids.iter().copied()),
        &uuids(subscriptions.iter().copied()),
        event_type,
        event_id.as_uuid(),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The deliveries of one fan-out event.
pub async fn list_for_event(db: impl PgExecutor<'_>, event_id: EventId) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_file_as!(DeliveryRow, "sql/deliveries/list_deliveries_for_event.sql", event_id.as_uuid()).fetch_all(db).await
}

/// Re-queues a finished delivery for a new round of attempts; false if it is not finished.
pub async fn retry(db: impl PgExecutor<'_>, id: DeliveryId) -> sqlx::Result<bool> {
    let row = sqlx::query_file!("sql/deliveries/retry_delivery.sql", id.as_uuid()).fetch_optional(db).await?;
    Ok(row.is_some())
}

/// How many of a subscription's failed deliveries were created in `[since, until)`,
/// counting no further than `at_most`.
pub async fn count_failed_in_range(
    db: impl PgExecutor<'_>,
    subscription_id: SubscriptionId,
    since: OffsetDateTime,
    until: OffsetDateTime,
    at_most: i64,
) -> sqlx::Result<i64> {
    sqlx::query_file_scalar!("sql/deliveries/count_failed_in_range.sql", subscription_id.as_uuid(), since, until, at_most).fetch_one(db).await
}

/// What one recovery batch takes: a subscription's deliveries created before `until` that
/// had failed by `failed_by`, after `cursor` (creation time, id), at most `limit` of them.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryBatch {
    pub subscription_id: SubscriptionId,
    pub until: OffsetDateTime,
    pub failed_by: OffsetDateTime,
    pub cursor: (OffsetDateTime, DeliveryId),
    pub limit: i64,
}

/// Re-queues one recovery batch, in (creation time, id) order, each delivery for a fresh
/// round. Returns the positions of those re-queued.
pub async fn requeue_failed_batch(db: impl PgExecutor<'_>, batch: &RecoveryBatch) -> sqlx::Result<Vec<(OffsetDateTime, DeliveryId)>> {
    let rows = sqlx::query_file!(
        "sql/deliveries/requeue_failed_batch.sql",
        batch.subscription_id.as_uuid(),
        batch.until,
        batch.cursor.0,
        batch.cursor.1.as_uuid(),
        batch.limit,
        batch.failed_by,
    )
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (row.created_at, row.id.into())).collect())
}

/// Whether the subscription was sent a test event within the last `seconds`.
pub async fn recent_test_event(db: impl PgExecutor<'_>, subscription_id: SubscriptionId, seconds: f64) -> sqlx::Result<bool> {
    sqlx::query_file_scalar!("sql/deliveries/recent_test_event.sql", subscription_id.as_uuid(), seconds).fetch_one(db).await
}

/// Reads one delivery's state.
pub async fn select(db: impl PgExecutor<'_>, id: DeliveryId) -> sqlx::Result<Option<DeliveryRow>> {
    sqlx::query_file_as!(DeliveryRow, "sql/deliveries/select_delivery.sql", id.as_uuid()).fetch_optional(db).await
}

/// Reads a subscription's most recent deliveries, optionally only those in `status`.
pub async fn list_for_subscription(
    db: impl PgExecutor<'_>,
    subscription_id: SubscriptionId,
    status: Option<DeliveryStatus>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    let id = subscription_id.as_uuid();
    match status {
        // Waiting rows are read from the queue's indexes, not looked for in the history.
        Some(status) if status.is_unfinished() => {
            let status = status.as_str();
            sqlx::query_file_as!(DeliveryRow, "sql/deliveries/list_waiting_deliveries_for_subscription.sql", id, status, limit)
                .fetch_all(db)
                .await
        }
        // These through their partial indexes, not looked for in the history.
        Some(status @ (DeliveryStatus::Failed | DeliveryStatus::Filtered)) => {
            let status = status.as_str();
            sqlx::query_file_as!(DeliveryRow, "sql/deliveries/list_rare_deliveries_for_subscription.sql", id, status, limit)
                .fetch_all(db)
                .await
        }
        _ => {
            let status = status.map(DeliveryStatus::as_str);
            sqlx::query_file_as!(DeliveryRow, "sql/deliveries/list_deliveries_for_subscription.sql", id, status, limit)
                .fetch_all(db)
                .await
        }
    }
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
    pub subscription_id: SubscriptionId,
    pub room: i32,
    /// The earliest due time its rows are read from (`None`: its first row).
    pub scan_from: Option<OffsetDateTime>,
}

impl ClaimPlan {
    fn columns(&self) -> (Vec<Uuid>, Vec<i32>, Vec<Option<OffsetDateTime>>) {
        let ids = uuids(self.known.iter().map(|k| k.subscription_id));
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
    /// (`None`: none is, within the claim's look-ahead).
    pub next_due: Option<OffsetDateTime>,
}

/// For the rest of the session, keeps the planner on the claim's index (see the file).
pub async fn prefer_claim_index(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query_file!("sql/deliveries/prefer_claim_index.sql").fetch_one(db).await?;
    Ok(())
}

/// Opens the connection a claim loop keeps for its claims, set up by [`prefer_claim_index`]:
/// each claim is then one statement, one round trip. It is used for nothing else.
pub async fn connect_for_claims(options: &PgConnectOptions) -> sqlx::Result<PgConnection> {
    let mut connection = PgConnection::connect_with(options).await?;
    prefer_claim_index(&mut connection).await?;
    Ok(connection)
}

/// Claims up to `limit` due deliveries under `lease_id`, leased for `lease_seconds`, no
/// more of each subscription than its room in `plan`; reads nothing of a subscription
/// without room. When nothing more is due, says when the next delivery is, if within
/// `look_ahead`. Run it on a connection from [`connect_for_claims`], on its own.
pub async fn claim_due(
    db: impl PgExecutor<'_>,
    limit: i64,
    lease_seconds: f64,
    lease_id: Uuid,
    plan: &ClaimPlan,
    look_ahead: Duration,
) -> sqlx::Result<Claim> {
    let (ids, rooms, from) = plan.columns();
    let rows = sqlx::query_file!(
        "sql/deliveries/claim_due_deliveries.sql",
        limit,
        lease_seconds,
        lease_id,
        &ids,
        &rooms,
        &from as &[Option<OffsetDateTime>],
        plan.small_share,
        look_ahead.as_secs_f64(),
    )
    .fetch_all(db)
    .await?;
    let Some(first) = rows.first() else { return Ok(Claim::default()) };
    let (more, next_due) = (first.more.unwrap_or(false), first.next_due_at);
    // Nothing claimed: one row without a delivery (the claim's columns are all NULL).
    let deliveries = rows
        .into_iter()
        .filter_map(|row| {
            Some(ClaimedDelivery {
                id: row.id?.into(),
                subscription_id: row.subscription_id?.into(),
                event_type: row.event_type,
                body: row.body.unwrap_or_default(),
                attempt_count: row.attempt_count?,
                round_start_attempt: row.round_start_attempt?,
                due_at: row.due_at?,
            })
        })
        .collect();
    Ok(Claim { deliveries, more, next_due })
}

/// Tells every instance's claim loop (LISTEN) that new work is due.
pub async fn notify_work(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query_file!("sql/notify/notify_work.sql").fetch_one(db).await?;
    Ok(())
}

/// What recording a batch of attempts did.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Deliveries whose outcome was applied (their lease still held).
    pub updated: Vec<DeliveryId>,
    /// Active subscriptions whose failure streak is now long enough to disable them.
    pub to_disable: Vec<SubscriptionId>,
}

/// One try at writing a batch of outcomes. Every try of a batch shares its key (see
/// `sql/deliveries/record_attempts.sql`, `$18`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutcomeWrite {
    key: BatchKey,
    tried_before: bool,
}

impl OutcomeWrite {
    /// The first try at a new batch.
    pub fn first() -> Self {
        Self { key: BatchKey::new(), tried_before: false }
    }

    /// A later try at the same batch: the earlier ones may have committed (their answers
    /// were lost), or may still be running on the server.
    pub fn again(self) -> Self {
        Self { tried_before: true, ..self }
    }
}

/// Records many finished attempts in one statement: appends every attempt row, applies each
/// outcome whose lease still held, and keeps the subscriptions' failure streaks (a streak
/// longer than `disable_after` with 3 failures or more is reported; zero: never).
/// `outcomes[i]` and `attempts[i]` describe the same attempt. On a try after the first
/// (`OutcomeWrite::again`), the earlier tries are first waited for on the server, and
/// attempts they logged are then neither logged nor counted again.
pub async fn record_attempts(
    db: &mut PgConnection,
    outcomes: &[OutcomeUpdate],
    attempts: &[AttemptRow],
    disable_after: std::time::Duration,
    write: OutcomeWrite,
) -> sqlx::Result<Recorded> {
    debug_assert_eq!(outcomes.len(), attempts.len());
    if write.tried_before {
        wait_for_earlier_try(db, write.key).await?;
    }
    let outcome_column = |f: fn(&OutcomeUpdate) -> Option<String>| outcomes.iter().map(f).collect::<Vec<_>>();
    let attempt_text = |f: fn(&AttemptRow) -> Option<String>| attempts.iter().map(f).collect::<Vec<_>>();
    let rows = sqlx::query_file!(
        "sql/deliveries/record_attempts.sql",
        &uuids(outcomes.iter().map(|o| o.id)),
        &outcomes.iter().map(|o| o.lease_id).collect::<Vec<_>>(),
        &outcomes.iter().map(|o| o.status.as_str().to_owned()).collect::<Vec<_>>(),
        &outcomes.iter().map(|o| o.next_attempt_at).collect::<Vec<_>>() as &[Option<OffsetDateTime>],
        &outcome_column(|o| o.last_error.clone()) as &[Option<String>],
        &uuids(attempts.iter().map(|a| a.subscription_id)),
        &attempts.iter().map(|a| a.attempt_number).collect::<Vec<_>>(),
        &attempts.iter().map(|a| a.outcome.as_str().to_owned()).collect::<Vec<_>>(),
        &attempts.iter().map(|a| a.status_code).collect::<Vec<_>>() as &[Option<i32>],
        &attempt_text(|a| a.error.clone()) as &[Option<String>],
        &attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>(),
        &attempt_text(|a| a.response_excerpt.clone()) as &[Option<String>],
        &attempts.iter().map(|a| a.target_url.clone()).collect::<Vec<_>>(),
        &attempts.iter().map(|a| a.created_at).collect::<Vec<_>>(),
        disable_after.as_secs_f64(),
        operational_event::DELIVERY_FAILED,
        write.tried_before,
        write.key.0,
    )
    .fetch_all(db)
    .await?;
    let mut recorded = Recorded::default();
    for row in rows {
        recorded.updated.extend(row.id.map(DeliveryId::from));
        recorded.to_disable.extend(row.disable.map(SubscriptionId::from));
    }
    Ok(recorded)
}

/// Returns claimed deliveries to the queue unattempted, due at `due_at` (`None`: parked).
pub async fn release(
    db: impl PgExecutor<'_>,
    ids: &[DeliveryId],
    lease_id: Uuid,
    due_at: Option<OffsetDateTime>,
) -> sqlx::Result<u64> {
    let result = sqlx::query_file!("sql/deliveries/release_deliveries.sql", &uuids(ids.iter().copied()), lease_id, due_at).execute(db).await?;
    Ok(result.rows_affected())
}

/// Ends a claimed delivery as failed without an attempt, with `reason` as its last error.
pub async fn cancel_claimed(db: impl PgExecutor<'_>, id: DeliveryId, lease_id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query_file!("sql/deliveries/cancel_claimed_delivery.sql", id.as_uuid(), lease_id, reason).execute(db).await?;
    Ok(())
}

/// Waits for, then holds until the transaction ends, the turn to change whether
/// `subscription_id` is active or deleted, or to move its waiting deliveries
/// (`delivery::backlog`).
pub async fn take_backlog_turn(db: impl PgExecutor<'_>, subscription_id: SubscriptionId) -> sqlx::Result<()> {
    sqlx::query_file!("sql/deliveries/take_backlog_turn.sql", subscription_id.as_uuid()).execute(db).await?;
    Ok(())
}

/// Parks up to `limit` waiting deliveries of a paused subscription.
pub async fn park_for_subscription(db: impl PgExecutor<'_>, subscription_id: SubscriptionId, limit: i64) -> sqlx::Result<u64> {
    let parked = sqlx::query_file!("sql/deliveries/park_subscription_deliveries.sql", subscription_id.as_uuid(), limit).execute(db).await?;
    Ok(parked.rows_affected())
}

/// Makes up to `limit` parked deliveries of a reactivated subscription due now.
pub async fn resume_for_subscription(db: impl PgExecutor<'_>, subscription_id: SubscriptionId, limit: i64) -> sqlx::Result<u64> {
    let resumed = sqlx::query_file!("sql/deliveries/resume_subscription_deliveries.sql", subscription_id.as_uuid(), limit).execute(db).await?;
    Ok(resumed.rows_affected())
}

/// Fails up to `limit` waiting deliveries of a deleted subscription.
pub async fn cancel_for_subscription(db: impl PgExecutor<'_>, subscription_id: SubscriptionId, limit: i64) -> sqlx::Result<u64> {
    let cancelled = sqlx::query_file!("sql/deliveries/cancel_subscription_deliveries.sql", subscription_id.as_uuid(), limit).execute(db).await?;
    Ok(cancelled.rows_affected())
}

/// Subscriptions whose waiting deliveries are not where their state puts them.
pub async fn misplaced_backlogs(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<SubscriptionId>> {
    let ids = sqlx::query_file_scalar!("sql/deliveries/misplaced_backlogs.sql").fetch_all(db).await?;
    Ok(ids.into_iter().flatten().map(SubscriptionId::from).collect())
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
    sqlx::query_file_as!(QueueDepth, "sql/deliveries/queue_depth.sql").fetch_one(db).await
}

/// Deliveries finished in one minute.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct MinuteCounts {
    pub minute: OffsetDateTime,
    pub succeeded: i64,
    pub failed: i64,
}

/// Deliveries finished in each minute of the last hour (minutes without any are absent).
pub async fn finished_per_minute(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<MinuteCounts>> {
    sqlx::query_file_as!(MinuteCounts, "sql/deliveries/finished_per_minute.sql").fetch_all(db).await
}

/// Which deliveries a list shows; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub subscription_id: Option<SubscriptionId>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
}

/// Most deliveries one page of a list without an index to follow reads (a rare event type
/// or finished status over every subscription): about 0.1 s here. The page then says how
/// far back it looked, and the next search goes on from there.
pub const SEARCH_WINDOW: i64 = 100_000;

/// A page of the delivery list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryPage {
    pub rows: Vec<DeliveryRow>,
    /// When the page is short because the search reached the end of its window (not the
    /// end of the history): the oldest delivery it looked at. Older matches may exist; the
    /// next search starts before this one.
    pub searched_to: Option<DeliveryId>,
}

impl DeliveryFilter {
    /// Whether the list can follow an index to its rows: a subscription's, or the queue's
    /// (a waiting status); else it must walk the history and look at each delivery.
    fn follows_an_index(&self) -> bool {
        self.subscription_id.is_some() || self.status.is_some_and(DeliveryStatus::is_unfinished)
    }

    fn narrows(&self) -> bool {
        self.subscription_id.is_some() || self.status.is_some() || self.event_type.is_some()
    }
}

/// Reads up to `limit` of the newest deliveries matching `filter` that are older than the
/// delivery `before` (a cursor; `None`: the newest). A filter no index serves looks at
/// [`SEARCH_WINDOW`] deliveries at most.
pub async fn list_newest(pool: &PgPool, filter: &DeliveryFilter, before: Option<DeliveryId>, limit: i64) -> sqlx::Result<DeliveryPage> {
    let before_id = before.map(DeliveryId::as_uuid);
    let subscription_id = filter.subscription_id.map(SubscriptionId::as_uuid);
    let event_type = filter.event_type.as_deref();
    if let Some(status) = filter.status.filter(|status| status.is_unfinished()) {
        // Waiting rows are read from the queue's indexes, not looked for in the history.
        let rows = sqlx::query_file_as!(
            DeliveryRow,
            "sql/deliveries/list_waiting_deliveries.sql",
            before_id,
            subscription_id,
            status.as_str(),
            event_type,
            limit,
        )
        .fetch_all(pool)
        .await?;
        return Ok(DeliveryPage { rows, searched_to: None });
    }
    let window = if filter.narrows() && !filter.follows_an_index() {
        let window = sqlx::query_file!("sql/deliveries/search_window_floor.sql", before_id, SEARCH_WINDOW).fetch_one(pool).await?;
        (window.examined == SEARCH_WINDOW).then_some(window.floor).flatten()
    } else {
        None
    };
    let rows = sqlx::query_file_as!(
        DeliveryRow,
        "sql/deliveries/list_deliveries.sql",
        before_id,
        subscription_id,
        filter.status.map(DeliveryStatus::as_str),
        event_type,
        limit,
        window,
    )
    .fetch_all(pool)
    .await?;
    let searched_to = window.filter(|_| (rows.len() as i64) < limit).map(DeliveryId::from);
    Ok(DeliveryPage { rows, searched_to })
}

/// The start of what a delivery sends, at most `limit` bytes, and its whole length
/// (`None`: no such delivery, or its body is gone).
pub async fn body_start(db: impl PgExecutor<'_>, id: DeliveryId, limit: i32) -> sqlx::Result<Option<BodyStart>> {
    let row = sqlx::query_file!("sql/deliveries/select_delivery_body.sql", id.as_uuid(), limit).fetch_optional(db).await?;
    Ok(row.and_then(|row| Some(BodyStart { shown: row.shown?, length: row.length? as usize })))
}

/// The start of a body, and how long the whole is.
#[derive(Debug, Clone)]
pub struct BodyStart {
    pub shown: Vec<u8>,
    pub length: usize,
}
