//! Prometheus metrics: what an operator graphs and alerts on. One [`Metrics`] per process,
//! shared by the API, the HTTP server and the delivery engine, rendered by `GET /metrics`.
//!
//! Labels are bounded by construction: outcomes, queue statuses, HTTP route templates (never
//! a raw path) and status classes. Subscription ids never become labels.
//!
//! The queue gauges come from one indexed count over the unfinished deliveries, run when a
//! scrape (or the dashboard's overview, which shows the same reading) finds the last one
//! older than [`queue_reading_spacing`]: a process nobody scrapes runs none, and many
//! scrapers cost one query per interval.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::db;
use crate::db::deliveries::QueueDepth;
use crate::domain::lifecycle::{AttemptOutcome, DeliveryStatus, DisabledReason};

/// The queue gauges are read from the database at most this often per process.
pub const QUEUE_REFRESH: Duration = Duration::from_secs(5);

/// How many times its own duration a queue reading waits before the next one.
const QUEUE_READING_SHARE: u32 = 100;

/// Longest a queue reading stays current, however slow it was.
const QUEUE_READING_MAX_AGE: Duration = Duration::from_secs(60);

/// How long a queue reading whose statement took `took` stays current: [`QUEUE_REFRESH`],
/// or longer when the reading was slow. The count visits every waiting row (about a
/// quarter of a microsecond each, measured here, parallel workers aside), so a dead
/// endpoint's backlog of millions makes one reading cost a second of database CPU; spaced
/// by a hundred times its duration, reading the queue costs a process at most about 1 % of
/// a database core up to backlogs of about 5,000,000 rows, and a reading is never older
/// than a minute (an alert on the oldest due age must not go blind). A 2,000,000-row
/// backlog read in 0.35 s is read every 35 s.
pub fn queue_reading_spacing(took: Duration) -> Duration {
    QUEUE_REFRESH.max(took * QUEUE_READING_SHARE).min(QUEUE_READING_MAX_AGE)
}

/// The queue as last read, shared by the gauges and the dashboard's overview.
#[derive(Debug, Clone, Copy)]
pub struct QueueReading {
    pub depth: QueueDepth,
    /// When it was read, for the dashboard to say how old its figures are.
    pub read_at: time::OffsetDateTime,
    taken: Instant,
    took: Duration,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The statuses of unfinished deliveries, as reported by `webhookd_queue_depth`.
const QUEUE_STATUSES: [DeliveryStatus; 3] = [DeliveryStatus::Queued, DeliveryStatus::Retrying, DeliveryStatus::Delivering];

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    ingested: Counter,
    attempts: Family<OutcomeLabels, Counter>,
    attempt_duration: Histogram,
    delivery_lag: Histogram,
    queue_depth: Family<StatusLabels, Gauge>,
    queue_oldest_due_age: Gauge<f64, AtomicU64>,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    http_connections: Gauge,
    http_max_connections: Gauge,
    api_pool: PoolGauges,
    writer_pool: PoolGauges,
    subscriptions_disabled: Family<ReasonLabels, Counter>,
    recovered: Counter,
    /// The last queue reading; the lock also serialises the readings.
    queue: Mutex<Option<QueueReading>>,
}

/// The state of one connection pool, read at each scrape.
#[derive(Default)]
struct PoolGauges {
    open: Gauge,
    idle: Gauge,
    max: Gauge,
}

impl PoolGauges {
    /// Registers `{name}_connections`, `{name}_idle_connections` and `{name}_max_connections`.
    fn register(&self, registry: &mut Registry, name: &str, pool: &str) {
        registry.register(format!("{name}_connections"), format!("Open connections of {pool}"), self.open.clone());
        registry.register(format!("{name}_idle_connections"), format!("Idle connections of {pool}"), self.idle.clone());
        registry.register(format!("{name}_max_connections"), format!("Size limit of {pool}"), self.max.clone());
    }

    fn read(&self, pool: &PgPool) {
        self.open.set(i64::from(pool.size()));
        self.idle.set(pool.num_idle() as i64);
        self.max.set(i64::from(pool.options().get_max_connections()));
    }
}

/// Buckets for HTTP attempts and requests: 1 ms to about 33 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("webhookd");
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        registry.register("build_info", "Build of this process (always 1)", build_info);

        let metrics = Self {
            ingested: Counter::default(),
            attempts: Family::default(),
            attempt_duration: Histogram::new(latency_buckets()),
            // Lag is milliseconds when healthy and minutes when workers fall behind.
            delivery_lag: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 4.0, 12)),
            queue_depth: Family::default(),
            queue_oldest_due_age: Gauge::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            http_connections: Gauge::default(),
            http_max_connections: Gauge::default(),
            api_pool: PoolGauges::default(),
            writer_pool: PoolGauges::default(),
            subscriptions_disabled: Family::default(),
            recovered: Counter::default(),
            queue: Mutex::new(None),
            registry,
        };
        metrics.register_all()
    }

    fn register_all(mut self) -> Arc<Self> {
        let r = &mut self.registry;
        r.register("ingested", "Webhooks accepted for delivery (ingest and event fan-out)", self.ingested.clone());
        r.register("delivery_attempts", "HTTP delivery attempts by outcome", self.attempts.clone());
        r.register(
            "delivery_attempt_duration_seconds",
            "Duration of one HTTP delivery attempt",
            self.attempt_duration.clone(),
        );
        r.register(
            "delivery_lag_seconds",
            "Time from when a delivery was due to the start of its attempt",
            self.delivery_lag.clone(),
        );
        r.register("queue_depth", "Unfinished deliveries by status (read every 5 s, less often when reading takes long)", self.queue_depth.clone());
        r.register(
            "queue_oldest_due_age_seconds",
            "Age of the oldest due delivery not yet being attempted (0 when none)",
            self.queue_oldest_due_age.clone(),
        );
        r.register("http_requests", "HTTP requests by route template and status class", self.http_requests.clone());
        r.register("http_request_duration_seconds", "HTTP request duration by route template", self.http_duration.clone());
        r.register("http_connections", "Open client connections", self.http_connections.clone());
        r.register("http_max_connections", "Most client connections served at once", self.http_max_connections.clone());
        self.api_pool.register(r, "db_pool", "the PostgreSQL pool (WEBHOOKD_DB_POOL_SIZE)");
        self.writer_pool.register(r, "db_writer_pool", "the writer loops' PostgreSQL pool (ingest writer, flusher, outcome recorder)");
        r.register(
            "subscriptions_disabled",
            "Subscriptions webhookd took out of service, by reason (endpoint_gone, failing)",
            self.subscriptions_disabled.clone(),
        );
        r.register("recovered_deliveries", "Failed deliveries re-queued by bulk recoveries", self.recovered.clone());
        for reason in [DisabledReason::EndpointGone, DisabledReason::Failing] {
            self.subscriptions_disabled.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc_by(0); // shown at 0 before the first
        }
        for status in QUEUE_STATUSES {
            self.queue_depth.get_or_create(&StatusLabels { status: status.as_str() }).set(0);
        }
        Arc::new(self)
    }

    pub fn webhooks_ingested(&self, count: u64) {
        self.ingested.inc_by(count);
    }

    /// One finished HTTP attempt: how it ended, how long it took, and how late it started.
    pub fn attempt_finished(&self, outcome: AttemptOutcome, duration: Duration, lag: Duration) {
        self.attempts.get_or_create(&OutcomeLabels { outcome: outcome.as_str() }).inc();
        self.attempt_duration.observe(duration.as_secs_f64());
        self.delivery_lag.observe(lag.as_secs_f64());
    }

    /// webhookd disabled a subscription.
    pub fn subscription_disabled(&self, reason: DisabledReason) {
        self.subscriptions_disabled.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc();
    }

    /// A recovery batch re-queued `count` deliveries.
    pub fn deliveries_recovered(&self, count: u64) {
        self.recovered.inc_by(count);
    }

    /// One answered HTTP request. `route` is a template, never a raw path.
    pub fn http_request(&self, method: &str, route: &'static str, status: u16, duration: Duration) {
        let method = known_method(method);
        let labels = RequestLabels { method, route, status: status_class(status) };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&RouteLabels { method, route }).observe(duration.as_secs_f64());
    }

    pub fn connection_opened(&self) {
        self.http_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.http_connections.dec();
    }

    pub fn set_max_connections(&self, max: usize) {
        self.http_max_connections.set(max as i64);
    }

    /// Renders every metric in the Prometheus text format 0.0.4, reading the pool's state now
    /// and the queue's when the last reading is no longer current ([`Metrics::queue`]). A
    /// failed queue reading keeps the last values.
    pub async fn render(&self, pool: &PgPool, writers: &PgPool) -> String {
        self.api_pool.read(pool);
        self.writer_pool.read(writers);
        if let Err(error) = self.queue(pool).await {
            tracing::warn!(%error, "cannot read the queue depth for metrics");
        }
        let mut text = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err() {
            let _ = writeln!(text, "# encoding failed");
        }
        text
    }

    /// The queue as last read, read again first if that reading is older than its
    /// [`queue_reading_spacing`]. A new reading also sets the gauges.
    pub async fn queue(&self, pool: &PgPool) -> sqlx::Result<QueueReading> {
        let mut last = self.queue.lock().await;
        if let Some(reading) = *last
            && reading.taken.elapsed() < queue_reading_spacing(reading.took)
        {
            return Ok(reading);
        }
        // Only the statement is timed: a wait for a pooled connection says nothing of its cost.
        let mut connection = pool.acquire().await?;
        let started = Instant::now();
        let depth = db::deliveries::queue_depth(&mut *connection).await?;
        let taken = Instant::now();
        let reading = QueueReading { depth, read_at: time::OffsetDateTime::now_utc(), taken, took: taken - started };
        for (status, count) in QUEUE_STATUSES.into_iter().zip([depth.queued, depth.retrying, depth.delivering]) {
            self.queue_depth.get_or_create(&StatusLabels { status: status.as_str() }).set(count);
        }
        self.queue_oldest_due_age.set(depth.oldest_due_age_seconds);
        *last = Some(reading);
        Ok(reading)
    }
}

/// The method as a label: anything but the standard methods counts as `other`, so a client
/// inventing methods cannot grow the label set.
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("other")
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_queue_reading_is_kept_a_hundred_times_as_long_as_it_took() {
        assert_eq!(queue_reading_spacing(Duration::from_millis(2)), QUEUE_REFRESH);
        assert_eq!(queue_reading_spacing(Duration::from_millis(50)), QUEUE_REFRESH);
        assert_eq!(queue_reading_spacing(Duration::from_millis(350)), Duration::from_secs(35));
        assert_eq!(queue_reading_spacing(Duration::from_secs(3)), Duration::from_secs(60), "never older than a minute");
    }
}
