//! `GET /health`: 200 while PostgreSQL answers, 503 while it does not (a readiness probe).
//! `GET /livez`: 200 whenever the process answers HTTP at all, whatever the database's
//! state (a liveness probe: a restart cures a wedged process, not a database outage). No
//! auth on either, so load balancers and orchestrators can probe them.

use std::time::Duration;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use time::OffsetDateTime;

use super::{ApiContext, ApiTags};
use crate::db;
use crate::maintenance::missing_partitions;
use crate::error::ApiError;

#[derive(Debug, Object)]
pub struct Health {
    /// `ok`, or `degraded` when a check below needs an operator's attention.
    pub status: String,
    pub checks: HealthChecks,
}

#[derive(Debug, Object)]
pub struct HealthChecks {
    /// `ok` when the database answers.
    pub database: String,
    /// `ok` when the attempt partitions for today and the next two days exist; otherwise
    /// the missing ones (maintenance creates them; inserts would fail without them).
    pub attempt_partitions: String,
}

#[derive(Debug, Object)]
pub struct Liveness {
    /// Always `ok`: an answer at all is the signal.
    pub status: String,
}

#[derive(ApiResponse)]
enum LivenessResponse {
    /// The process is serving requests.
    #[oai(status = 200)]
    Ok(Json<Liveness>),
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The service and its database answer.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

pub struct HealthApi {
    context: ApiContext,
}

impl HealthApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Is the process serving? Never reads the database.
    #[oai(path = "/livez", method = "get")]
    async fn livez(&self) -> LivenessResponse {
        LivenessResponse::Ok(Json(Liveness { status: "ok".into() }))
    }

    /// Is the service up and its database reachable?
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Result<HealthResponse, ApiError> {
        // Through `db::bounded`: a probe given up records the silence before its connection
        // goes back to the pool, which then checks it within a second.
        let probe = missing_partitions(&self.context.pool, OffsetDateTime::now_utc());
        match db::bounded(Duration::from_secs(2), probe).await {
            Ok(missing) => {
                let partitions = if missing.is_empty() {
                    "ok".to_owned()
                } else {
                    tracing::error!(?missing, "attempt partitions missing");
                    format!("missing: {}", missing.join(", "))
                };
                let status = if missing.is_empty() { "ok" } else { "degraded" };
                Ok(HealthResponse::Ok(Json(Health {
                    status: status.into(),
                    checks: HealthChecks { database: "ok".into(), attempt_partitions: partitions },
                })))
            }
            Err(error) => {
                tracing::warn!(%error, "health check: database unavailable");
                Err(ApiError::unavailable())
            }
        }
    }
}
