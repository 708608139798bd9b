//! webhookd benchmark: starts a durable PostgreSQL (fsync and synchronous_commit on), the
//! release `webhookd` binary and a receiver on 127.0.0.1 (in its own process, see
//! `receiver.rs`), then measures
//!   1. ingest requests/s at 64 concurrent connections with 1 KiB bodies, sent by a lean
//!      load generator (`load.rs`), and the CPU the generator took per request,
//!   0. the machine's limits: raw single-row INSERT commits/s (pgbench) and raw HTTP
//!      requests/s from reqwest (the client webhookd delivers with) straight to the
//!      receiver,
//!   2. end-to-end deliveries/s draining 100,000 queued webhooks,
//!   3. ingest→receipt latency p50/p99 at a steady 200 webhooks/s,
//!   4. the time to accept an event fanned out to 1,000 of 10,000 subscriptions,
//!   5. fairness: healthy subscriptions' delivery rate while half of 100 subscriptions hang,
//!      against the rate with all healthy (backlogs interleaved, then with the hanging
//!      subscriptions' backlogs queued first),
//!      and noisy neighbour (`noisy`): ingest→receipt latency of a healthy subscription at
//!      200/s alone, then while another subscription's receiver hangs with 100,000 and with
//!      1,000,000 deliveries due,
//!      and scaling out (`scale`): ingest, and ingest until delivered, with 1, 2 and 3
//!      instances accepting and delivering, and with 1 or 2 API-only instances beside one
//!      delivering instance,
//!   6. the service's RSS (idle and peak),
//!   7. what a webhook costs (run first, on near-empty tables, the service logging at
//!      `info` as in production): CPU-seconds of webhookd and of PostgreSQL, statements,
//!      WAL, bytes stored, sent and logged, per webhook delivered at 200/s with one attempt
//!      and per extra attempt, and the CPU used while idle; the ingest phase adds CPU,
//!      statements and WAL per webhook at saturation. docs/cost.md turns them into prices.
//!
//! Run: `cargo build --release && cargo run --release --example bench`
//! (`BENCH_SECONDS` sets the ingest phase length, default 10; `BENCH_ONLY=drain,fairness`
//! runs only the named phases of cost, ingest, drain, latency, fanout, fairness, noisy, scale,
//! flat; `BENCH_POSTGRES=stock` runs PostgreSQL with its own default settings, as a managed
//! database webhookd does not configure, instead of the embedded cluster's;
//! `BENCH_COST_SECONDS` and `BENCH_COST_RATE` set the cost rounds' length and rate, default
//! 25 s at 200/s; `BENCH_PROFILE=1` prints the statements that took the most database time
//! in each phase.)
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark stops loudly on anything unexpected: the panic is the report")]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sqlx::PgPool;
use webhookd::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use webhookd_test_support::free_port;

use disk::{DiskProbe, FlushLatency};
use receiver::Receiver;

mod disk;
mod load;
mod receiver;

const TOKEN: &str = "bench-admin-token-0123456789";
/// Signing secret of the cost phase's subscriptions.
const SECRET: &str = "bench-signing-secret-0123456789";
const CONNECTIONS: usize = 64;
const DRAIN_COUNT: i64 = 100_000;
/// Finished deliveries (each with one attempt) loaded for the flat-cost phase.
const HISTORY_DELIVERIES: i64 = 5_000_000;
/// Webhooks queued for each of the fairness phase's 100 subscriptions.
const FAIRNESS_PER_SUBSCRIPTION: u64 = 1_000;
/// How often the benchmark asks the receiver how much has arrived: each question is a
/// request to its process, on the cores the service shares, and a timed phase of 5-10 s
/// is still timed to within 0.4 %.
const RECEIVER_POLL: Duration = Duration::from_millis(20);
/// Webhooks a second in the cost phase (`BENCH_COST_RATE` changes it): the latency phase's
/// steady, moderate rate, well below saturation. Batching (group commit, claims, outcome
/// batches) grows with the rate, so the CPU per webhook measured here is the dear end.
const COST_RATE: u64 = 200;

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(receiver::ARGUMENT) {
        return receiver::serve();
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let binary = std::env::current_exe()?.parent().unwrap().parent().unwrap().join("webhookd");
    anyhow::ensure!(binary.exists(), "build the service first: cargo build --release");

    let root = std::env::temp_dir().join("webhookd-bench");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let cluster = EmbeddedPostgres::start(&ClusterOptions {
        directory: root.join("postgres"),
        server_settings: server_settings()?,
        port: None,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    webhookd::delivery::install_tls_provider();
    let receiver = Receiver::start()?;
    runtime.block_on(run(&cluster, &binary, receiver, seconds))?;
    drop(runtime);
    drop(cluster);
    Ok(())
}

/// The benchmark cluster's settings. `BENCH_POSTGRES=embedded` (the default): as webhookd's
/// embedded cluster runs (autovacuum looks for work every 10 s). `stock`: PostgreSQL's own
/// defaults, as a managed database that webhookd does not configure (autovacuum every
/// minute, 100 connections). Both are durable (`fsync`, `synchronous_commit` on) and load
/// pg_stat_statements for the statement profiles.
fn server_settings() -> anyhow::Result<Vec<(String, String)>> {
    let mode = postgres_mode();
    let mut settings = vec![("shared_preload_libraries".to_owned(), "pg_stat_statements".to_owned())];
    match mode.as_str() {
        "embedded" => {
            settings.push(("max_connections".into(), "200".into()));
            settings.push(("shared_buffers".into(), std::env::var("BENCH_SHARED_BUFFERS").unwrap_or("128MB".into())));
        }
        // Later settings win: this undoes the embedded cluster's shorter naptime.
        "stock" => settings.push(("autovacuum_naptime".into(), "1min".into())),
        other => anyhow::bail!("BENCH_POSTGRES is `embedded` or `stock`, not `{other}`"),
    }
    // Experiments with the server's settings: `BENCH_PG_SETTINGS=name=value,name=value`,
    // applied last.
    for setting in std::env::var("BENCH_PG_SETTINGS").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
        let (name, value) = setting.split_once('=').ok_or_else(|| anyhow::anyhow!("BENCH_PG_SETTINGS: `{setting}` is not name=value"))?;
        settings.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if Phases::from_env().profile {
        // Planning time shows in the profile (a statement re-planned at every call).
        settings.push(("pg_stat_statements.track_planning".into(), "on".into()));
        // When checkpoints ran and how long their file syncs took, in postgres.log.
        settings.push(("log_checkpoints".into(), "on".into()));
    }
    Ok(settings)
}

/// `BENCH_POSTGRES`: `embedded` (the default) or `stock`.
fn postgres_mode() -> String {
    std::env::var("BENCH_POSTGRES").unwrap_or_else(|_| "embedded".into())
}

/// Which phases to run (`BENCH_ONLY`), and whether to print statement profiles.
struct Phases {
    only: Option<Vec<String>>,
    profile: bool,
}

impl Phases {
    fn from_env() -> Self {
        let only = std::env::var("BENCH_ONLY").ok().map(|list| list.split(',').map(|p| p.trim().to_owned()).collect());
        Self { only, profile: std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1") }
    }

    fn wants(&self, phase: &str) -> bool {
        self.only.as_ref().is_none_or(|only| only.iter().any(|p| p == phase))
    }
}

/// What the phases need to reach the service, the receiver and the database.
struct Bench {
    /// For the API calls that set phases up, steady streams and the delivery ceiling.
    client: reqwest::Client,
    pool: PgPool,
    receiver: Receiver,
    base: String,
    subscription: String,
    phases: Phases,
}

/// One table row: the measure and its result.
type Row = (String, String);

async fn run(cluster: &EmbeddedPostgres, binary: &std::path::Path, receiver: Receiver, seconds: u64) -> anyhow::Result<()> {
    webhookd::embedded_postgres::create_database_if_missing(&cluster.url_for("postgres"), "webhookd").await?;
    let database_url = cluster.database_url();
    let pool = PgPool::connect(&database_url).await?;
    webhookd::db::migrate(&pool).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;

    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS * 2).build()?;
    let mut rows: Vec<Row> = Vec::new();

    // 0. The machine's limits, for comparison. Each ratio below is to the same limit
    // measured again right before its phase: on this machine both swing by a third from
    // one minute to the next, and a ratio to a figure taken minutes earlier measured the
    // swing as much as the service.
    let raw_http = raw_http_rate(&client, &receiver.url, Duration::from_secs(2)).await;
    let raw_commits = pgbench_commits(&database_url, &pool).await?;
    rows.push(("PostgreSQL settings (BENCH_POSTGRES)".into(), postgres_mode()));
    rows.push(("machine: raw single-row INSERT commits (pgbench, 1 KiB, 32 clients)".into(), format!("{raw_commits:.0}/s")));
    rows.push(("machine: raw HTTP POSTs, reqwest (webhookd's HTTP client) → receiver, 64 connections".into(), format!("{raw_http:.0}/s")));

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut service = start_service(binary, &database_url, port, Role::Full)?;
    wait_healthy(&client, &base).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(service.id(), "VmRSS:");
    let subscription = create_subscription(&client, &base, &receiver.url, None).await?;
    let bench = Bench { client, pool, receiver, base, subscription, phases: Phases::from_env() };

    // Warm up (first runs after boot are slower; see NOTES.md).
    ingest_for(&bench, Duration::from_secs(2)).await;
    wait_for_receipts(&bench.pool).await;

    // 7. Cost per webhook. First, on near-empty tables: after the other phases, autovacuum
    // and checkpoints of their rows would be charged to this phase's webhooks.
    // Peak RSS of the cost phase's instance, which is stopped before the end.
    let mut earlier_peak_rss = 0;
    if bench.phases.wants("cost") {
        let log = std::env::temp_dir().join("webhookd-bench").join("webhookd-cost.log");
        restart_logging(&bench, binary, &database_url, port, &mut service, &log).await?;
        rows.extend(cost(&bench, &service, &log).await?);
        earlier_peak_rss = rss_kib(service.id(), "VmHWM:");
        stop_service(&mut service)?;
        service = start_service(binary, &database_url, port, Role::Full)?;
        wait_healthy(&bench.client, &bench.base).await?;
    }

    // 1. Ingest throughput: accepting only, then while delivering the same stream.
    let (mut accept_rate, mut ingest_rate) = (None, None);
    if bench.phases.wants("ingest") {
        let raw_commits = pgbench_commits(&database_url, &bench.pool).await?;
        let accepted = accept_only(&bench, binary, &database_url, port, &mut service, seconds, true).await?;
        let (rate, generator) = (accepted.generator.per_second, accepted.generator.cpu_us);
        accept_rate = Some(rate);
        rows.push((
            "ingest, 64 connections, 1 KiB bodies, API-only instance (group commit)".into(),
            format!("{rate:.0}/s ({}); load generator {generator:.1} µs CPU/request", ratio(rate, raw_commits, "raw commits")),
        ));
        if let Some(reqwest) = accepted.with_reqwest {
            rows.push((
                "the same, reqwest as the load generator (before the 24th session), run first".into(),
                format!("{:.0}/s ({}); reqwest {:.1} µs CPU/request", reqwest.per_second, ratio(reqwest.per_second, raw_commits, "raw commits"), reqwest.cpu_us),
            ));
        }
        // What a webhook costs when everything is batched as far as it goes (the cost
        // phase measures it at a moderate rate).
        let raw_http = raw_http_rate(&bench.client, &bench.receiver.url, Duration::from_secs(2)).await;
        let postmaster = postmaster_pid(&bench.pool).await?;
        let before = usage(&bench, service.id(), postmaster).await?;
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&bench.pool).await?;
        let rate = bench.profiled("ingest", ingest_rate_for(&bench, seconds)).await?;
        let statements = statements_since_reset(&bench.pool).await?;
        let after = usage(&bench, service.id(), postmaster).await?;
        rows.push(("ingest as above, the instance also delivering the stream".into(), format!("{rate:.0}/s ({})", ratio(rate, raw_http, "raw HTTP"))));
        let webhooks = rate * seconds as f64;
        rows.push((
            "cost per webhook in the phase above (at saturation, one attempt, unsigned, logs at warn)".into(),
            format!(
                "CPU webhookd {:.3} ms + PostgreSQL {:.3} ms; {:.2} statements; WAL {:.0} B",
                (after.webhookd_cpu - before.webhookd_cpu) * 1000.0 / webhooks,
                (after.postgres_cpu - before.postgres_cpu) * 1000.0 / webhooks,
                statements as f64 / webhooks,
                (after.wal - before.wal) as f64 / webhooks
            ),
        ));
        ingest_rate = Some(rate);
    }

    // 2. Drain: stop the service, queue 100,000 webhooks directly, start it, time the drain.
    let mut drain_rate = None;
    if bench.phases.wants("drain") {
        let raw_http = raw_http_rate(&bench.client, &bench.receiver.url, Duration::from_secs(2)).await;
        let rate = drain(&bench, binary, &database_url, port, &mut service).await?;
        rows.push((format!("delivery, draining {DRAIN_COUNT} queued for one subscription"), format!("{rate:.0}/s ({})", ratio(rate, raw_http, "raw HTTP"))));
        drain_rate = Some(rate);
    }

    // 3. Latency at a steady 200/s, counting the service's statements meanwhile.
    if bench.phases.wants("latency") {
        let background = bench.background_work().await?;
        if bench.phases.profile {
            let vacuums: Vec<(String, String)> = sqlx::query_as("SELECT relid::regclass::text, phase FROM pg_stat_progress_vacuum").fetch_all(&bench.pool).await?;
            eprintln!("-- latency: vacuums running at its start: {vacuums:?}");
        }
        let (latency, statements) = bench.profiled("latency", latency(&bench)).await?;
        if bench.phases.profile {
            let after = bench.background_work().await?;
            eprintln!("-- latency: checkpoints {} → {}, autovacuums of deliveries {} → {}", background.0, after.0, background.1, after.1);
        }
        rows.push(("ingest→receipt latency at 200/s".into(), latency.to_string()));
        rows.push(("database statements per webhook (ingest + delivery, warm cache, 200/s)".into(), format!("{statements:.2}")));
    }

    // 4. Fan-out: 10,000 subscriptions, 1,000 of which want the event.
    let mut fan_out = None;
    if bench.phases.wants("fanout") || bench.phases.wants("flat") {
        add_fan_out_subscriptions(&bench).await?;
        let ms = fan_out_ms(&bench).await?;
        rows.push(("fan-out of one event to 1,000 of 10,000 subscriptions, accepted in".into(), format!("median {ms:.1} ms (of 5)")));
        fan_out = Some(ms);
    }

    // 5. Fairness: 100 subscriptions all healthy, then half of them hanging.
    if bench.phases.wants("fairness") {
        let all_healthy = bench.profiled("fairness, all healthy", fairness_round(&bench, false, Backlog::Interleaved)).await?;
        let half_hanging = bench.profiled("fairness, half hanging", fairness_round(&bench, true, Backlog::Interleaved)).await?;
        rows.push((
            "fairness: healthy subscriptions' deliveries/s, 100 healthy / 50 healthy + 50 hanging".into(),
            format!("{all_healthy:.0}/s / {half_hanging:.0}/s ({:.0} %)", 100.0 * half_hanging / all_healthy),
        ));
        let hanging_first = bench.profiled("fairness, hanging backlogs first", fairness_round(&bench, true, Backlog::HangingFirst)).await?;
        rows.push((
            "fairness as above, the hanging subscriptions' backlogs queued before the healthy ones".into(),
            format!("{hanging_first:.0}/s ({:.0} %)", 100.0 * hanging_first / all_healthy),
        ));
    }

    // 5b. Noisy neighbour: the latency of a healthy subscription at 200/s alone, then while
    // another subscription's receiver hangs with 100,000 and then 1,000,000 deliveries due.
    if bench.phases.wants("noisy") {
        rows.extend(bench.profiled("noisy neighbour", noisy_neighbour(&bench)).await?);
    }

    // 5c. Scaling out: several instances against the one PostgreSQL.
    if bench.phases.wants("scale") {
        earlier_peak_rss = earlier_peak_rss.max(rss_kib(service.id(), "VmHWM:"));
        stop_service(&mut service)?;
        rows.extend(scale_out(&bench, binary, &database_url, seconds).await?);
        service = start_service(binary, &database_url, port, Role::Full)?;
        wait_healthy(&bench.client, &bench.base).await?;
    }

    // 6. Flat cost: the same measures again over 10 million rows of history.
    if bench.phases.wants("flat") {
        let (history_rows, history_bytes) = add_history(&bench).await?;
        rows.push(("history loaded for the flat-cost phase".into(), format!("{history_rows} deliveries + attempts, {:.1} GiB", history_bytes as f64 / (1u64 << 30) as f64)));
        let compare = |now: f64, before: Option<f64>| match before {
            Some(before) => format!("{now:.0}/s ({:+.0} % vs empty)", 100.0 * (now - before) / before),
            None => format!("{now:.0}/s"),
        };
        let rate = accept_only(&bench, binary, &database_url, port, &mut service, seconds, false).await?.generator.per_second;
        rows.push(("flat cost: ingest over the history, API-only instance".into(), compare(rate, accept_rate)));
        let rate = bench.profiled("ingest over history", ingest_rate_for(&bench, seconds)).await?;
        rows.push(("flat cost: ingest over the history, also delivering".into(), compare(rate, ingest_rate)));
        let rate = drain(&bench, binary, &database_url, port, &mut service).await?;
        rows.push(("flat cost: draining 100,000 over the history".into(), compare(rate, drain_rate)));
        let ms = fan_out_ms(&bench).await?;
        let before = fan_out.map(|b| format!(" ({b:.1} ms empty)")).unwrap_or_default();
        rows.push(("flat cost: fan-out to 1,000 of 10,000 over the history".into(), format!("median {ms:.1} ms{before}")));
    }

    let peak_rss = rss_kib(service.id(), "VmHWM:").max(earlier_peak_rss);
    stop_service(&mut service)?;

    // 7. Storage before and after a maintenance pass run as if four days later.
    if bench.phases.only.is_none() {
        let (rows_before, size_before) = storage(&bench.pool).await?;
        let later = time::OffsetDateTime::now_utc() + Duration::from_secs(4 * 24 * 3600);
        // With the history phase, autovacuum may hold the partitions: a pass that gives up
        // on its lock timeout is reported rather than ending the benchmark.
        let report = match webhookd::maintenance::run_once(&bench.pool, later, Duration::from_secs(72 * 3600), Duration::from_secs(30)).await {
            Ok(report) => report,
            Err(error) => {
                eprintln!("maintenance pass failed: {error:#}");
                webhookd::maintenance::Report::default()
            }
        };
        // What autovacuum does next: deleted rows' space becomes reusable, trailing pages go.
        sqlx::raw_sql("VACUUM deliveries, delivery_bodies, events, subscriptions").execute(&bench.pool).await?;
        let (rows_after, size_after) = storage(&bench.pool).await?;
        rows.push((
            "deliveries + attempts before / after a maintenance pass 4 days later".into(),
            format!(
                "{rows_before} rows, {:.1} MiB / {rows_after} rows, {:.1} MiB ({} partitions dropped)",
                size_before as f64 / 1048576.0,
                size_after as f64 / 1048576.0,
                report.dropped_partitions.len()
            ),
        ));
    }
    rows.push(("service RSS".into(), format!("idle {:.1} MiB, peak {:.1} MiB", idle_rss as f64 / 1024.0, peak_rss as f64 / 1024.0)));

    println!("| measure | result |");
    println!("|---|---|");
    for (measure, result) in rows {
        println!("| {measure} | {result} |");
    }
    Ok(())
}

impl Bench {
    /// Where the load generator posts: the bench subscription's ingest URL.
    fn ingest_url(&self) -> String {
        format!("{}/ingest/{}", self.base, self.subscription)
    }

    /// Runs one phase; with `BENCH_PROFILE=1`, prints the statements that took the most
    /// database time during it.
    async fn profiled<T>(&self, phase: &str, work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        if !self.phases.profile {
            return work.await;
        }
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&self.pool).await?;
        // Sample background work while the phase runs, in this task: the phase's future
        // is polled here as before, and sampling stops when it ends.
        let (mut background, mut samples) = (BTreeMap::new(), 0);
        let mut work = std::pin::pin!(work);
        let result = loop {
            tokio::select! {
                result = &mut work => break result?,
                () = sample_background_work(&self.pool, &mut background) => samples += 1,
            }
        };
        let top: Vec<(i64, i64, f64, f64, f64, String)> = sqlx::query_as(
            "SELECT calls, rows, total_exec_time, mean_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
             FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 6",
        )
        .fetch_all(&self.pool)
        .await?;
        eprintln!("-- {phase}: top statements by database time");
        for (calls, rows, total, mean, planning, query) in top {
            eprintln!("{calls:>7} calls {rows:>8} rows {total:>7.0} ms total {mean:>6.3} ms mean {planning:>6.0} ms planning  {query}");
        }
        for (activity, seen) in background {
            eprintln!("   busy in {seen} of {samples} samples, 100 ms apart: {activity}");
        }
        Ok(result)
    }
}

/// One sample of what PostgreSQL's autovacuum workers and checkpointer are busy with, and
/// of client backends waiting on WAL or file I/O (a commit waiting for its flush), counted
/// by activity into `seen`; then waits 100 ms before the next.
async fn sample_background_work(pool: &PgPool, seen: &mut BTreeMap<String, u32>) {
    let busy: Vec<(String,)> = sqlx::query_as(
        "SELECT backend_type || ': ' || CASE WHEN backend_type = 'client backend'
                                              THEN wait_event || ' in ' || left(query, 70)
                                              ELSE coalesce(nullif(query, ''), wait_event, 'working') END
         FROM pg_stat_activity
         WHERE backend_type IN ('autovacuum worker', 'checkpointer') AND (backend_type <> 'checkpointer' OR wait_event IS DISTINCT FROM 'CheckpointerMain')
            OR backend_type = 'client backend' AND wait_event IN ('WALSync', 'WALWrite', 'WALInitSync', 'WALInitWrite', 'DataFileExtend')",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for (activity,) in busy {
        *seen.entry(activity).or_insert(0) += 1;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

impl Bench {
    /// Checkpoints so far, and autovacuum runs on `deliveries` so far.
    async fn background_work(&self) -> anyhow::Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
                    (SELECT autovacuum_count + autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'deliveries')",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

async fn ingest_rate_for(bench: &Bench, seconds: u64) -> anyhow::Result<f64> {
    let accepted = ingest_for(bench, Duration::from_secs(seconds)).await;
    wait_for_receipts(&bench.pool).await;
    Ok(accepted as f64 / seconds as f64)
}

/// Ingest rate of an API-only instance (nothing is delivered meanwhile) and the load
/// generator's CPU per request; afterwards the usual instance is back and has delivered
/// what was accepted. With `compare`, first the same with reqwest as the load generator.
async fn accept_only(bench: &Bench, binary: &std::path::Path, database_url: &str, port: u16, service: &mut Child, seconds: u64, compare: bool) -> anyhow::Result<AcceptOnly> {
    stop_service(service)?;
    *service = start_service(binary, database_url, port, Role::ApiOnly)?;
    wait_healthy(&bench.client, &bench.base).await?;
    let duration = Duration::from_secs(seconds);
    let with_reqwest = if compare {
        Some(client_run(duration, load::reqwest_post_for(&bench.client, &bench.ingest_url(), Some(TOKEN), duration)).await)
    } else {
        None
    };
    let generator = bench.profiled("ingest, API only", async { Ok(client_run(duration, ingest_for(bench, duration)).await) }).await?;
    stop_service(service)?;
    *service = start_service(binary, database_url, port, Role::Full)?;
    wait_healthy(&bench.client, &bench.base).await?;
    wait_for_receipts(&bench.pool).await;
    Ok(AcceptOnly { generator, with_reqwest })
}

/// API-only ingest driven by the load generator, and (if compared) by reqwest.
struct AcceptOnly {
    generator: ClientRun,
    with_reqwest: Option<ClientRun>,
}

/// What one client achieved: 2xx answers a second, and the CPU it took per request in µs.
struct ClientRun {
    per_second: f64,
    cpu_us: f64,
}

/// Runs a client's load of `duration` and measures the benchmark process's CPU meanwhile:
/// the client's own, since the receiver and the service are processes of their own.
async fn client_run(duration: Duration, load: impl std::future::Future<Output = u64>) -> ClientRun {
    let before = cpu_seconds(std::process::id(), false);
    let succeeded = load.await;
    let cpu = cpu_seconds(std::process::id(), false) - before;
    ClientRun { per_second: succeeded as f64 / duration.as_secs_f64(), cpu_us: cpu * 1e6 / succeeded.max(1) as f64 }
}

/// Stops the service, queues 100,000 webhooks for one subscription directly in the
/// database, starts the service and times until the receiver has them all.
async fn drain(bench: &Bench, binary: &std::path::Path, database_url: &str, port: u16, service: &mut Child) -> anyhow::Result<f64> {
    stop_service(service)?;
    // A backlog built up over the last 10 s (say, while the receiver was down), oldest first.
    sqlx::query(
        "WITH due AS (
             SELECT now() - make_interval(secs => 10 * (1 - n::float8 / $3)) AS due, md5(random()::text) AS random
             FROM generate_series(1, $3) AS n
         ), backlog AS (
             -- Ids as the service makes them, UUIDv7 (ordered by time), from when each was due.
             SELECT (lpad(to_hex((extract(epoch FROM due) * 1000)::bigint), 12, '0') || '7'
                     || substr(random, 1, 3) || '8' || substr(random, 4, 15))::uuid AS id, due
             FROM due
         ), bodies AS (
             INSERT INTO delivery_bodies (delivery_id, body) SELECT id, convert_to($2, 'UTF8') FROM backlog
         )
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, created_at)
         SELECT id, $1::uuid, 'queued', due, due FROM backlog",
    )
    .bind(&bench.subscription)
    .bind(payload())
    .bind(DRAIN_COUNT)
    .execute(&bench.pool)
    .await?;
    let before = bench.receiver.count().await?;
    *service = start_service(binary, database_url, port, Role::Full)?;
    let timed = async {
        let started = Instant::now();
        while bench.receiver.count().await? - before < DRAIN_COUNT as u64 {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "drain did not finish");
            tokio::time::sleep(RECEIVER_POLL).await;
        }
        Ok(DRAIN_COUNT as f64 / started.elapsed().as_secs_f64())
    };
    let rate = bench.profiled("drain", timed).await?;
    wait_for_receipts(&bench.pool).await;
    wait_healthy(&bench.client, &bench.base).await?;
    Ok(rate)
}

/// Ingest→receipt latency at a steady 200/s, and statements per webhook.
async fn latency(bench: &Bench) -> anyhow::Result<(Latency, f64)> {
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&bench.pool).await?;
    let (latency, sent) = latency_window(bench, async |_| {
        wait_for_receipts(&bench.pool).await;
        Ok(())
    })
    .await?;
    let statements = statements_since_reset(&bench.pool).await?;
    Ok((latency, statements as f64 / sent.max(1) as f64))
}

/// One latency window: the bench's subscription at a steady 200/s for 10 s, the disk probe
/// flushing beside it; `arrived` waits until the webhooks sent have arrived. Returns the
/// figures and how many webhooks were sent.
async fn latency_window(bench: &Bench, arrived: impl AsyncFnOnce(&[Sent]) -> anyhow::Result<()>) -> anyhow::Result<(Latency, usize)> {
    bench.receiver.track(true).await?;
    let probe = start_disk_probe()?;
    let sent = steady_ingest(bench, &bench.subscription, 200, Duration::from_secs(10)).await;
    arrived(&sent).await?;
    let disk = probe.finish().await?;
    bench.receiver.track(false).await?;
    Ok((percentiles(bench, &sent, disk).await?, sent.len()))
}

/// What a latency window measured: ingest→receipt p50 and p99 in ms, how many webhooks
/// arrived, the p99 of the 202s themselves (which wait for the WAL's flush, where a
/// delivery does not), and the disk's own flush latency meanwhile.
struct Latency {
    p50: f64,
    p99: f64,
    samples: usize,
    acknowledged_p99: f64,
    disk: FlushLatency,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms ({} samples; the 202s' p99 {:.1} ms; the disk's own flushes meanwhile: {})",
            self.p50, self.p99, self.samples, self.acknowledged_p99, self.disk
        )
    }
}

/// Starts the disk probe beside the cluster's data directory (the same file system).
fn start_disk_probe() -> anyhow::Result<DiskProbe> {
    Ok(DiskProbe::start(std::env::temp_dir().join("webhookd-bench").join("disk-probe"))?)
}

/// p50 and p99 in ms of ingest→receipt of the webhooks `sent` (as recorded while
/// the receiver was tracking), and how many arrived, beside the `disk` probe's figures.
async fn percentiles(bench: &Bench, sent: &[Sent], disk: FlushLatency) -> anyhow::Result<Latency> {
    let arrived = bench.receiver.arrivals().await?;
    let latency_of = |one: &Sent| arrived.get(&one.id).map(|got| millis_between(one.at, *got));
    let mut latencies: Vec<f64> = sent.iter().filter_map(latency_of).collect();
    anyhow::ensure!(!latencies.is_empty(), "no webhook of the latency measure arrived");
    if bench.phases.profile {
        // The tail, in time: one stall or spread out?
        let start = sent.first().map(|one| one.at);
        let slow: Vec<String> = sent
            .iter()
            .filter_map(|one| Some((one.at, latency_of(one)?)))
            .filter(|(_, ms)| *ms > 20.0)
            .map(|(at, ms)| format!("+{:.2}s {ms:.0}ms", millis_between(start.unwrap_or(at), at) / 1000.0))
            .collect();
        eprintln!("-- latency over 20 ms, by send time: {}", slow.join(", "));
    }
    latencies.sort_by(f64::total_cmp);
    let mut acknowledged: Vec<f64> = sent.iter().map(|one| one.acknowledged_ms).collect();
    acknowledged.sort_by(f64::total_cmp);
    Ok(Latency {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        samples: latencies.len(),
        acknowledged_p99: percentile(&acknowledged, 0.99),
        disk,
    })
}

/// The `p` quantile (0..1) of `sorted`, which is sorted and not empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Milliseconds from `earlier` to `later`, wall-clock times of this machine (the load
/// generator's sends and the receiver's arrivals are taken in two processes).
fn millis_between(earlier: SystemTime, later: SystemTime) -> f64 {
    later.duration_since(earlier).unwrap_or_default().as_secs_f64() * 1000.0
}

/// Due rows of the noisy-neighbour phase's hanging subscription, in two steps.
const NOISY_BACKLOGS: [i64; 2] = [100_000, 1_000_000];

/// The noisy-neighbour phase: ingest→receipt latency of the healthy subscription at 200/s
/// alone, then while a second subscription, whose receiver hangs, has 100,000 and then
/// 1,000,000 deliveries due (queued directly in the database, due over the last minute),
/// then while that subscription is paused and its backlog parked. Its receiver never
/// answers, so it stays full at its small share and its backlog stays due until the pause.
/// Returns table rows.
async fn noisy_neighbour(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let alone = healthy_latency(bench).await?;
    rows.push(("noisy neighbour: latency at 200/s, alone (same run)".into(), alone.to_string()));
    let hanging_url = bench.receiver.url_for("/hang");
    let hanging = create_subscription(&bench.client, &bench.base, &hanging_url, None).await?;
    let mut queued = 0;
    for backlog in NOISY_BACKLOGS {
        sqlx::query(
            "WITH backlog AS (
                 SELECT gen_random_uuid() AS id, now() - make_interval(secs => 60 * (1 - n::float8 / $2)) AS due
                 FROM generate_series(1, $2) AS n
             ), bodies AS (
                 INSERT INTO delivery_bodies (delivery_id, body) SELECT id, convert_to('{}', 'UTF8') FROM backlog
             )
             INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, created_at)
             SELECT id, $1::uuid, 'queued', due, due FROM backlog",
        )
        .bind(&hanging)
        .bind(backlog - queued)
        .execute(&bench.pool)
        .await?;
        queued = backlog;
        // A backlog that built up over an hour, not in one statement: vacuumed and analyzed
        // as autovacuum would have, and checkpointed, so that the measure is not of the
        // load's own write-back.
        sqlx::raw_sql("VACUUM ANALYZE deliveries, delivery_bodies").execute(&bench.pool).await?;
        sqlx::raw_sql("CHECKPOINT").execute(&bench.pool).await?;
        sqlx::query("SELECT pg_notify('webhookd_work', '')").execute(&bench.pool).await?;
        wait_until_sending(bench, &hanging).await?;
        let beside = healthy_latency(bench).await?;
        rows.push((
            format!("noisy neighbour: the same while another subscription's receiver hangs with {backlog} due"),
            format!("{beside}; p50 {:+.1} ms from alone", beside.p50 - alone.p50),
        ));
    }
    rows.push(pause_beside(bench, &hanging, alone.p50).await?);
    // Retire it: its backlog removed at once (parked, it is no one's work; cancelling a
    // million rows through the API takes the backlog task half a minute), then the
    // subscription deleted as a user would, which ends what is in flight; cleaned up as
    // autovacuum would, so that later phases start from finished work only.
    sqlx::query(
        "WITH gone AS (DELETE FROM deliveries WHERE subscription_id = $1::uuid AND status <> 'delivering' RETURNING id)
         DELETE FROM delivery_bodies AS b USING gone WHERE b.delivery_id = gone.id",
    )
    .bind(&hanging)
    .execute(&bench.pool)
    .await?;
    bench.client.delete(format!("{}/subscriptions/{hanging}", bench.base)).bearer_auth(TOKEN).send().await?.error_for_status()?;
    sqlx::raw_sql("VACUUM ANALYZE deliveries").execute(&bench.pool).await?;
    Ok(rows)
}

/// Pauses the hanging subscription through the API, with its whole backlog due, as an
/// operator stops a dead endpoint: the PATCH parks one batch and the backlog task the rest,
/// a batch per transaction (`src/delivery/backlog.rs`). Measures the healthy subscription
/// meanwhile, how soon the PATCH answered and when the last due row was parked.
async fn pause_beside(bench: &Bench, hanging: &str, alone_p50: f64) -> anyhow::Result<Row> {
    let started = Instant::now();
    set_active(bench, hanging, false).await?;
    let answered = started.elapsed();
    let during = healthy_latency(bench).await?;
    loop {
        let due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('queued', 'retrying')
                 AND subscription_id = $1::uuid AND next_attempt_at < 'infinity')",
        )
        .bind(hanging)
        .fetch_one(&bench.pool)
        .await?;
        if !due {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the paused subscription's backlog was not parked in 10 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parked = started.elapsed();
    let backlog = NOISY_BACKLOGS[NOISY_BACKLOGS.len() - 1];
    Ok((
        format!("noisy neighbour: the same while that subscription is paused, its {backlog} due parked in the background"),
        format!(
            "{during}; p50 {:+.1} ms from alone; the PATCH answered in {:.0} ms, all parked after {:.1} s",
            during.p50 - alone_p50,
            answered.as_secs_f64() * 1000.0,
            parked.as_secs_f64()
        ),
    ))
}

/// Ingest→receipt latency of the bench's subscription at a steady 200/s for 10 s. Waits
/// for its own webhooks only (the queue may hold others' for good).
async fn healthy_latency(bench: &Bench) -> anyhow::Result<Latency> {
    bench.receiver.forget_arrivals().await?;
    let arrived = async |sent: &[Sent]| {
        let started = Instant::now();
        while bench.receiver.arrivals_recorded().await? < sent.len() as u64 {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "the healthy subscription's webhooks did not all arrive");
            tokio::time::sleep(RECEIVER_POLL).await;
        }
        Ok(())
    };
    Ok(latency_window(bench, arrived).await?.0)
}

/// Waits until the service is sending to `subscription` (it has a delivery claimed).
async fn wait_until_sending(bench: &Bench, subscription: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        // A claimed row's due time is its lease's end, in the future; read through the
        // queue's per-subscription index, not the whole backlog.
        let sending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('queued', 'retrying', 'delivering')
                 AND subscription_id = $1::uuid AND next_attempt_at > now() AND next_attempt_at < 'infinity')",
        )
        .bind(subscription)
        .fetch_one(&bench.pool)
        .await?;
        if sending {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "the hanging subscription was never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Statements the service ran since the last `pg_stat_statements_reset()`: those of its
/// `sql/` files (each starts with its comment header) and its transactions' BEGIN and
/// COMMIT, not the benchmark's own polling and reading of the statistics. (Until
/// 2026-12-01 the benchmark left out every statement containing `count(*)`, which since the
/// claim per subscription (issue 17) included the claim: the figures of that day's runs
/// miss one statement per claim.)
async fn statements_since_reset(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND (query LIKE '--%' OR query IN ('BEGIN', 'COMMIT', 'ROLLBACK'))",
    )
    .fetch_one(pool)
    .await?)
}

/// The cost phase: CPU while idle, then a round of webhooks that each succeed at the first
/// attempt and a round of webhooks that each fail once and succeed on the retry. The
/// difference between the rounds is the cost of one more attempt. Returns table rows.
async fn cost(bench: &Bench, service: &Child, log: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let setting = |name: &str, default: u64| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let (seconds, rate) = (setting("BENCH_COST_SECONDS", 25), setting("BENCH_COST_RATE", COST_RATE));
    let postmaster = postmaster_pid(&bench.pool).await?;
    // The service has just been restarted, and its first maintenance pass runs 10 s after
    // start: one pass in the idle window would count ten times what one every 5 min costs.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // 30 s: CPU time is counted in 10 ms ticks, and the idle service uses a few a second.
    let idle = idle_cpu(&bench.pool, service.id(), postmaster, Duration::from_secs(30)).await;
    // Subscriptions of their own, signed as real ones are (the two signature headers are
    // part of every attempt's bytes), retired through the API afterwards: they take every
    // event type, and the fan-out phase expects exactly 1,000 subscriptions to match.
    let flaky_url = bench.receiver.url_for("/fail-once");
    let signed = create_subscription(&bench.client, &bench.base, &bench.receiver.url, Some(SECRET)).await?;
    let flaky = create_subscription(&bench.client, &bench.base, &flaky_url, Some(SECRET)).await?;
    let meter = Meter { service: service.id(), postmaster, log };
    let once = cost_round(bench, &meter, &signed, seconds, rate).await?;
    let twice = cost_round(bench, &meter, &flaky, seconds, rate).await?;
    for id in [&signed, &flaky] {
        bench.client.delete(format!("{}/subscriptions/{id}", bench.base)).bearer_auth(TOKEN).send().await?.error_for_status()?;
    }
    for (name, round) in [("one attempt", &once), ("two attempts", &twice)] {
        eprintln!("-- cost, {name}: {round:?}");
    }
    anyhow::ensure!((once.attempts - 1.0).abs() < 0.01 && (twice.attempts - 2.0).abs() < 0.01, "the cost rounds made {} and {} attempts per webhook, not 1 and 2", once.attempts, twice.attempts);
    let retry = |f: fn(&Cost) -> f64| f(&twice) - f(&once);
    Ok(vec![
        (
            "cost: CPU while idle (nothing to deliver, 30 s)".into(),
            format!("webhookd {:.2} ms/s, PostgreSQL {:.2} ms/s", idle.0 * 1000.0, idle.1 * 1000.0),
        ),
        (
            format!("cost per webhook at {rate}/s, signed, delivered at the first attempt ({} webhooks)", once.webhooks),
            format!(
                "CPU webhookd {:.3} ms + PostgreSQL {:.3} ms; {:.2} statements; WAL {:.0} B",
                once.webhookd_ms, once.postgres_ms, once.statements, once.wal
            ),
        ),
        (
            format!("cost per extra attempt (a round of {} webhooks each refused once, minus the above)", twice.webhooks),
            format!(
                "CPU webhookd {:.3} ms + PostgreSQL {:.3} ms; {:.2} statements; WAL {:.0} B",
                retry(|c| c.webhookd_ms),
                retry(|c| c.postgres_ms),
                retry(|c| c.statements),
                retry(|c| c.wal)
            ),
        ),
        (
            "cost: stored per webhook with a 1 KiB body (tables, indexes, TOAST)".into(),
            format!(
                "delivery row {:.0} B ({:.0} B after a retry); body {:.0} B; attempt row {:.0} B ({:.0} B refused)",
                once.live_delivery_bytes,
                twice.live_delivery_bytes,
                once.body_bytes,
                once.attempt_bytes,
                2.0 * twice.attempt_bytes - once.attempt_bytes
            ),
        ),
        ("cost: bytes sent per attempt (request line, headers, body)".into(), format!("{:.0} B", once.sent_bytes)),
        (
            "cost: log written per webhook (RUST_LOG=info, JSON), and per extra attempt".into(),
            format!("{:.0} B, {:.0} B", once.log_bytes, twice.log_bytes - once.log_bytes),
        ),
    ])
}

/// What one cost round measured, per webhook (per attempt for `attempt_bytes` and
/// `sent_bytes`).
#[derive(Debug)]
struct Cost {
    webhooks: usize,
    attempts: f64,
    webhookd_ms: f64,
    postgres_ms: f64,
    statements: f64,
    wal: f64,
    live_delivery_bytes: f64,
    body_bytes: f64,
    attempt_bytes: f64,
    sent_bytes: f64,
    log_bytes: f64,
}

/// Sends `rate` webhooks a second to `subscription` for `seconds`, waits until all are
/// finished, and divides what was used meanwhile by the webhooks sent. CPU and WAL include
/// whatever ran in the background meanwhile (autovacuum, checkpoints, the service's polls):
/// they are part of the price of a webhook.
async fn cost_round(bench: &Bench, meter: &Meter<'_>, subscription: &str, seconds: u64, rate: u64) -> anyhow::Result<Cost> {
    wait_for_receipts(&bench.pool).await;
    let started: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(&bench.pool).await?;
    let before = meter.read(bench).await?;
    let kinds_before = postgres_cpu_by_kind(meter.postmaster);
    // Last, so that the snapshot's own queries are not counted.
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&bench.pool).await?;
    let received = bench.receiver.count().await?;
    let sent = steady_ingest(bench, subscription, rate, Duration::from_secs(seconds)).await;
    // Wait on the receiver first: `wait_for_receipts` counts with a scan of deliveries every
    // 50 ms, PostgreSQL CPU that would be charged to the webhooks (12 s of it for retries).
    let waiting = Instant::now();
    while bench.receiver.count().await? - received < sent.len() as u64 {
        anyhow::ensure!(waiting.elapsed() < Duration::from_secs(300), "a cost round's webhooks were not all delivered");
        tokio::time::sleep(RECEIVER_POLL).await;
    }
    wait_for_receipts(&bench.pool).await;
    let statements = statements_since_reset(&bench.pool).await?;
    let after = meter.read(bench).await?;
    let kinds_after = postgres_cpu_by_kind(meter.postmaster);
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE subscription_id = $1::uuid AND created_at >= $2")
        .bind(subscription)
        .bind(started)
        .fetch_one(&bench.pool)
        .await?;
    let live = live_delivery_bytes(&bench.pool, subscription, started).await?;
    let webhooks = sent.len().max(1) as f64;
    let per_webhook = |f: fn(&Usage) -> f64| (f(&after) - f(&before)) / webhooks;
    let per_attempt = |f: fn(&Usage) -> f64| (f(&after) - f(&before)) / attempts.max(1) as f64;
    let by_kind: Vec<String> = kinds_after
        .iter()
        .map(|(kind, cpu)| format!("{kind} {:.3}", (cpu - kinds_before.get(kind).unwrap_or(&0.0)) * 1000.0 / webhooks))
        .collect();
    eprintln!("-- cost round at {rate}/s: PostgreSQL CPU-ms per webhook by process: {}", by_kind.join(", "));
    Ok(Cost {
        webhooks: sent.len(),
        attempts: attempts as f64 / webhooks,
        webhookd_ms: per_webhook(|u| u.webhookd_cpu) * 1000.0,
        postgres_ms: per_webhook(|u| u.postgres_cpu) * 1000.0,
        statements: statements as f64 / webhooks,
        wal: per_webhook(|u| u.wal as f64),
        live_delivery_bytes: live,
        body_bytes: per_webhook(|u| u.bodies as f64),
        attempt_bytes: per_attempt(|u| u.attempts as f64),
        sent_bytes: per_attempt(|u| u.sent_bytes as f64),
        log_bytes: per_webhook(|u| u.log_bytes as f64),
    })
}

/// Counters read before and after a cost round.
struct Usage {
    /// CPU-seconds (user + system) of the service process, all threads.
    webhookd_cpu: f64,
    /// CPU-seconds of the whole PostgreSQL server (see `postgres_cpu`).
    postgres_cpu: f64,
    /// WAL position, in bytes.
    wal: i64,
    /// `pg_total_relation_size` (heap, indexes, TOAST) of delivery_bodies and of the
    /// attempts partitions: both only ever appended to, so their growth is the round's rows.
    /// A delivery row is updated twice per attempt: see `live_delivery_bytes`.
    bodies: i64,
    attempts: i64,
    /// Bytes the receiver has been sent.
    sent_bytes: u64,
    /// Bytes the service has logged (0 when its log is not kept in a file).
    log_bytes: u64,
}

/// Where the cost phase reads its counters: the service's and the postmaster's pids, and
/// the service's log file.
struct Meter<'a> {
    service: u32,
    postmaster: u32,
    log: &'a std::path::Path,
}

impl Meter<'_> {
    async fn read(&self, bench: &Bench) -> anyhow::Result<Usage> {
        let mut usage = usage(bench, self.service, self.postmaster).await?;
        usage.log_bytes = std::fs::metadata(self.log)?.len();
        Ok(usage)
    }
}

async fn usage(bench: &Bench, service: u32, postmaster: u32) -> anyhow::Result<Usage> {
    let (wal, bodies, attempts): (i64, i64, i64) = sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, pg_total_relation_size('delivery_bodies'),
                (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                 WHERE c.relkind = 'r' AND c.relname ~ '^attempts_[0-9]{8}$')",
    )
    .fetch_one(&bench.pool)
    .await?;
    Ok(Usage {
        webhookd_cpu: cpu_seconds(service, false),
        postgres_cpu: postgres_cpu(postmaster),
        wal,
        bodies,
        attempts,
        sent_bytes: bench.receiver.bytes().await?,
        log_bytes: 0,
    })
}

/// Bytes per finished delivery row once vacuum has made its dead versions' space reusable,
/// which is what a table holding days of history mostly consists of: the round's rows
/// copied in id (arrival) order into an empty table with the same definition and indexes.
/// (The table's growth during the round says less: new row versions reuse the space that
/// vacuum freed from earlier ones, and dead versions not yet vacuumed are counted.) Only the
/// second half's growth counts: a table has ~200 KB of pages whatever its size (index
/// metapages, free-space and visibility maps), which would add 40 B a row over 5,000 rows.
async fn live_delivery_bytes(pool: &PgPool, subscription: &str, since: time::OffsetDateTime) -> anyhow::Result<f64> {
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_cost_deliveries; CREATE TABLE bench_cost_deliveries (LIKE deliveries INCLUDING ALL)")
        .execute(pool)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE subscription_id = $1::uuid AND created_at >= $2")
        .bind(subscription)
        .bind(since)
        .fetch_one(pool)
        .await?;
    let mut sizes = Vec::new();
    for half in ["ORDER BY id LIMIT $3", "ORDER BY id OFFSET $3"] {
        // One of two fixed fragments, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO bench_cost_deliveries SELECT * FROM deliveries WHERE subscription_id = $1::uuid AND created_at >= $2 {half}"
        )))
        .bind(subscription)
        .bind(since)
        .bind(rows / 2)
        .execute(pool)
        .await?;
        let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('bench_cost_deliveries')").fetch_one(pool).await?;
        sizes.push(bytes);
    }
    sqlx::raw_sql("DROP TABLE bench_cost_deliveries").execute(pool).await?;
    Ok((sizes[1] - sizes[0]) as f64 / (rows - rows / 2).max(1) as f64)
}

/// CPU-seconds a second of the service and of PostgreSQL while nothing is sent: the floor
/// that a small deployment pays whatever its traffic.
async fn idle_cpu(pool: &PgPool, service: u32, postmaster: u32, duration: Duration) -> (f64, f64) {
    wait_for_receipts(pool).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (cpu_seconds(service, false), postgres_cpu(postmaster));
    tokio::time::sleep(duration).await;
    let seconds = duration.as_secs_f64();
    ((cpu_seconds(service, false) - before.0) / seconds, (postgres_cpu(postmaster) - before.1) / seconds)
}

/// The postmaster's pid: the parent of this connection's backend (the embedded cluster does
/// not expose its child's pid).
async fn postmaster_pid(pool: &PgPool) -> anyhow::Result<u32> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await?;
    proc_stat(backend as u32)
        .and_then(|fields| fields.get(1)?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read /proc/{backend}/stat"))
}

/// CPU-seconds of the whole PostgreSQL server: the postmaster, its live children (backends,
/// autovacuum, checkpointer, walwriter, …) and its ended children, whose time the kernel
/// adds to the postmaster's cutime/cstime when it reaps them (connections that closed,
/// autovacuum workers that finished).
fn postgres_cpu(postmaster: u32) -> f64 {
    let children: f64 = postmaster_children(postmaster).map(|pid| cpu_seconds(pid, false)).sum();
    children + cpu_seconds(postmaster, true)
}

/// The running processes whose parent is `postmaster`.
fn postmaster_children(postmaster: u32) -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(move |&pid| proc_stat(pid).and_then(|fields| fields.get(1)?.parse::<u32>().ok()) == Some(postmaster))
}

/// CPU-seconds of PostgreSQL's processes by kind: each background process by its title
/// ("walwriter", "autovacuum worker", ...), the client backends together, and the
/// postmaster with its reaped children (autovacuum workers that have exited).
fn postgres_cpu_by_kind(postmaster: u32) -> BTreeMap<String, f64> {
    const BACKGROUND: [&str; 7] = [
        "checkpointer",
        "background writer",
        "walwriter",
        "autovacuum launcher",
        "autovacuum worker",
        "logical replication launcher",
        "archiver",
    ];
    let mut kinds = BTreeMap::new();
    for pid in postmaster_children(postmaster) {
        let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = title.trim_start_matches("postgres: ");
        let kind = BACKGROUND.iter().find(|b| title.starts_with(**b)).copied().unwrap_or("client backends");
        *kinds.entry(kind.to_owned()).or_insert(0.0) += cpu_seconds(pid, false);
    }
    kinds.insert("postmaster and exited children".to_owned(), cpu_seconds(postmaster, true));
    kinds
}

/// utime + stime of a process (all its threads), plus cutime + cstime (its reaped
/// children) if `with_ended_children`, in seconds.
fn cpu_seconds(pid: u32, with_ended_children: bool) -> f64 {
    let Some(fields) = proc_stat(pid) else { return 0.0 };
    // Fields after the command name start at field 3 (state): utime is field 14.
    let ticks = |field: usize| fields.get(field - 3).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let mut total = ticks(14) + ticks(15);
    if with_ended_children {
        total += ticks(16) + ticks(17);
    }
    total as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// The fields of /proc/<pid>/stat after the command name (which may hold spaces and
/// parentheses, hence the split at the last ')').
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// 10,000 subscriptions, one in ten of which wants `bench.*` events.
async fn add_fan_out_subscriptions(bench: &Bench) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO subscriptions (id, target_url, event_types)
         SELECT gen_random_uuid(), $1,
                CASE WHEN n % 10 = 0 THEN ARRAY['bench.*'] ELSE ARRAY['other' || n || '.created'] END
         FROM generate_series(1, 10000) AS n",
    )
    .bind(&bench.receiver.url)
    .execute(&bench.pool)
    .await?;
    Ok(())
}

/// Median time to accept one event fanned out to 1,000 subscriptions (of 5, after a warm-up).
async fn fan_out_ms(bench: &Bench) -> anyhow::Result<f64> {
    // The ingest subscription takes every event: pause it meanwhile (through the API, so
    // the service's cache follows).
    set_active(bench, &bench.subscription, false).await?;
    let mut times = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let response = bench
            .client
            .post(format!("{}/events", bench.base))
            .bearer_auth(TOKEN)
            .body(format!("{{\"event_type\": \"bench.fanout\", \"payload\": {}}}", payload()))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "fan-out answered {}", response.status());
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(body["deliveries"].as_array().map(Vec::len) == Some(1000), "fan-out reached the wrong subscriptions");
        wait_for_receipts(&bench.pool).await;
    }
    times.remove(0); // warm-up
    times.sort_by(f64::total_cmp);
    set_active(bench, &bench.subscription, true).await?;
    Ok(times[times.len() / 2])
}

/// Pauses or resumes `subscription` through the API, so that the service's cache follows.
async fn set_active(bench: &Bench, subscription: &str, active: bool) -> anyhow::Result<()> {
    let response = bench
        .client
        .patch(format!("{}/subscriptions/{subscription}", bench.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "is_active": active }).to_string())
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "PATCH subscription answered {}", response.status());
    Ok(())
}

/// Loads 10 million rows of history, as 72 hours of steady traffic would leave them:
/// 5 million finished deliveries spread over the 10,000 subscriptions and the last three
/// days, each with one attempt. Bodies are 256 bytes (the size matters for disk, not for
/// the indexes the hot paths use). Returns (rows, bytes) afterwards, after the VACUUM
/// ANALYZE that autovacuum would run.
async fn add_history(bench: &Bench) -> anyhow::Result<(i64, i64)> {
    let now = time::OffsetDateTime::now_utc();
    webhookd::db::partitions::ensure_partitions(&bench.pool, now - Duration::from_secs(2 * 24 * 3600)).await?;
    let subscriptions: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM subscriptions").fetch_all(&bench.pool).await?;
    const CHUNK: i64 = 250_000;
    for chunk in 0..(HISTORY_DELIVERIES / CHUNK) {
        sqlx::query(
            // Oldest first, spread over the last 71 hours, with ids that start with their
            // millisecond like the service's UUIDv7 ids: index inserts land at the right
            // edge, as they do in production, which also makes the load several times faster
            // than with random ids.
            "WITH timed AS (
                 SELECT n, now() - make_interval(secs => 255600 * (1 - n::float8 / $5)) AS at
                 FROM generate_series($2::bigint, $3::bigint) AS n
             ), history AS (
                 SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
                         || '7' || substr(md5(n::text), 1, 19))::uuid AS id,
                        $1::uuid[] AS subs, n, at
                 FROM timed
             ), bodies AS (
                 INSERT INTO delivery_bodies (delivery_id, body)
                 SELECT id, convert_to(repeat('h', 256), 'UTF8') FROM history
             ), deliveries AS (
                 INSERT INTO deliveries (id, subscription_id, status, attempt_count, created_at, completed_at)
                 SELECT id, subs[1 + n % array_length(subs, 1)], 'succeeded', 1, at, at + interval '2 ms'
                 FROM history
                 RETURNING id, subscription_id, created_at
             )
             INSERT INTO attempts (delivery_id, subscription_id, attempt_number, outcome, status_code,
                                   duration_ms, response_excerpt, target_url, created_at)
             SELECT id, subscription_id, 1, 'success', 200, 2, 'ok', $4, created_at FROM deliveries",
        )
        .bind(&subscriptions)
        .bind(chunk * CHUNK)
        .bind((chunk + 1) * CHUNK - 1)
        .bind(&bench.receiver.url)
        .bind(HISTORY_DELIVERIES as f64)
        .execute(&bench.pool)
        .await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE deliveries, delivery_bodies, attempts").execute(&bench.pool).await?;
    storage(&bench.pool).await
}

/// How the service under test runs.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// The default: accepts and delivers.
    Full,
    /// `WEBHOOKD_WORKER_CONCURRENCY=0`: accepts only.
    ApiOnly,
}

/// Instances of one scale-out layout: how many take ingest traffic and what they are.
struct Layout {
    name: &'static str,
    /// Instances that accept and deliver; they get the traffic when there is no API-only one.
    full: usize,
    /// API-only instances (`WEBHOOKD_WORKER_CONCURRENCY=0`); they get the traffic when any.
    api_only: usize,
}

const LAYOUTS: [Layout; 5] = [
    Layout { name: "1 instance, accepting and delivering", full: 1, api_only: 0 },
    Layout { name: "2 instances, each accepting and delivering", full: 2, api_only: 0 },
    Layout { name: "3 instances, each accepting and delivering", full: 3, api_only: 0 },
    Layout { name: "1 API-only instance + 1 delivering instance", full: 1, api_only: 1 },
    Layout { name: "2 API-only instances + 1 delivering instance", full: 1, api_only: 2 },
];

/// Ingest for `seconds` spread over the instances that take traffic in each layout, then
/// until everything accepted is delivered: (accepted/s, accepted and delivered/s) per layout.
/// The bench's own service is stopped meanwhile.
async fn scale_out(bench: &Bench, binary: &std::path::Path, database_url: &str, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for layout in &LAYOUTS {
        let roles = std::iter::repeat_n(Role::ApiOnly, layout.api_only).chain(std::iter::repeat_n(Role::Full, layout.full));
        let mut services = Vec::new();
        for role in roles {
            let port = free_port();
            services.push((start_service(binary, database_url, port, role)?, format!("http://127.0.0.1:{port}"), role));
        }
        for (_, base, _) in &services {
            wait_healthy(&bench.client, base).await?;
        }
        // With API-only instances, only they take traffic; otherwise every instance does.
        let ingesting: Vec<String> = services
            .iter()
            .filter(|(_, _, role)| layout.api_only == 0 || *role == Role::ApiOnly)
            .map(|(_, base, _)| format!("{base}/ingest/{}", bench.subscription))
            .collect();
        let started = Instant::now();
        let accepted = load::post_for(&ingesting, Some(TOKEN), Duration::from_secs(seconds)).await;
        wait_for_receipts(&bench.pool).await;
        let end_to_end = accepted as f64 / started.elapsed().as_secs_f64();
        rows.push((
            format!("scale-out: {}", layout.name),
            format!("ingest {:.0}/s; accepted and delivered {end_to_end:.0}/s", accepted as f64 / seconds as f64),
        ));
        for (mut child, _, _) in services {
            stop_service(&mut child)?;
        }
    }
    Ok(rows)
}

fn start_service(binary: &std::path::Path, database_url: &str, port: u16, role: Role) -> anyhow::Result<Child> {
    Ok(service_command(binary, database_url, port, role).spawn()?)
}

/// The service's command line and environment, not started yet.
fn service_command(binary: &std::path::Path, database_url: &str, port: u16, role: Role) -> Command {
    let concurrency = if role == Role::ApiOnly { "0" } else { "512" };
    let mut command = Command::new(binary);
    command
        .env("WEBHOOKD_WORKER_CONCURRENCY", concurrency)
        .env("DATABASE_URL", database_url)
        .env("WEBHOOKD_LISTEN", format!("127.0.0.1:{port}"))
        .env("WEBHOOKD_ADMIN_TOKEN", TOKEN)
        .env("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "true")
        .env("WEBHOOKD_DATA_DIR", std::env::temp_dir().join("webhookd-bench"))
        .env("RUST_LOG", "warn")
        .env("WEBHOOKD_SHUTDOWN_GRACE", "1s")
        .stdout(Stdio::null());
    command
}

/// Restarts the service as it would run in production as far as its own work goes: logging
/// at `info` (a line per webhook accepted and per attempt) as JSON, here into `log`.
async fn restart_logging(bench: &Bench, binary: &std::path::Path, database_url: &str, port: u16, service: &mut Child, log: &std::path::Path) -> anyhow::Result<()> {
    stop_service(service)?;
    let mut command = service_command(binary, database_url, port, Role::Full);
    command.env("RUST_LOG", "info").env("WEBHOOKD_LOG_FORMAT", "json").stderr(std::fs::File::create(log)?);
    *service = command.spawn()?;
    wait_healthy(&bench.client, &bench.base).await
}

fn stop_service(service: &mut Child) -> anyhow::Result<()> {
    unsafe { libc::kill(service.id() as i32, libc::SIGTERM) };
    service.wait()?;
    Ok(())
}

async fn wait_healthy(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    Ok(webhookd_test_support::wait_healthy(client, base, Duration::from_secs(20), || Ok(())).await?)
}

/// Creates a subscription to `target` (signed with `secret` when given); returns its id.
async fn create_subscription(client: &reqwest::Client, base: &str, target: &str, secret: Option<&str>) -> anyhow::Result<String> {
    let body = serde_json::json!({ "target_url": target, "secret_key": secret });
    let id = webhookd_test_support::create_subscription(client, base, TOKEN, &body).await.map_err(anyhow::Error::msg)?;
    Ok(id.to_string())
}

fn payload() -> String {
    format!("{{\"data\":\"{}\"}}", "x".repeat(1010))
}

/// The load generator's connections POSTing to the bench subscription as fast as they can
/// for `duration`; returns how many got 202.
async fn ingest_for(bench: &Bench, duration: Duration) -> u64 {
    load::post_for(&[bench.ingest_url()], Some(TOKEN), duration).await
}

/// Sends `rate` webhooks a second to `subscription` for `duration`; returns (delivery id,
/// send time) pairs.
/// One webhook of a steady stream: its delivery id, when its request was sent, and how
/// long its 202 took in ms.
struct Sent {
    id: String,
    at: SystemTime,
    acknowledged_ms: f64,
}

async fn steady_ingest(bench: &Bench, subscription: &str, rate: u64, duration: Duration) -> Vec<Sent> {
    let url = format!("{}/ingest/{subscription}", bench.base);
    let client = &bench.client;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let at = SystemTime::now();
            let started = Instant::now();
            let response = client.post(&url).bearer_auth(TOKEN).body(payload()).send().await.ok()?;
            let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
            let acknowledged_ms = started.elapsed().as_secs_f64() * 1000.0;
            Some(Sent { id: body["delivery_id"].as_str()?.to_owned(), at, acknowledged_ms })
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        if let Ok(Some(one)) = task.await {
            sent.push(one);
        }
    }
    sent
}

/// Waits until nothing is left to deliver.
async fn wait_for_receipts(pool: &PgPool) {
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

/// A rate as a multiple of the machine's limit measured right before it.
fn ratio(rate: f64, limit: f64, limit_name: &str) -> String {
    format!("{:.2}× {limit_name} measured just before, {limit:.0}/s", rate / limit)
}

/// Raw HTTP requests/s from reqwest, the client webhookd delivers with, straight to the
/// receiver (no webhookd): the ceiling of delivery on this machine, to which each delivery
/// ratio is taken. The median of three rounds of `duration` each, after one round of
/// warm-up: single rounds measured 25,000-67,000/s from run to run on the benchmark machine.
async fn raw_http_rate(client: &reqwest::Client, url: &str, duration: Duration) -> f64 {
    load::reqwest_post_for(client, url, None, duration).await;
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(load::reqwest_post_for(client, url, None, duration).await as f64 / duration.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[1]
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

/// Queues `FAIRNESS_PER_SUBSCRIPTION` webhooks for each of 100 new subscriptions (half
/// pointed at a receiver that hangs, if `with_hanging`), interleaved as if they had arrived
/// together, and returns the healthy subscriptions' delivery rate.
/// How a fairness round's backlog is laid out in due order.
#[derive(Clone, Copy, PartialEq)]
enum Backlog {
    /// Round n holds one webhook per subscription, a millisecond after round n-1, as if
    /// they had all arrived together.
    Interleaved,
    /// Each subscription's webhooks in one block, the hanging subscriptions' blocks first:
    /// every claim has to step over their due rows to reach the healthy ones.
    HangingFirst,
}

async fn fairness_round(bench: &Bench, with_hanging: bool, backlog: Backlog) -> anyhow::Result<f64> {
    let (pool, receiver, healthy) = (&bench.pool, &bench.receiver, &bench.receiver.url);
    let hanging = bench.receiver.url_for("/hang");
    let ids: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::now_v7()).collect();
    let targets: Vec<String> = (0..100)
        .map(|n| if with_hanging && n % 2 == 1 { hanging.clone() } else { healthy.clone() })
        .collect();
    sqlx::query("INSERT INTO subscriptions (id, target_url) SELECT * FROM unnest($1::uuid[], $2::text[])")
        .bind(&ids)
        .bind(&targets)
        .execute(pool)
        .await?;
    let healthy_count = targets.iter().filter(|t| *t == healthy).count() as u64 * FAIRNESS_PER_SUBSCRIPTION;
    let before = receiver.count().await?;
    // Each row's place in due order, a millisecond apart; subscription k (1-based, hanging
    // when even) and its webhook n.
    let place = match backlog {
        Backlog::Interleaved => "(n - 1) * 100 + k",
        Backlog::HangingFirst => "(CASE WHEN k % 2 = 0 THEN k / 2 - 1 ELSE 50 + k / 2 END) * $2 + n",
    };
    // The layout is one of two fixed fragments, never input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH backlog AS (
             SELECT gen_random_uuid() AS id, s, now() - make_interval(secs => (100 * $2 - ({place})) * 0.001) AS due
             FROM generate_series(1, $2) AS n, unnest($1::uuid[]) WITH ORDINALITY AS u(s, k)
         ), bodies AS (
             INSERT INTO delivery_bodies (delivery_id, body) SELECT id, convert_to('{{}}', 'UTF8') FROM backlog
         )
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, created_at)
         SELECT id, s, 'queued', due, due FROM backlog ORDER BY due",
    )))
    .bind(&ids)
    .bind(FAIRNESS_PER_SUBSCRIPTION as i64)
    .execute(pool)
    .await?;
    sqlx::query("SELECT pg_notify('webhookd_work', '')").execute(pool).await?;
    let started = Instant::now();
    while receiver.count().await? - before < healthy_count {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "fairness round did not finish");
        tokio::time::sleep(RECEIVER_POLL).await;
    }
    let rate = healthy_count as f64 / started.elapsed().as_secs_f64();
    // Retire the round's subscriptions as a user would: what the hanging ones left ends as
    // failed (the attempts in flight when their receivers time out), so that later phases
    // and the storage figure start from finished work only.
    for id in &ids {
        bench.client.delete(format!("{}/subscriptions/{id}", bench.base)).bearer_auth(TOKEN).send().await?.error_for_status()?;
    }
    // Wait for those attempts to end (the delivery timeout): until then they hold send
    // slots, and the next round would measure with 200 fewer (the hanging-first round,
    // right after the half-hanging one, did until 2026-12-01: 56–78 % instead of ~95 %).
    let in_flight = async || -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'delivering'").fetch_one(pool).await?)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_flight().await? > 0 {
        anyhow::ensure!(Instant::now() < deadline, "attempts to the retired subscriptions still in flight after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(rate)
}

/// Rows of deliveries and attempts; bytes (tables and indexes) of those, bodies and events.
async fn storage(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let rows: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM attempts)").fetch_one(pool).await?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
         WHERE c.relkind = 'r' AND (c.relname IN ('deliveries', 'delivery_bodies', 'events') OR c.relname ~ '^attempts_[0-9]{8}$')",
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
