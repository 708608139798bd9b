//! Statements on `ui_sessions`, the dashboard's login sessions (see migration 30 for why
//! they are rows). Tokens are stored as their SHA-256 only.

use sqlx::PgExecutor;

/// Starts a session lasting `seconds`, opened with the admin token of `admin_fingerprint`.
pub async fn insert(db: impl PgExecutor<'_>, token_hash: &[u8], seconds: f64, admin_fingerprint: &[u8]) -> sqlx::Result<()> {
    sqlx::query_file!("sql/ui_sessions/insert_session.sql", token_hash, seconds, admin_fingerprint).execute(db).await?;
    Ok(())
}

/// Whether a session exists, has not expired, and was opened with the current admin token.
pub async fn is_live(db: impl PgExecutor<'_>, token_hash: &[u8], admin_fingerprint: &[u8]) -> sqlx::Result<bool> {
    sqlx::query_file_scalar!("sql/ui_sessions/session_is_live.sql", token_hash, admin_fingerprint).fetch_one(db).await
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
