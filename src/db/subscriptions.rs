//! Statements on `subscriptions`.

use sqlx::PgExecutor;

use crate::domain::lifecycle::DisabledReason;
use crate::secrets::SecretValue;
use crate::domain::SubscriptionId;
use time::OffsetDateTime;

/// A stored subscription, secret included: never serialise this type to clients (serde
/// is for the sealed entries of the shared Redis cache only). The secrets are as stored
/// (encrypted when at-rest encryption is on) until the subscription cache reveals them.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionRow {
    pub id: SubscriptionId,
    pub name: Option<String>,
    pub target_url: String,
    pub secret_key: Option<SecretValue>,
    pub event_types: Vec<String>,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
    /// The secret before the last rotation, valid until `previous_secret_expires_at`.
    pub previous_secret_key: Option<SecretValue>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// Most requests a second to the receiver from one instance (None: no limit).
    #[serde(default)]
    pub rate_limit: Option<i32>,
    /// Deliveries also carry `X-Hub-Signature-256` (opt-in: it can be replayed into ingest).
    #[serde(default)]
    pub github_signature: bool,
    /// Why webhookd took it out of service (it is then inactive), and when.
    #[serde(default)]
    pub disabled_reason: Option<DisabledReason>,
    #[serde(default)]
    pub disabled_at: Option<OffsetDateTime>,
}

impl SubscriptionRow {
    /// Secrets that sign and verify right now: the current one, then the previous one while
    /// its rotation overlap lasts.
    pub fn live_secrets(&self, now: OffsetDateTime) -> Vec<&str> {
        let previous = self
            .previous_secret_key
            .as_ref()
            .filter(|_| self.previous_secret_expires_at.is_some_and(|until| until > now));
        self.secret_key.iter().chain(previous).map(SecretValue::expose).collect()
    }
}

/// One subscription's secrets as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredSecrets {
    pub id: SubscriptionId,
    pub secret_key: Option<SecretValue>,
    pub previous_secret_key: Option<SecretValue>,
    pub deleted: bool,
}

pub async fn list_stored_secrets(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<StoredSecrets>> {
    sqlx::query_file_as!(StoredSecrets, "sql/subscriptions/list_stored_secrets.sql").fetch_all(db).await
}

/// Replaces `before` with `after` (both as stored); false if the row changed meanwhile.
pub async fn reseal_secrets(db: impl PgExecutor<'_>, before: &StoredSecrets, after: [Option<&str>; 2]) -> sqlx::Result<bool> {
    let row = sqlx::query_file!(
        "sql/subscriptions/reseal_secrets.sql",
        before.id.as_uuid(),
        after[0],
        after[1],
        before.secret_key.as_ref().map(SecretValue::expose),
        before.previous_secret_key.as_ref().map(SecretValue::expose),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

/// The writable fields of a subscription; `secret_key` as it is to be stored (sealed when
/// at-rest encryption is on).
#[derive(Clone)]
pub struct SubscriptionFields {
    pub name: Option<String>,
    pub target_url: String,
    pub secret_key: Option<String>,
    pub event_types: Vec<String>,
    pub is_active: bool,
    pub rate_limit: Option<i32>,
    pub github_signature: bool,
}

/// Inserts a new subscription.
pub async fn insert(db: impl PgExecutor<'_>, id: SubscriptionId, fields: &SubscriptionFields) -> sqlx::Result<SubscriptionRow> {
    sqlx::query_file_as!(
        SubscriptionRow,
        "sql/subscriptions/insert_subscription.sql",
        id.as_uuid(),
        fields.name,
        fields.target_url,
        fields.secret_key,
        &fields.event_types,
        fields.is_active,
        fields.rate_limit,
        fields.github_signature,
    )
    .fetch_one(db)
    .await
}

/// Reads one subscription, including a soft-deleted one.
pub async fn select(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/select_subscription.sql", id.as_uuid()).fetch_optional(db).await
}

/// Reads a page of live subscriptions after `cursor`.
pub async fn list(db: impl PgExecutor<'_>, cursor: Option<SubscriptionId>, limit: i64) -> sqlx::Result<Vec<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/list_subscriptions.sql", cursor.map(SubscriptionId::as_uuid), limit).fetch_all(db).await
}

/// Replaces a live subscription's fields; `None` if there is no live subscription `id`.
/// Replaces a subscription's fields; `revoke_previous_secrets` (the client set the secret)
/// also ends any rotation overlap.
pub async fn update(
    db: impl PgExecutor<'_>,
    id: SubscriptionId,
    fields: &SubscriptionFields,
    revoke_previous_secrets: bool,
) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_file_as!(
        SubscriptionRow,
        "sql/subscriptions/update_subscription.sql",
        id.as_uuid(),
        fields.name,
        fields.target_url,
        fields.secret_key,
        &fields.event_types,
        fields.is_active,
        fields.rate_limit,
        revoke_previous_secrets,
        fields.github_signature,
    )
    .fetch_optional(db)
    .await
}

/// Soft-deletes a live subscription; false if there was none.
pub async fn soft_delete(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<bool> {
    let deleted = sqlx::query_file!("sql/subscriptions/soft_delete_subscription.sql", id.as_uuid()).fetch_optional(db).await?;
    Ok(deleted.is_some())
}

/// Reads a live subscription and locks its row for the rest of the transaction.
pub async fn select_for_update(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/select_subscription_for_update.sql", id.as_uuid()).fetch_optional(db).await
}

/// Reads a subscription (deleted or not) and keeps it from changing until the transaction ends.
pub async fn select_for_share(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/select_subscription_for_share.sql", id.as_uuid()).fetch_optional(db).await
}

/// Whether a subscription is active and whether it is deleted (`None`: purged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionState {
    pub is_active: bool,
    pub deleted: bool,
}

pub async fn select_state(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<Option<SubscriptionState>> {
    sqlx::query_file_as!(SubscriptionState, "sql/subscriptions/select_subscription_state.sql", id.as_uuid()).fetch_optional(db).await
}

/// Takes an active subscription out of service; returns when, or `None` if it was inactive
/// or deleted already.
pub async fn disable(
    db: impl PgExecutor<'_>,
    id: SubscriptionId,
    reason: DisabledReason,
    attempted_target: Option<&str>,
) -> sqlx::Result<Option<OffsetDateTime>> {
    sqlx::query_file_scalar!("sql/subscriptions/disable_subscription.sql", id.as_uuid(), reason.as_str(), attempted_target)
        .fetch_optional(db)
        .await
}

/// Replaces the secret, keeping the old one valid for `overlap_seconds`.
pub async fn rotate_secret(
    db: impl PgExecutor<'_>,
    id: SubscriptionId,
    new_secret: &str,
    overlap_seconds: f64,
    keep_previous: bool,
) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/rotate_secret.sql", id.as_uuid(), new_secret, overlap_seconds, keep_previous)
        .fetch_optional(db)
        .await
}

/// Ids of the active subscriptions wanting an event that matches any of `patterns`.
pub async fn matching_event(db: impl PgExecutor<'_>, patterns: &[String]) -> sqlx::Result<Vec<SubscriptionId>> {
    let ids = sqlx::query_file_scalar!("sql/subscriptions/match_subscriptions_for_event.sql", patterns).fetch_all(db).await?;
    Ok(ids.into_iter().map(SubscriptionId::from).collect())
}

/// Ids of the active subscriptions whose filters name an operational event (one of
/// `patterns`); subscriptions without filters are not among them.
pub async fn matching_operational_event(db: impl PgExecutor<'_>, patterns: &[String]) -> sqlx::Result<Vec<SubscriptionId>> {
    let ids = sqlx::query_file_scalar!("sql/subscriptions/match_subscriptions_for_operational_event.sql", patterns).fetch_all(db).await?;
    Ok(ids.into_iter().map(SubscriptionId::from).collect())
}

/// Tells every instance (over NOTIFY, delivered at commit) that subscription `id` changed.
pub async fn notify_changed(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<()> {
    sqlx::query_file!("sql/subscriptions/notify_subscription_changed.sql", id.to_string()).execute(db).await?;
    Ok(())
}

/// Which subscriptions a dashboard list shows: all live ones, or those in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Active: delivering.
    Active,
    /// Paused by a client (inactive, not disabled by webhookd).
    Paused,
    /// Taken out of service by webhookd (410 Gone or sustained failure).
    Disabled,
}

impl StateFilter {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }
}

/// A prefix full-text query over names for user input: each run of letters and digits
/// becomes a word prefix (`acme:*`), all required. Everything else is dropped, so the input
/// cannot inject tsquery operators. `None` when no word is left.
pub fn name_query(input: &str) -> Option<String> {
    let words: Vec<String> = input
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(8)
        .map(|word| format!("{}:*", word.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" & "))
}

/// Reads a page of live subscriptions whose name matches `query` (see [`name_query`]),
/// optionally in one state, after `cursor`, through the name search index.
pub async fn search(
    db: impl PgExecutor<'_>,
    query: &str,
    state: Option<StateFilter>,
    cursor: Option<SubscriptionId>,
    limit: i64,
) -> sqlx::Result<Vec<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/search_subscriptions.sql", query, state.map(StateFilter::as_str), cursor.map(SubscriptionId::as_uuid), limit)
        .fetch_all(db)
        .await
}

/// Reads a page of live subscriptions, optionally in one state, after `cursor`.
pub async fn list_in_state(
    db: impl PgExecutor<'_>,
    state: Option<StateFilter>,
    cursor: Option<SubscriptionId>,
    limit: i64,
) -> sqlx::Result<Vec<SubscriptionRow>> {
    sqlx::query_file_as!(SubscriptionRow, "sql/subscriptions/list_subscriptions_in_state.sql", state.map(StateFilter::as_str), cursor.map(SubscriptionId::as_uuid), limit)
        .fetch_all(db)
        .await
}

/// A subscription disabled by webhookd or failing now, as the overview lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TroubledSubscription {
    pub id: SubscriptionId,
    pub name: Option<String>,
    pub target_url: String,
    pub disabled_reason: Option<DisabledReason>,
    pub disabled_at: Option<OffsetDateTime>,
    pub failing_since: Option<OffsetDateTime>,
    pub failed_in_streak: i32,
}

/// Reads up to `limit` live subscriptions that are disabled or failing, most recent first.
pub async fn list_troubled(db: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<TroubledSubscription>> {
    sqlx::query_file_as!(TroubledSubscription, "sql/subscriptions/list_troubled_subscriptions.sql", limit).fetch_all(db).await
}

/// Revokes every portal link issued so far for a live subscription; false if there is none.
pub async fn revoke_portal_links(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<bool> {
    let row = sqlx::query_file!("sql/subscriptions/revoke_portal_links.sql", id.as_uuid()).fetch_optional(db).await?;
    Ok(row.is_some())
}

/// What a portal link is checked against.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct PortalLinkState {
    /// The subscription is not deleted.
    pub live: bool,
    /// Links issued at or before this instant are revoked.
    pub portal_links_valid_after: Option<OffsetDateTime>,
}

/// The database's clock, if `id` is a live subscription: when a link for it is issued.
pub async fn portal_link_issue_time(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<Option<OffsetDateTime>> {
    sqlx::query_file_scalar!("sql/subscriptions/select_portal_link_issue_time.sql", id.as_uuid()).fetch_optional(db).await
}

/// Reads what a portal link for subscription `id` is checked against (`None`: no such id).
pub async fn portal_link_state(db: impl PgExecutor<'_>, id: SubscriptionId) -> sqlx::Result<Option<PortalLinkState>> {
    sqlx::query_file_as!(PortalLinkState, "sql/subscriptions/select_portal_links_valid_after.sql", id.as_uuid()).fetch_optional(db).await
}
