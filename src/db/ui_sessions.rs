//! Statements on `ui_sessions`, the dashboard's login sessions (see migration 30 for why
//! they are rows). Tokens are stored as their SHA-256 only.

use sqlx::PgExecutor;

/// Starts a session lasting `seconds`.
pub async fn insert(db: impl PgExecutor<'_>, token_hash: &[u8], seconds: f64) -> sqlx::Result<()> {
    sqlx::query_file!("sql/ui_sessions/insert_session.sql", token_hash, seconds).execute(db).await?;
    Ok(())
}

/// Whether a session exists and has not expired.
pub async fn is_live(db: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<bool> {
    sqlx::query_file_scalar!("sql/ui_sessions/session_is_live.sql", token_hash).fetch_one(db).await
}

/// Ends a session.
pub async fn delete(db: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query_file!("sql/ui_sessions/delete_session.sql", token_hash).execute(db).await?;
    Ok(())
}

/// Removes expired sessions; returns how many.
pub async fn delete_expired(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    Ok(sqlx::query_file!("sql/ui_sessions/delete_expired_sessions.sql").execute(db).await?.rows_affected())
}
