//! The real `webhookd` binary as a process: configuration errors, signals, the embedded
//! database (run as the unprivileged `postgres` user when we are root), `migrate`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{cluster, free_port, fresh_database, webhookd_command as webhookd, Service, ADMIN_TOKEN};

/// A directory for one test, traversable by the postgres user.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("webhookd-tests").join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_setting_exits_with_a_message_naming_the_variable() {
    for (variable, value) in [
        ("WEBHOOKD_RETRY_SCHEDULE", "soon"),
        ("WEBHOOKD_LISTEN", "everywhere"),
        ("WEBHOOKD_MAX_PAYLOAD", "huge"),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "-1"),
        ("WEBHOOKD_WORKER_CONCURRENCY", "-1"),
        ("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "perhaps"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        let output = webhookd().env(variable, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}={value}: {stderr}");
    }
}

#[tokio::test]
async fn with_database_url_it_serves_and_exits_zero_on_sigterm() {
    let database_url = fresh_database().await;
    let mut command = webhookd();
    command
        .env("DATABASE_URL", &database_url)
        .env("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("WEBHOOKD_DATA_DIR", scratch_dir("external"));
    let mut service = Service::spawn(command, free_port(), Duration::from_secs(20)).await;
    assert_eq!(service.terminate(Duration::from_secs(15)).await, Some(0), "exit status");
    assert!(!service.logs().contains(ADMIN_TOKEN), "the configured token is never logged");
}

#[tokio::test]
async fn without_database_url_it_runs_its_own_cluster_and_reuses_it() {
    let data_dir = scratch_dir("embedded");
    let start = || {
        let mut command = webhookd();
        command.env("WEBHOOKD_DATA_DIR", &data_dir).env("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "true");
        Service::spawn(command, free_port(), Duration::from_secs(60))
    };
    let mut service = start().await;

    let token = std::fs::read_to_string(data_dir.join("admin_token")).unwrap().trim().to_owned();
    assert!(token.len() >= 32);
    let cluster_dir = data_dir.join("postgres");
    assert!(cluster_dir.join("PG_VERSION").exists());
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        assert_ne!(std::fs::metadata(&cluster_dir).unwrap().uid(), 0, "as root, the cluster belongs to an unprivileged user");
    }
    let client = crate::helpers::http_client();
    let created = client
        .post(format!("{}/subscriptions", service.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"target_url": "http://127.0.0.1:9/x", "name": "kept"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    assert_eq!(service.terminate(Duration::from_secs(30)).await, Some(0), "{}", service.logs());
    assert_eq!(service.logs().matches(&token).count(), 1, "the generated token is printed exactly once");
    assert!(!cluster_dir.join("postmaster.pid").exists(), "the cluster was stopped on exit");

    // Second start: same cluster (the subscription is still there), same token, not printed again.
    let mut service = start().await;
    let listed = client.get(format!("{}/subscriptions", service.base)).bearer_auth(&token).send().await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.bytes().await.unwrap()).unwrap();
    assert_eq!(listed["items"][0]["name"], "kept");
    assert_eq!(service.terminate(Duration::from_secs(30)).await, Some(0));
    assert!(!service.logs().contains(&token));
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_killed_webhookd_does_not_leave_its_cluster_running() {
    let data_dir = scratch_dir("killed");
    let mut command = webhookd();
    command.env("WEBHOOKD_DATA_DIR", &data_dir);
    let mut service = Service::spawn(command, free_port(), Duration::from_secs(60)).await;
    service.kill().await;
    let pid_file = data_dir.join("postgres/postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_file.exists() {
        assert!(Instant::now() < deadline, "the cluster outlived webhookd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn migrate_applies_the_schema_to_an_empty_database() {
    let cluster = cluster();
    let name = format!("empty_{}", uuid::Uuid::new_v4().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url_for("postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let url = cluster.url_for(&name);
    let output = webhookd().arg("migrate").env("DATABASE_URL", &url).env("WEBHOOKD_DATA_DIR", scratch_dir("migrate")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename IN ('subscriptions', 'deliveries', 'attempts')")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(tables, 3);
}


/// Instances starting together take turns at the migrations, and one waiting for its turn
/// holds no snapshot. A migration that builds or drops an index CONCURRENTLY waits for every
/// older snapshot; waited for inside a statement (sqlx's own lock), the turn held one, and
/// the two starts waited for each other until PostgreSQL failed one of them.
#[tokio::test]
async fn an_instance_waiting_for_its_turn_at_migrations_does_not_block_an_index_build() {
    use sqlx::Connection;
    let database_url = fresh_database().await;
    // Another instance is migrating: it holds the turn...
    let mut migrating = sqlx::PgConnection::connect(&database_url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(8603390863846894436)").execute(&mut migrating).await.unwrap();
    let mut command = webhookd();
    command.arg("migrate").env("DATABASE_URL", &database_url).env("WEBHOOKD_DATA_DIR", scratch_dir("migrate-turns"));
    let waiting = tokio::task::spawn_blocking(move || command.output().unwrap());
    let mut observer = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let asked = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_try_advisory_lock(8603390863846894436)%' AND pid <> pg_backend_pid()";
    while sqlx::query_scalar::<_, i64>(asked).fetch_one(&mut observer).await.unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and builds an index CONCURRENTLY while this one waits for its turn.
    let build = sqlx::query("CREATE INDEX CONCURRENTLY turns_test_idx ON deliveries (created_at)").execute(&mut migrating);
    let built = tokio::time::timeout(Duration::from_secs(10), build).await;
    assert!(matches!(built, Ok(Ok(_))), "the index build waited for the instance waiting its turn: {built:?}");
    sqlx::query("SELECT pg_advisory_unlock(8603390863846894436)").execute(&mut migrating).await.unwrap();

    let output = waiting.await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Two states a plain sqlx run refuses to start from, and a start after each: an index
/// build of a no-transaction migration that finished after its start was killed (the index
/// there, the migration unrecorded: "already exists" at every start), and a database a
/// newer webhookd migrated (a rollback: "previously applied but is missing").
#[tokio::test]
async fn migrate_mends_an_unrecorded_index_build_and_runs_on_a_newer_schema() {
    use sqlx::Connection;
    let database_url = fresh_database().await;
    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    sqlx::raw_sql(
        "DELETE FROM _sqlx_migrations WHERE version = 20261201000034;
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (20991231000001, 'from a newer webhookd', true, '\\x00', 1)",
    )
    .execute(&mut db)
    .await
    .unwrap();

    let output = webhookd().arg("migrate").env("DATABASE_URL", &database_url).env("WEBHOOKD_DATA_DIR", scratch_dir("migrate-mend")).output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("building it again"), "{log}");
    assert!(log.contains("a newer webhookd applied them"), "{log}");
    let valid: bool = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'deliveries_parked_since_idx'::regclass")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(valid, "the index is built again");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = 20261201000034 AND success").fetch_one(&mut db).await.unwrap();
    assert_eq!(recorded, 1);
}

#[tokio::test]
async fn maintenance_now_runs_one_pass_as_if_at_that_time_and_says_what_it_did() {
    let database_url = fresh_database().await;
    let data_dir = scratch_dir("maintenance");
    // A pass now creates today's partitions, as a running service would have.
    let output = webhookd().arg("maintenance").env("DATABASE_URL", &database_url).env("WEBHOOKD_DATA_DIR", &data_dir).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("created partitions: attempts_"));

    let later = (time::OffsetDateTime::now_utc() + Duration::from_secs(6 * 24 * 3600))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let output = webhookd()
        .args(["maintenance", "--now", &later])
        .env("DATABASE_URL", &database_url)
        .env("WEBHOOKD_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    let today = webhookd::db::partitions::partition_name(time::OffsetDateTime::now_utc().date());
    assert!(printed.contains("dropped partitions:") && printed.contains(&today), "{printed}");
    assert!(printed.contains("created partitions: attempts_"), "{printed}");

    let bad = webhookd().args(["maintenance", "--now", "next tuesday"]).env("DATABASE_URL", &database_url).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}

#[tokio::test]
async fn healthcheck_exits_zero_while_the_service_answers_and_one_otherwise() {
    let database_url = fresh_database().await;
    let port = free_port();
    let mut command = webhookd();
    command
        .env("DATABASE_URL", &database_url)
        .env("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("WEBHOOKD_DATA_DIR", scratch_dir("healthcheck"));
    let mut service = Service::spawn(command, port, Duration::from_secs(20)).await;
    let probe = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            webhookd().arg("healthcheck").args(args).env("WEBHOOKD_LISTEN", format!("0.0.0.0:{port}")).output().unwrap()
        })
    };
    let healthy = probe(vec![]).await.unwrap();
    assert_eq!(healthy.status.code(), Some(0), "{}", String::from_utf8_lossy(&healthy.stderr));
    let elsewhere = probe(vec!["--url".into(), format!("http://127.0.0.1:{}/health", free_port())]).await.unwrap();
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("healthcheck"));
    assert_eq!(service.terminate(Duration::from_secs(15)).await, Some(0));
    let stopped = probe(vec![]).await.unwrap();
    assert_eq!(stopped.status.code(), Some(1), "a stopped service is unhealthy");
}

#[tokio::test]
async fn the_container_policy_refuses_to_mint_a_token_that_a_restart_would_lose() {
    let database_url = fresh_database().await;
    let data_dir = scratch_dir("no-volume");
    let (code, stderr) = crate::helpers::run_to_exit(&[
        ("DATABASE_URL", &database_url),
        ("WEBHOOKD_DATA_DIR", data_dir.to_str().unwrap()),
        ("WEBHOOKD_ADMIN_TOKEN_POLICY", "require-or-volume"),
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("set WEBHOOKD_ADMIN_TOKEN"), "{stderr}");
}

/// A database that cannot hold every text (a LATIN1 one) is refused at start, with the
/// fix, instead of failing requests and outcome writes one by one later.
#[tokio::test]
async fn a_database_not_encoded_in_utf8_is_refused_at_start_with_the_fix() {
    let cluster = cluster();
    let name = format!("latin1_{}", uuid::Uuid::new_v4().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url_for("postgres")).await.unwrap();
    let create = format!("CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut admin).await.unwrap();
    let output = webhookd().arg("migrate").env("DATABASE_URL", cluster.url_for(&name)).env("WEBHOOKD_DATA_DIR", scratch_dir("latin1")).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is encoded LATIN1") && stderr.contains("ENCODING 'UTF8'"), "{stderr}");
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url_for(&name)).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'deliveries'").fetch_one(&mut connection).await.unwrap();
    assert_eq!(tables, 0, "nothing was created");
}

#[test]
fn migrate_against_an_unreachable_database_says_why_in_one_line() {
    let url = format!("postgres://webhookd:secret@127.0.0.1:{}/webhookd", free_port());
    let output = webhookd().arg("migrate").env("DATABASE_URL", url).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL") && stderr.contains("refused"), "the cause, not a pool timeout: {stderr}");
}
