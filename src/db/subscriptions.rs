//! Statements on `subscriptions`.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

/// A stored subscription, secret included: never serialise this type to clients.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub name: Option<String>,
    pub target_url: String,
    pub secret_key: Option<String>,
    pub event_types: Vec<String>,
    pub is_active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
}

/// The writable fields of a subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionFields {
    pub name: Option<String>,
    pub target_url: String,
    pub secret_key: Option<String>,
    pub event_types: Vec<String>,
    pub is_active: bool,
}

/// Inserts a new subscription.
pub async fn insert(db: impl PgExecutor<'_>, id: Uuid, fields: &SubscriptionFields) -> sqlx::Result<SubscriptionRow> {
    sqlx::query_as(include_str!("../../sql/subscriptions/insert_subscription.sql"))
        .bind(id)
        .bind(&fields.name)
        .bind(&fields.target_url)
        .bind(&fields.secret_key)
        .bind(&fields.event_types)
        .bind(fields.is_active)
        .fetch_one(db)
        .await
}

/// Reads one subscription, including a soft-deleted one.
pub async fn select(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_as(include_str!("../../sql/subscriptions/select_subscription.sql"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Reads a page of live subscriptions after `cursor`.
pub async fn list(db: impl PgExecutor<'_>, cursor: Option<Uuid>, limit: i64) -> sqlx::Result<Vec<SubscriptionRow>> {
    sqlx::query_as(include_str!("../../sql/subscriptions/list_subscriptions.sql"))
        .bind(cursor)
        .bind(limit)
        .fetch_all(db)
        .await
}

/// Replaces a live subscription's fields; `None` if there is no live subscription `id`.
pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    fields: &SubscriptionFields,
) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_as(include_str!("../../sql/subscriptions/update_subscription.sql"))
        .bind(id)
        .bind(&fields.name)
        .bind(&fields.target_url)
        .bind(&fields.secret_key)
        .bind(&fields.event_types)
        .bind(fields.is_active)
        .fetch_optional(db)
        .await
}

/// Soft-deletes a live subscription; false if there was none.
pub async fn soft_delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query(include_str!("../../sql/subscriptions/soft_delete_subscription.sql"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(deleted.is_some())
}

/// Reads a live subscription and locks its row for the rest of the transaction.
pub async fn select_for_update(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<SubscriptionRow>> {
    sqlx::query_as(include_str!("../../sql/subscriptions/select_subscription_for_update.sql"))
        .bind(id)
        .fetch_optional(db)
        .await
}
