//! Statements on `idempotency_keys`: the first response to a request with an
//! `Idempotency-Key`, replayed for repeats within 24 hours.

use sqlx::PgConnection;

/// What a key means for the request at hand.
#[derive(Debug)]
pub enum KeyState {
    /// First use (or the old use expired): the caller does the work and stores its response.
    Reserved,
    /// Seen with the same request: replay this response.
    Replay(String),
    /// Seen with a different request.
    Mismatch,
}

/// Reserves `key` in `scope` for a request hashing to `request_hash`, inside the caller's
/// transaction. A concurrent holder of the same key makes this wait until it commits.
///
/// The key found by the insert can be gone by the time it is read: the maintenance sweep
/// deletes the keys past their 24 hours by the instance's clock, while the request's own
/// delete of an expired key judges by the database's. The key is then reserved afresh
/// (once: it cannot expire twice).
pub async fn reserve(db: &mut PgConnection, scope: &str, key: &str, request_hash: &[u8]) -> sqlx::Result<KeyState> {
    let mut tries = 0;
    loop {
        tries += 1;
        sqlx::query_file!("sql/idempotency/delete_expired_key.sql", scope, key).execute(&mut *db).await?;
        let inserted = sqlx::query_file!("sql/idempotency/insert_key.sql", scope, key, request_hash).fetch_optional(&mut *db).await?;
        if inserted.is_some() {
            return Ok(KeyState::Reserved);
        }
        let Some(stored) = sqlx::query_file!("sql/idempotency/select_key.sql", scope, key).fetch_optional(&mut *db).await? else {
            if tries < 2 {
                continue;
            }
            return Err(sqlx::Error::RowNotFound);
        };
        if stored.request_hash != request_hash {
            return Ok(KeyState::Mismatch);
        }
        return Ok(KeyState::Replay(stored.response));
    }
}

/// Stores the response to replay for a reserved key.
pub async fn store_response(db: &mut PgConnection, scope: &str, key: &str, response: &str) -> sqlx::Result<()> {
    sqlx::query_file!("sql/idempotency/update_response.sql", scope, key, response).execute(db).await?;
    Ok(())
}
