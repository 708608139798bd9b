//! `Idempotency-Key` handling shared by ingest and fan-out: the first request's work and
//! its response are committed together; repeats within 24 hours get that response back.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use crate::db::idempotency::{self, KeyState};
use crate::error::ApiError;

/// Longest accepted key.
const MAX_KEY_LEN: usize = 255;

/// A validated `Idempotency-Key` header.
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Absent or empty: no key. Otherwise 1 to 255 visible ASCII characters.
    pub fn parse(header: Option<String>) -> Result<Option<Self>, ApiError> {
        let Some(key) = header.filter(|k| !k.is_empty()) else { return Ok(None) };
        if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            ));
        }
        Ok(Some(Self(key)))
    }
}

/// The outcome of reserving a key.
pub enum Reservation<T> {
    /// First use: do the work in this transaction, then [`commit`] it with its response.
    Fresh(Transaction<'static, Postgres>),
    /// A repeat of the same request: answer with the first response.
    Replay(T),
}

/// Reserves (scope, key) for a request hashing to `request_hash`. A concurrent duplicate
/// waits for the first to commit and then gets its response; a repeat with a different
/// request gets 409 `idempotency_key_reused`.
pub async fn reserve<T: DeserializeOwned>(
    pool: &PgPool,
    scope: &str,
    key: &IdempotencyKey,
    request_hash: &[u8],
) -> Result<Reservation<T>, ApiError> {
    let mut tx = pool.begin().await?;
    match idempotency::reserve(&mut tx, scope, &key.0, request_hash).await? {
        KeyState::Reserved => Ok(Reservation::Fresh(tx)),
        KeyState::Replay(stored) => {
            tx.rollback().await?;
            let response = serde_json::from_str(&stored).map_err(|error| {
                tracing::error!(%error, "stored idempotent response is unreadable");
                ApiError::internal()
            })?;
            Ok(Reservation::Replay(response))
        }
        KeyState::Mismatch => Err(ApiError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used in the last 24 hours for a different request",
        )),
    }
}

/// Stores `response` for the reserved key and commits the work done in `tx` with it.
pub async fn commit<T: Serialize>(
    mut tx: Transaction<'static, Postgres>,
    scope: &str,
    key: &IdempotencyKey,
    response: &T,
) -> Result<(), ApiError> {
    let response = serde_json::to_string(response).map_err(|error| {
        tracing::error!(%error, "cannot serialise a response for its idempotency key");
        ApiError::internal()
    })?;
    idempotency::store_response(&mut tx, scope, &key.0, &response).await?;
    tx.commit().await?;
    Ok(())
}
