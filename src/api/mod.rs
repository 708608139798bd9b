//! The HTTP API: one `#[OpenApi]` struct per resource, composed into one service with
//! Swagger UI at `/docs` and the document at `/openapi.json`.

mod auth;
mod body;
mod deadline;
pub(crate) mod deliveries;
mod events;
mod front;
mod group_commit;
mod health;
mod idempotency;
mod ingest;
mod metrics;
mod recoveries;
mod tools;
pub(crate) mod subscriptions;

use std::sync::Arc;

use poem::{Endpoint, Route};
use poem_openapi::OpenApiService;
use sqlx::PgPool;

use crate::config::{Secret, Settings};
use crate::delivery::Waker;
use crate::domain::SubscriptionId;
use crate::metrics::Metrics;
use crate::secrets::Keyring;
use crate::error::ApiError;
use crate::subscription_cache::SubscriptionCache;
use crate::ui::portal_link::PortalLinks;

pub use auth::{tokens_match, AdminToken};
use metrics::RouteTemplates;
pub use group_commit::GroupCommit;

/// What every handler may use.
#[derive(Clone)]
pub struct ApiContext {
    pub pool: PgPool,
    /// The ingest writer's, its flusher's and the outcome recorder's pool (`db::connect_writers`).
    pub writers: PgPool,
    pub settings: Arc<Settings>,
    pub subscriptions: SubscriptionCache,
    pub waker: Waker,
    pub group_commit: GroupCommit,
    pub metrics: Arc<Metrics>,
    /// Encrypts secrets at rest when `WEBHOOKD_ENCRYPTION_KEY` is set.
    pub keyring: Option<Arc<Keyring>>,
    /// Signs and checks subscriber portal links (a random key shared through the database).
    pub portal_links: Arc<PortalLinks>,
}

impl ApiContext {
    /// A secret of subscription `owner` as it is to be stored: encrypted when a key is configured.
    pub fn seal(&self, owner: SubscriptionId, secret: &str) -> String {
        match &self.keyring {
            Some(keyring) => keyring.seal(owner, secret),
            None => secret.to_owned(),
        }
    }
}

/// The OpenAPI service over every resource.
pub fn openapi_service(context: &ApiContext) -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    let apis = (
        subscriptions::SubscriptionsApi::new(context.clone()),
        ingest::IngestApi::new(context.clone()),
        deliveries::DeliveriesApi::new(context.clone()),
        events::EventsApi::new(context.clone()),
        recoveries::RecoveriesApi::new(context.clone()),
        tools::ToolsApi,
        health::HealthApi::new(context.clone()),
        metrics::MetricsApi::new(context.clone()),
    );
    OpenApiService::new(apis, "webhookd", env!("CARGO_PKG_VERSION"))
        .description(
            "Webhook delivery service. Producers POST webhooks; webhookd stores each durably \
             in PostgreSQL, answers 202, and delivers it to the subscriber's URL with retries. \
             Every endpoint except /health, /livez, /docs and /openapi.json needs \
             `Authorization: Bearer <admin token>`. Errors answer \
             `{\"error\": \"<code>\", \"message\": \"...\"}`.",
        )
}

/// All routes: the API, its explorer and document, trailing slashes accepted.
pub fn routes(context: ApiContext, admin_token: Secret) -> impl Endpoint<Output = poem::Response> {
    let service = openapi_service(&context);
    let explorer = service.swagger_ui();
    let document = service.spec_endpoint();
    let routes = Arc::new(RouteTemplates::from_openapi(&service.spec(), &["/docs", "/openapi.json"]));
    // Past this, a request answers 503 (deadline.rs): its body's time, then its database's.
    let limit = context.settings.http.body_timeout + context.settings.database.statement_deadline;
    let metrics = context.metrics.clone();
    let (dashboard, portal) = crate::ui::routes(context.clone(), admin_token.clone());
    let inner = Route::new()
        .nest("/docs", explorer)
        .at("/openapi.json", document)
        .nest("/ui", dashboard)
        .nest("/portal", portal)
        .nest("/", service);
    front::Front { inner, limit, metrics, routes, admin_token: AdminToken(Arc::new(admin_token)) }
}

/// Checks a `limit` query parameter: `default` when absent, 1..=`max` otherwise.
fn page_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {max}, not {n}"))),
    }
}

/// Groups of operations in the explorer.
#[derive(poem_openapi::Tags)]
enum ApiTags {
    /// Endpoints that receive webhooks.
    Subscriptions,
    /// Accepting webhooks for delivery.
    Ingest,
    /// What happened to each webhook and each attempt.
    Deliveries,
    /// Fan-out of one event to every subscription that wants it.
    Events,
    /// Re-queueing a subscription's failed deliveries in bulk.
    Recovery,
    /// Helpers for producers.
    Tools,
    /// Liveness of the service and its database.
    Health,
}
