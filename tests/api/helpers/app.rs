//! The service in-process on a random port, with its own database and test settings.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use webhookd::config::{Secret, Settings};
use webhookd::startup::Application;

use super::{fresh_database, ADMIN_TOKEN};

/// Settings for a test app: short schedules and timeouts, private targets allowed, then
/// `overrides` (environment variable, value), parsed exactly as the binary parses them.
pub fn test_settings(database_url: &str, overrides: &[(&str, &str)]) -> Settings {
    let defaults = [
        ("DATABASE_URL", database_url),
        ("WEBHOOKD_LISTEN", "127.0.0.1:0"),
        ("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN),
        ("WEBHOOKD_RETRY_SCHEDULE", "100ms,100ms"),
        ("WEBHOOKD_RETRY_JITTER", "0"),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "2s"),
        ("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "true"),
        ("WEBHOOKD_POLL_INTERVAL", "200ms"),
        ("WEBHOOKD_SHUTDOWN_GRACE", "2s"),
        ("WEBHOOKD_DB_POOL_SIZE", "8"),
    ];
    let variables: Vec<(&str, &str)> = defaults.iter().chain(overrides).copied().collect();
    Settings::from_variables(&variables).expect("test settings are valid")
}

/// A running app on a random port, with its own database.
pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Changes whenever the delivery engine commits a write to deliveries.
    progress: watch::Receiver<u64>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// An app with `overrides` of the test settings (see [`test_settings`]).
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let database_url = fresh_database().await;
    spawn_app_on(&database_url, overrides).await
}

/// Starts an app on an existing database (several apps may share one).
pub async fn spawn_app_on(database_url: &str, overrides: &[(&str, &str)]) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        webhookd::telemetry::init(webhookd::config::LogFormat::Pretty);
    }
    let settings = test_settings(database_url, overrides);
    let pool = webhookd::db::connect_lazy(database_url, settings.database.pool_size, settings.database.statement_deadline).unwrap();
    let admin_token = settings.admin_token.clone().unwrap_or_else(|| Secret::new(ADMIN_TOKEN));
    let application = Application::build(settings, pool.clone(), admin_token).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let progress = application.progress();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    TestApp { address, pool, http: http_client(), shutdown, running: Some(running), progress }
}

/// A plain HTTP client for talking to the app.
pub fn http_client() -> reqwest::Client {
    webhookd::delivery::install_tls_provider();
    reqwest::Client::new()
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends a request with the admin token; a JSON `body` is serialised.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(serde_json::to_vec(&body).unwrap());
        }
        read_answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }

    /// Creates a subscription to `target_url` with extra fields; returns its id.
    pub async fn create_subscription(&self, target_url: &str, extra: Value) -> Uuid {
        let mut body = serde_json::json!({ "target_url": target_url });
        if let Value::Object(fields) = extra {
            body.as_object_mut().unwrap().extend(fields);
        }
        webhookd_test_support::create_subscription(&self.http, &self.address, ADMIN_TOKEN, &body).await.unwrap()
    }

    /// Ingests raw bytes for a subscription.
    pub async fn ingest_bytes(&self, subscription_id: Uuid, body: Vec<u8>, event_type: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(self.url(&format!("/ingest/{subscription_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body);
        if let Some(event_type) = event_type {
            request = request.header("X-Webhook-Event", event_type);
        }
        read_answer(request.send().await.unwrap()).await
    }

    /// Ingests and expects 202; returns the delivery id.
    pub async fn ingest(&self, subscription_id: Uuid, body: &str) -> Uuid {
        let answer = self.ingest_bytes(subscription_id, body.as_bytes().to_vec(), None).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.body["delivery_id"].as_str().unwrap().parse().unwrap()
    }

    /// Reads the delivery again each time the engine writes, until `done` holds for it, or
    /// panics after `limit`.
    pub async fn wait_for_delivery(&self, id: Uuid, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let read = async || {
            let answer = self.get(&format!("/deliveries/{id}")).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            if done(&answer.body) { Ok(answer.body) } else { Err(answer.body) }
        };
        self.wait_for_progress(limit, read).await.unwrap_or_else(|last| panic!("delivery did not get there in {limit:?}: {last:#}"))
    }

    /// Runs the queue to quiescence: returns once no delivery is unfinished (parked ones
    /// aside), looking again each time the engine writes; panics after `limit`.
    pub async fn deliver_all_pending(&self, limit: Duration) {
        let count = async || {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM deliveries WHERE status IN ('queued', 'retrying', 'delivering') AND next_attempt_at < 'infinity'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if open == 0 { Ok(()) } else { Err(open) }
        };
        if let Err(open) = self.wait_for_progress(limit, count).await {
            panic!("{open} deliveries still unfinished after {limit:?}");
        }
    }

    /// Runs `check` now and after each write of the engine until it succeeds, for at most
    /// `limit`; returns its last error otherwise. A write between two checks is never missed
    /// (the receiver remembers it). A check also runs every second without one, for states
    /// the engine does not write.
    pub async fn wait_for_progress<T, E>(&self, limit: Duration, mut check: impl AsyncFnMut() -> Result<T, E>) -> Result<T, E> {
        let deadline = Instant::now() + limit;
        let mut progress = self.progress.clone();
        loop {
            progress.borrow_and_update();
            let last = match check().await {
                Ok(value) => return Ok(value),
                Err(last) => last,
            };
            let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            if wait.is_zero() {
                return Err(last);
            }
            let _ = tokio::time::timeout(wait, progress.changed()).await;
        }
    }

    /// Waits until the delivery is finished (succeeded or failed).
    pub async fn wait_until_finished(&self, id: Uuid, limit: Duration) -> Value {
        self.wait_for_delivery(id, limit, |d| d["status"] == "succeeded" || d["status"] == "failed").await
    }

    /// Stops the app the way a signal does, and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn read_answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer { status, body }
}
