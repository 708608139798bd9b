//! webhookd benchmark: starts a durable PostgreSQL (fsync and synchronous_commit on), the
//! release `webhookd` binary and a receiver on 127.0.0.1, then measures
//!   1. ingest requests/s at 64 concurrent connections with 1 KiB bodies,
//!   0. the machine's limits: raw single-row INSERT commits/s (pgbench) and raw HTTP
//!      requests/s from the load generator straight to the receiver,
//!   2. end-to-end deliveries/s draining 100,000 queued webhooks,
//!   3. ingest→receipt latency p50/p99 at a steady 200 webhooks/s,
//!   4. the time to accept an event fanned out to 1,000 of 10,000 subscriptions,
//!   5. fairness: healthy subscriptions' delivery rate while half of 100 subscriptions hang,
//!      against the rate with all healthy,
//!   6. the service's RSS (idle and peak).
//!
//! Run: `cargo build --release && cargo run --release --example bench`
//! (`BENCH_SECONDS` sets the ingest phase length, default 10.)

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, web::Data, EndpointExt, Request, Route, Server};
use sqlx::PgPool;
use webhookd::embedded_postgres::{ClusterOptions, EmbeddedPostgres};

const TOKEN: &str = "bench-admin-token-0123456789";
const CONNECTIONS: usize = 64;
const DRAIN_COUNT: i64 = 100_000;

/// Receipt times by webhook-id, and a counter.
#[derive(Default)]
struct Receipts {
    count: AtomicU64,
    at: Mutex<HashMap<String, Instant>>,
    track: std::sync::atomic::AtomicBool,
}

/// A receiver that never answers (until the service's delivery timeout).
#[handler]
async fn hang_forever() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "late"
}

#[handler]
fn receive(request: &Request, receipts: Data<&Arc<Receipts>>) -> &'static str {
    receipts.count.fetch_add(1, Ordering::Relaxed);
    if receipts.track.load(Ordering::Relaxed) {
        if let Some(id) = request.header("webhook-id") {
            receipts.at.lock().unwrap().insert(id.to_owned(), Instant::now());
        }
    }
    "ok"
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let binary = std::env::current_exe()?.parent().unwrap().parent().unwrap().join("webhookd");
    anyhow::ensure!(binary.exists(), "build the service first: cargo build --release");

    let root = std::env::temp_dir().join("webhookd-bench");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let cluster = EmbeddedPostgres::start(&ClusterOptions {
        directory: root.join("postgres"),
        server_settings: vec![
            ("max_connections".into(), "200".into()),
            ("shared_preload_libraries".into(), "pg_stat_statements".into()),
        ],
        port: None,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&cluster, &binary, seconds))?;
    drop(runtime);
    drop(cluster);
    Ok(())
}

async fn run(cluster: &EmbeddedPostgres, binary: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    webhookd::delivery::install_tls_provider();
    webhookd::embedded_postgres::create_database_if_missing(&cluster.url_for("postgres"), "webhookd").await?;
    let database_url = cluster.database_url();
    let pool = PgPool::connect(&database_url).await?;
    webhookd::db::migrate(&pool).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;

    let receipts = Arc::new(Receipts::default());
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let receiver_port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let app = Route::new().at("/hang", poem::post(hang_forever)).at("/*path", poem::post(receive)).data(receipts.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    let receiver_url = format!("http://127.0.0.1:{receiver_port}/hook");

    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS * 2).build()?;

    // 0. The machine's limits, for comparison.
    let raw_http = raw_http_rate(&client, &receiver_url, Duration::from_secs(5)).await;
    let raw_commits = pgbench_commits(&database_url, &pool).await?;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut service = start_service(binary, &database_url, port)?;
    wait_healthy(&client, &base).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(service.id(), "VmRSS:");
    let subscription = create_subscription(&client, &base, &receiver_url).await?;

    // Warm up (first runs after boot are slower; see NOTES.md).
    ingest_for(&client, &base, &subscription, Duration::from_secs(2)).await;
    wait_for_receipts(&receipts, &pool).await;

    // 1. Ingest throughput.
    let accepted = ingest_for(&client, &base, &subscription, Duration::from_secs(seconds)).await;
    let ingest_rate = accepted as f64 / seconds as f64;
    wait_for_receipts(&receipts, &pool).await;

    // 2. Drain: stop the service, queue 20,000 webhooks directly, start it, time the drain.
    stop_service(&mut service)?;
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(1010));
    sqlx::query(
        "INSERT INTO deliveries (id, subscription_id, body, status, next_attempt_at)
         SELECT gen_random_uuid(), $1::uuid, convert_to($2, 'UTF8'), 'queued', now()
         FROM generate_series(1, $3)",
    )
    .bind(&subscription)
    .bind(&body)
    .bind(DRAIN_COUNT)
    .execute(&pool)
    .await?;
    let before = receipts.count.load(Ordering::Relaxed);
    service = start_service(binary, &database_url, port)?;
    let started = Instant::now();
    while receipts.count.load(Ordering::Relaxed) - before < DRAIN_COUNT as u64 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "drain did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_rate = DRAIN_COUNT as f64 / started.elapsed().as_secs_f64();
    wait_for_receipts(&receipts, &pool).await;

    // 3. Latency at a steady 200/s, counting the service's statements meanwhile.
    receipts.track.store(true, Ordering::Relaxed);
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await?;
    let sent = steady_ingest(&client, &base, &subscription, 200, Duration::from_secs(10)).await;
    wait_for_receipts(&receipts, &pool).await;
    let statements: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT ILIKE '%count(*)%' AND query NOT ILIKE '%pg_stat_statements%'",
    )
    .fetch_one(&pool)
    .await?;
    let statements_per_webhook = statements as f64 / sent.len().max(1) as f64;
    let arrived = receipts.at.lock().unwrap().clone();
    let mut latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|got| (*got - *at).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    // 4. Fan-out: 10,000 subscriptions, 1,000 of which want the event.
    sqlx::query(
        "INSERT INTO subscriptions (id, target_url, event_types)
         SELECT gen_random_uuid(), $1,
                CASE WHEN n % 10 = 0 THEN ARRAY['bench.*'] ELSE ARRAY['other' || n || '.created'] END
         FROM generate_series(1, 10000) AS n",
    )
    .bind(&receiver_url)
    .execute(&pool)
    .await?;
    sqlx::query("UPDATE subscriptions SET is_active = false WHERE id = $1::uuid").bind(&subscription).execute(&pool).await?;
    let mut fan_out_ms = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let response = client
            .post(format!("{base}/events"))
            .bearer_auth(TOKEN)
            .body(format!("{{\"event_type\": \"bench.fanout\", \"payload\": {}}}", payload()))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "fan-out answered {}", response.status());
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
        fan_out_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(body["deliveries"].as_array().map(Vec::len) == Some(1000), "fan-out reached the wrong subscriptions");
        wait_for_receipts(&receipts, &pool).await;
    }
    fan_out_ms.remove(0); // warm-up
    fan_out_ms.sort_by(f64::total_cmp);

    // 5. Fairness: 100 subscriptions all healthy, then half of them hanging.
    sqlx::query("UPDATE subscriptions SET is_active = false").execute(&pool).await?;
    let all_healthy = fairness_round(&pool, &receipts, &receiver_url, None).await?;
    let half_hanging = fairness_round(&pool, &receipts, &receiver_url, Some(&receiver_url.replace("/hook", "/hang"))).await?;

    let peak_rss = rss_kib(service.id(), "VmHWM:");
    stop_service(&mut service)?;

    // 5. Storage before and after a maintenance pass run as if four days later.
    let (rows_before, size_before) = storage(&pool).await?;
    let later = time::OffsetDateTime::now_utc() + Duration::from_secs(4 * 24 * 3600);
    let report = webhookd::maintenance::run_once(&pool, later, Duration::from_secs(72 * 3600)).await?;
    // What autovacuum does next: deleted rows' space becomes reusable, trailing pages go.
    sqlx::raw_sql("VACUUM deliveries, events, subscriptions").execute(&pool).await?;
    let (rows_after, size_after) = storage(&pool).await?;

    println!("| measure | result |");
    println!("|---|---|");
    println!("| machine: raw single-row INSERT commits (pgbench, 1 KiB, 32 clients) | {raw_commits:.0}/s |");
    println!("| machine: raw HTTP POSTs, load generator → receiver, 64 connections | {raw_http:.0}/s |");
    println!("| ingest, 64 connections, 1 KiB bodies | {ingest_rate:.0} webhooks/s ({:.2}× raw commits) |", ingest_rate / raw_commits);
    println!("| delivery, draining {DRAIN_COUNT} queued | {drain_rate:.0} deliveries/s ({:.2}× raw HTTP) |", drain_rate / raw_http);
    println!("| ingest→receipt latency at 200/s | p50 {:.1} ms, p99 {:.1} ms ({} samples) |", percentile(0.5), percentile(0.99), latencies.len());
    println!("| fan-out of one event to 1,000 of 10,000 subscriptions, accepted in | median {:.1} ms (of {}) |", fan_out_ms[fan_out_ms.len() / 2], fan_out_ms.len());
    println!("| database statements per webhook (ingest + delivery, warm cache, 200/s) | {statements_per_webhook:.2} |");
    println!(
        "| deliveries + attempts before / after a maintenance pass 4 days later | {rows_before} rows, {:.1} MiB / {rows_after} rows, {:.1} MiB ({} partitions dropped) |",
        size_before as f64 / 1048576.0,
        size_after as f64 / 1048576.0,
        report.dropped_partitions.len()
    );
    println!(
        "| fairness: healthy deliveries/s, 100 healthy subscriptions / 50 healthy + 50 hanging | {all_healthy:.0}/s / {half_hanging:.0}/s ({:.0} %) |",
        100.0 * half_hanging / all_healthy
    );
    println!("| service RSS | idle {:.1} MiB, peak {:.1} MiB |", idle_rss as f64 / 1024.0, peak_rss as f64 / 1024.0);
    Ok(())
}

fn start_service(binary: &std::path::Path, database_url: &str, port: u16) -> anyhow::Result<Child> {
    Ok(Command::new(binary)
        .env("DATABASE_URL", database_url)
        .env("WEBHOOKD_LISTEN", format!("127.0.0.1:{port}"))
        .env("WEBHOOKD_ADMIN_TOKEN", TOKEN)
        .env("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "true")
        .env("WEBHOOKD_DATA_DIR", std::env::temp_dir().join("webhookd-bench"))
        .env("RUST_LOG", "warn")
        .env("WEBHOOKD_SHUTDOWN_GRACE", "1s")
        .stdout(Stdio::null())
        .spawn()?)
}

fn stop_service(service: &mut Child) -> anyhow::Result<()> {
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    service.wait()?;
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..400 {
        if let Ok(response) = client.get(format!("{base}/health")).send().await {
            if response.status() == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("service did not become healthy")
}

async fn create_subscription(client: &reqwest::Client, base: &str, target: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/subscriptions"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "target_url": target }).to_string())
        .send()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
    Ok(body["id"].as_str().unwrap().to_owned())
}

fn payload() -> String {
    format!("{{\"data\":\"{}\"}}", "x".repeat(1010))
}

/// 64 connections POSTing as fast as they can for `duration`; returns how many got 202.
async fn ingest_for(client: &reqwest::Client, base: &str, subscription: &str, duration: Duration) -> u64 {
    let accepted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let url = format!("{base}/ingest/{subscription}");
    let body = bytes::Bytes::from(payload());
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, body, accepted) = (client.clone(), url.clone(), body.clone(), accepted.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response = client.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body(body.clone()).send().await;
                    if let Ok(response) = response {
                        if response.status() == 202 {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = response.bytes().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    accepted.load(Ordering::Relaxed)
}

/// Sends `rate` webhooks a second for `duration`; returns (delivery id, send time) pairs.
async fn steady_ingest(client: &reqwest::Client, base: &str, subscription: &str, rate: u64, duration: Duration) -> Vec<(String, Instant)> {
    let url = format!("{base}/ingest/{subscription}");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client.post(&url).bearer_auth(TOKEN).body(payload()).send().await.ok()?;
            let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
            Some((body["delivery_id"].as_str()?.to_owned(), sent))
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        if let Ok(Some(pair)) = task.await {
            sent.push(pair);
        }
    }
    sent
}

/// Waits until nothing is left to deliver.
async fn wait_for_receipts(_receipts: &Receipts, pool: &PgPool) {
    for _ in 0..6000 {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status NOT IN ('succeeded', 'failed')")
            .fetch_one(pool)
            .await
            .unwrap_or(1);
        if pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raw HTTP requests/s from the load generator straight to the receiver (no webhookd).
async fn raw_http_rate(client: &reqwest::Client, url: &str, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let body = bytes::Bytes::from(payload());
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, body, done) = (client.clone(), url.to_owned(), body.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if let Ok(response) = client.post(&url).body(body.clone()).send().await {
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

/// Raw single-row INSERT commits/s of this PostgreSQL, measured with pgbench.
async fn pgbench_commits(database_url: &str, pool: &PgPool) -> anyhow::Result<f64> {
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, body text)").execute(pool).await?;
    let script = std::env::temp_dir().join("webhookd-bench-insert.sql");
    std::fs::write(&script, "INSERT INTO bench_raw (body) VALUES (repeat('x', 1024));\n")?;
    let bin = webhookd::embedded_postgres::find_server_binaries().expect("the cluster runs, so the binaries exist");
    // PATH may hold only links to initdb and postgres: pgbench sits beside their targets.
    let bin = std::fs::canonicalize(bin.join("postgres"))?.parent().unwrap().to_owned();
    let output = Command::new(bin.join("pgbench"))
        .args(["-n", "-c", "32", "-j", "2", "-T", "5", "-f"])
        .arg(&script)
        .arg(database_url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find(|line| line.starts_with("tps ="))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok());
    sqlx::raw_sql("DROP TABLE bench_raw").execute(pool).await?;
    tps.ok_or_else(|| anyhow::anyhow!("pgbench failed: {}{}", text, String::from_utf8_lossy(&output.stderr)))
}

/// Queues 100 webhooks for each of 100 new subscriptions (half pointed at `hanging`, if
/// given) and returns the healthy subscriptions' delivery rate.
async fn fairness_round(pool: &PgPool, receipts: &Receipts, healthy: &str, hanging: Option<&str>) -> anyhow::Result<f64> {
    let ids: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::now_v7()).collect();
    let targets: Vec<String> = (0..100)
        .map(|n| match hanging {
            Some(hang) if n % 2 == 1 => hang.to_owned(),
            _ => healthy.to_owned(),
        })
        .collect();
    sqlx::query("INSERT INTO subscriptions (id, target_url) SELECT * FROM unnest($1::uuid[], $2::text[])")
        .bind(&ids)
        .bind(&targets)
        .execute(pool)
        .await?;
    let healthy_count = targets.iter().filter(|t| t.as_str() == healthy).count() as u64 * 100;
    let before = receipts.count.load(Ordering::Relaxed);
    sqlx::query(
        "INSERT INTO deliveries (id, subscription_id, body, status, next_attempt_at)
         SELECT gen_random_uuid(), s, convert_to('{}', 'UTF8'), 'queued', now()
         FROM unnest($1::uuid[]) AS s, generate_series(1, 100)",
    )
    .bind(&ids)
    .execute(pool)
    .await?;
    sqlx::query("SELECT pg_notify('webhookd_work', '')").execute(pool).await?;
    let started = Instant::now();
    while receipts.count.load(Ordering::Relaxed) - before < healthy_count {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "fairness round did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = healthy_count as f64 / started.elapsed().as_secs_f64();
    sqlx::query("UPDATE subscriptions SET is_active = false WHERE id = ANY($1)").bind(&ids).execute(pool).await?;
    sqlx::query("UPDATE deliveries SET next_attempt_at = 'infinity' WHERE subscription_id = ANY($1) AND status IN ('queued', 'retrying')")
        .bind(&ids)
        .execute(pool)
        .await?;
    Ok(rate)
}

/// Rows and bytes (tables and indexes) of deliveries, attempts and events.
async fn storage(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let rows: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM attempts)").fetch_one(pool).await?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
         WHERE c.relkind = 'r' AND (c.relname IN ('deliveries', 'events') OR c.relname ~ '^attempts_[0-9]{8}$')",
    )
    .fetch_one(pool)
    .await?;
    Ok((rows, bytes))
}

/// A field of /proc/<pid>/status, in KiB.
fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}
