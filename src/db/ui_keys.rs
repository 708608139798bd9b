//! Statements on `ui_keys`, the random keys the instances share (see migration 31).

use sqlx::PgExecutor;

/// The key named `name`, stored as `candidate` if there is none yet.
pub async fn get_or_create(db: impl PgExecutor<'_>, name: &str, candidate: &[u8; 32]) -> sqlx::Result<Vec<u8>> {
    sqlx::query_file_scalar!("sql/ui_keys/get_or_create_key.sql", name, candidate.as_slice()).fetch_one(db).await
}
