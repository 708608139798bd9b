//! The test harness: one throwaway PostgreSQL cluster per test run (started like the
//! embedded default database), a fresh database per test cloned from a migrated template,
//! the app on a random port, and real HTTP receivers on 127.0.0.1.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, web::Data, Body, EndpointExt, Request, Response, Route, Server};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use webhookd::config::{Secret, Settings};
use webhookd::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use webhookd::startup::Application;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const TEMPLATE: &str = "webhookd_template";

/// Connection details of the shared test cluster.
pub struct TestCluster {
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
}

impl TestCluster {
    pub fn url_for(&self, database: &str) -> String {
        (self.url_for)(database)
    }
}

/// Starts the cluster once per test binary. It runs from a thread that never ends, so it
/// lives exactly as long as the test process (it shuts down when the process exits).
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let root = std::env::temp_dir().join("webhookd-tests");
            remove_stale_clusters(&root);
            let directory = root.join(std::process::id().to_string()).join("postgres");
            let settings = [
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("max_connections", "400"),
                // Lets tests count the statements the service runs.
                ("shared_preload_libraries", "pg_stat_statements"),
            ];
            let options = ClusterOptions {
                directory,
                server_settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                port: None,
            };
            let cluster = EmbeddedPostgres::start(&options).expect("test PostgreSQL starts");
            let postgres_url = cluster.url_for("postgres");
            let base = cluster.url_for("");
            prepare_template(&postgres_url, &base);
            sender.send(base).expect("test thread waits");
            // Keep the cluster (and this thread, which the server's lifetime is tied to) alive.
            let _cluster = cluster;
            loop {
                std::thread::park();
            }
        });
        let base = receiver.recv().expect("cluster thread reports");
        TestCluster { url_for: Box::new(move |database| format!("{base}{database}")) }
    })
}

fn prepare_template(postgres_url: &str, base: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        webhookd::embedded_postgres::create_database_if_missing(postgres_url, TEMPLATE).await.unwrap();
        let pool = PgPool::connect(&format!("{base}{TEMPLATE}")).await.unwrap();
        webhookd::db::migrate(&pool).await.expect("migrations apply");
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await.unwrap();
        pool.close().await;
    });
}

/// Removes clusters left by earlier test runs whose process is gone.
fn remove_stale_clusters(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let pid: Option<i32> = entry.file_name().to_str().and_then(|n| n.parse().ok());
        if let Some(pid) = pid
            && unsafe { libc::kill(pid, 0) } != 0
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Creates an empty, migrated database for one test; returns its URL.
pub async fn fresh_database() -> String {
    let cluster = cluster();
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&cluster.url_for("postgres")).await.unwrap();
    let statement = format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}");
    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    cluster.url_for(&name)
}

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
    let pool = webhookd::db::connect_lazy(database_url, settings.database.pool_size).unwrap();
    let application = Application::build(settings, pool.clone(), Secret::new(ADMIN_TOKEN)).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    TestApp { address, pool, http: http_client(), shutdown, running: Some(running) }
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
        let answer = self.call("POST", "/subscriptions", Some(body)).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        answer.body["id"].as_str().unwrap().parse().unwrap()
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

    /// Polls the delivery until `done` holds for it, or panics after `limit`.
    pub async fn wait_for_delivery(&self, id: Uuid, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self.get(&format!("/deliveries/{id}")).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            if done(&answer.body) {
                return answer.body;
            }
            assert!(Instant::now() < deadline, "delivery did not get there in {limit:?}: {:#}", answer.body);
            tokio::time::sleep(Duration::from_millis(25)).await;
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

/// What a receiver does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Never answers (until the client gives up).
    Hang,
    /// Answers with this status after a delay.
    Delay(Duration, u16),
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: poem::http::HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Option<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// A real HTTP server on 127.0.0.1 that records what it gets and answers as scripted.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
    _stop: CancellationToken,
}

impl Receiver {
    /// Answers `script` in order, then `otherwise` for every later request.
    pub async fn start(script: Vec<Reply>, otherwise: Reply) -> Self {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.into()),
            otherwise: Mutex::new(Some(otherwise)),
            received: Mutex::default(),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().map(SocketAddr::port).unwrap();
        let stop = CancellationToken::new();
        let app = Route::new().at("/*path", poem::post(receive)).data(state.clone());
        let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(app, stop.clone().cancelled_owned(), Some(Duration::ZERO));
        tokio::spawn(server);
        Self { url: format!("http://127.0.0.1:{port}/hook"), state, _stop: stop }
    }

    pub async fn answering(status: u16) -> Self {
        Self::start(vec![], Reply::Status(status)).await
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

#[handler]
async fn receive(request: &Request, body: Body, state: Data<&Arc<ReceiverState>>) -> Response {
    let at = Instant::now();
    let body = body.into_vec().await.unwrap_or_default();
    state.received.lock().unwrap().push(Received { headers: request.headers().clone(), body, at });
    let reply = {
        let next = state.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| state.otherwise.lock().unwrap().clone().unwrap())
    };
    match reply {
        Reply::Status(code) => Response::builder()
            .status(poem::http::StatusCode::from_u16(code).unwrap())
            .body(format!("answer {code}")),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::builder().body("late")
        }
        Reply::Delay(wait, code) => {
            tokio::time::sleep(wait).await;
            Response::builder().status(poem::http::StatusCode::from_u16(code).unwrap()).body("slow")
        }
    }
}

/// How many statements reading `subscriptions` this database has run so far.
pub async fn subscription_reads(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query ILIKE '%FROM subscriptions%'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A real redis-server on a free loopback port, killed when dropped.
pub struct RedisServer {
    pub url: String,
    child: std::process::Child,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { url: format!("redis://127.0.0.1:{port}"), child }
    }

    /// Sends a signal to the server (SIGSTOP makes it hang, SIGKILL makes it vanish).
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `webhookd` binary with a clean environment (only `PATH`, and `RUST_LOG=info`)
/// and no stdin.
pub fn webhookd_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null());
    command
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real `webhookd` binary as a running process, its logs captured.
pub struct Service {
    child: std::process::Child,
    pub base: String,
    logs: Arc<Mutex<String>>,
    /// Copies stderr into `logs` until it closes.
    log_reader: std::thread::JoinHandle<()>,
}

impl Service {
    /// Starts the binary (private targets allowed, the test admin token) and waits until
    /// `/health` answers 200.
    pub async fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        let port = free_port();
        let data_dir = std::env::temp_dir().join("webhookd-tests").join(format!("{}-svc-{port}", std::process::id()));
        let mut command = webhookd_command();
        command
            .env("DATABASE_URL", database_url)
            .env("WEBHOOKD_DATA_DIR", data_dir)
            .env("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "true")
            .env("WEBHOOKD_RETRY_JITTER", "0");
        for (name, value) in settings {
            command.env(name, value);
        }
        Self::spawn(command, port, Duration::from_secs(30)).await
    }

    /// Runs `command` listening on 127.0.0.1:`port`, and waits up to `limit` until
    /// `/health` answers 200.
    pub async fn spawn(mut command: std::process::Command, port: u16, limit: Duration) -> Self {
        use std::io::BufRead;
        command
            .env("WEBHOOKD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let log_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let mut service = Self { child, base: format!("http://127.0.0.1:{port}"), logs, log_reader };
        service.wait_healthy(limit).await;
        service
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let client = http_client();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("webhookd exited early ({status}); logs:\n{}", self.logs());
            }
            if let Ok(response) = client.get(format!("{}/health", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "webhookd not healthy in {limit:?}; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// kill -9, then waits for the process to be gone (without blocking the runtime, on
    /// which the test's receivers run).
    pub async fn kill(&mut self) {
        unsafe { libc::kill(self.pid(), libc::SIGKILL) };
        while self.child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns the exit code.
    pub async fn terminate(&mut self, limit: Duration) -> Option<i32> {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the last lines reach `logs` (a child process still holding stderr
                // open, like an orphaned cluster, must not hang the test).
                let read_until = Instant::now() + Duration::from_secs(2);
                while !self.log_reader.is_finished() && Instant::now() < read_until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return status.code();
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?} of SIGTERM; logs:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// POSTs a webhook; returns the status and the delivery id of a 202.
    pub async fn ingest(&self, client: &reqwest::Client, subscription: Uuid, body: String) -> (u16, Option<Uuid>) {
        ingest_once(client, &self.base, subscription, body).await
    }

    /// Creates a subscription through this instance.
    pub async fn create_subscription(&self, client: &reqwest::Client, target_url: &str) -> Uuid {
        let response = client
            .post(format!("{}/subscriptions", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "target_url": target_url }).to_string())
            .send()
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        body["id"].as_str().unwrap().parse().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a webhook to the service at `base`: the status (0 if no answer came within 15 s
/// or the connection failed) and the delivery id of a 202.
pub async fn ingest_once(client: &reqwest::Client, base: &str, subscription: Uuid, body: String) -> (u16, Option<Uuid>) {
    let sent = client
        .post(format!("{base}/ingest/{subscription}"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(15))
        .body(body)
        .send()
        .await;
    let Ok(response) = sent else { return (0, None) };
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
    (status, body["delivery_id"].as_str().and_then(|id| id.parse().ok()))
}

/// Waits until no delivery in the database is unfinished.
pub async fn wait_all_finished(pool: &PgPool, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status IN ('queued', 'delivering', 'retrying')")
            .fetch_one(pool)
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} deliveries still unfinished after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
