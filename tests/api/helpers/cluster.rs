//! One throwaway PostgreSQL cluster per test run (started like the embedded default
//! database) and a fresh database per test, cloned from a migrated template.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use webhookd::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

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

/// How many statements reading one subscription by id (what a cache miss costs) this
/// database has run so far; sweeps over all subscriptions (the backlog task's) are not these.
pub async fn subscription_reads(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query ILIKE '%FROM subscriptions%WHERE id = $1%'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until `count` backends of this database wait for a lock while running a statement
/// `LIKE pattern`.
pub async fn wait_for_lock_waiters(pool: &PgPool, pattern: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1 AND datname = current_database()")
            .bind(pattern)
            .fetch_one(pool)
            .await
            .unwrap();
        if waiting == count {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} statements like `{pattern}` wait for a lock, not {count}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
