//! `GET /health`: 200 while PostgreSQL answers, 503 while it does not. No auth, so load
//! balancers and orchestrators can probe it.

use std::time::Duration;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiContext, ApiTags};
use crate::error::ApiError;

#[derive(Debug, Object)]
pub struct Health {
    /// Always `ok` in a 200 answer.
    pub status: String,
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
    /// Is the service up and its database reachable?
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Result<HealthResponse, ApiError> {
        let probe = sqlx::query("SELECT 1").execute(&self.context.pool);
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(_)) => Ok(HealthResponse::Ok(Json(Health { status: "ok".into() }))),
            Ok(Err(error)) => {
                tracing::warn!(%error, "health check: database unavailable");
                Err(ApiError::unavailable())
            }
            Err(_) => Err(ApiError::unavailable()),
        }
    }
}
