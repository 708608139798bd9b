//! Retention by partition drop and bounded deletes, driven by a simulated clock.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use webhookd::db::partitions::partition_name;
use webhookd::maintenance::{run_once, run_once_after};

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, Receiver, Reply, ADMIN_TOKEN};

const LIMIT: Duration = Duration::from_secs(15);
/// Each maintenance statement's limit, as the service's default.
const DEADLINE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(72 * 3600);

async fn partitions(pool: &sqlx::PgPool) -> Vec<String> {
    webhookd::db::partitions::list(pool).await.unwrap()
}

#[tokio::test]
async fn a_pass_after_the_retention_drops_old_partitions_and_finished_deliveries_only() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "1h")]).await;
    let ok = Receiver::answering(200).await;
    let failing = Receiver::answering(500).await;
    let delivered_to = app.create_subscription(&ok.url, json!({"event_types": ["order.*"]})).await;
    let retried_to = app.create_subscription(&failing.url, json!({})).await;
    let paused = app.create_subscription(&failing.url, json!({})).await;

    let succeeded = app.ingest_bytes(delivered_to, b"{}".to_vec(), Some("order.paid")).await.body["delivery_id"].clone();
    let filtered = app.ingest_bytes(delivered_to, b"{}".to_vec(), Some("user.created")).await.body["delivery_id"].clone();
    let retrying = app.ingest(retried_to, "{}").await;
    let parked = app.ingest(paused, "{}").await;
    app.wait_until_finished(succeeded.as_str().unwrap().parse().unwrap(), LIMIT).await;
    app.wait_for_delivery(retrying, LIMIT, |d| d["status"] == "retrying").await;
    app.wait_for_delivery(parked, LIMIT, |d| d["status"] == "retrying").await;
    app.call("PATCH", &format!("/subscriptions/{paused}"), Some(json!({"is_active": false}))).await;

    let today = OffsetDateTime::now_utc().date();
    let before = partitions(&app.pool).await;
    assert!(before.contains(&partition_name(today)));

    // Five days later: today's and earlier partitions are past retention + one day.
    let later = OffsetDateTime::now_utc() + Duration::from_secs(5 * 24 * 3600);
    let report = run_once(&app.pool, later, RETENTION, DEADLINE).await.unwrap();
    assert!(!report.skipped);
    assert!(report.dropped_partitions.contains(&partition_name(today)), "{report:?}");
    let after = partitions(&app.pool).await;
    assert!(!after.contains(&partition_name(today)));
    for ahead in 0..=3 {
        assert!(after.contains(&partition_name(later.date() + time::Duration::days(ahead))), "{after:?}");
    }
    assert_eq!(report.deleted_deliveries, 2, "the succeeded and the filtered delivery");
    assert_eq!(report.expired_parked_deliveries, 1);

    for gone in [succeeded.as_str().unwrap(), filtered.as_str().unwrap()] {
        assert_eq!(app.get(&format!("/deliveries/{gone}")).await.status, 404);
    }
    let kept = app.get(&format!("/deliveries/{retrying}")).await.body;
    assert_eq!(kept["status"], "retrying", "unfinished deliveries are never removed");
    assert_eq!(kept["attempts"], json!([]), "their old attempt logs went with the partition");
    let expired = app.get(&format!("/deliveries/{parked}")).await.body;
    assert_eq!(expired["status"], "failed");
    assert_eq!(expired["last_error"], "expired_while_subscription_inactive");
}

#[tokio::test]
async fn expired_idempotency_keys_orphan_events_and_deleted_subscriptions_are_removed() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let published = app
        .http
        .post(app.url("/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", "k-1")
        .body(r#"{"event_type": "a.b", "payload": {}}"#)
        .send()
        .await
        .unwrap();
    let published: serde_json::Value = serde_json::from_slice(&published.bytes().await.unwrap()).unwrap();
    let delivery = published["deliveries"][0]["delivery_id"].as_str().unwrap().parse().unwrap();
    app.wait_until_finished(delivery, LIMIT).await;
    app.call("DELETE", &format!("/subscriptions/{subscription}"), None).await;

    let later = OffsetDateTime::now_utc() + Duration::from_secs(5 * 24 * 3600);
    let report = run_once(&app.pool, later, RETENTION, DEADLINE).await.unwrap();
    assert_eq!(report.deleted_deliveries, 1);
    assert_eq!(report.deleted_events, 1);
    assert_eq!(report.deleted_idempotency_keys, 1);
    assert_eq!(report.purged_subscriptions, 1);
    let left: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM subscriptions)")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// An event still referred to when it grows old goes with its last delivery, though the
/// orphan sweep of later passes no longer looks at it (the plan test
/// `claim_isolation::the_orphan_event_sweep_…` checks what that sweep reads).
#[tokio::test]
async fn an_event_referred_to_past_the_cutoff_goes_with_its_last_delivery() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "1h")]).await;
    let ok = Receiver::answering(200).await;
    let failing = Receiver::answering(500).await;
    app.create_subscription(&ok.url, json!({"event_types": ["order.*"]})).await;
    app.create_subscription(&failing.url, json!({"event_types": ["order.*"]})).await;
    let publish = async |event_type: &str| {
        let answer = app.call("POST", "/events", Some(json!({"event_type": event_type, "payload": {}}))).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.body
    };
    let shared = publish("order.paid").await;
    let unmatched = publish("user.created").await;
    assert_eq!(unmatched["deliveries"], json!([]));
    let ids: Vec<uuid::Uuid> = shared["deliveries"].as_array().unwrap().iter().map(|d| d["delivery_id"].as_str().unwrap().parse().unwrap()).collect();
    for id in &ids {
        app.wait_for_delivery(*id, LIMIT, |d| d["status"] == "succeeded" || d["status"] == "retrying").await;
    }

    // Four days on: the delivered one goes, the retrying one keeps the event; the event
    // nothing was sent for goes.
    let later = OffsetDateTime::now_utc() + Duration::from_secs(4 * 24 * 3600);
    let first = run_once_after(&app.pool, later, RETENTION, DEADLINE, None).await.unwrap();
    assert_eq!((first.deleted_deliveries, first.deleted_events), (1, 1), "{first:?}");
    assert_eq!(first.events_checked_until, Some(later - RETENTION));
    let event = shared["event_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/events/{event}")).await.status, 200);

    // Its last delivery gives up; a pass later still goes from where the first one's
    // sweep ended, and the event goes with that delivery.
    sqlx::query("UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, completed_at = now() WHERE status = 'retrying'")
        .execute(&app.pool)
        .await
        .unwrap();
    let after = later + Duration::from_secs(4 * 24 * 3600);
    let second = run_once_after(&app.pool, after, RETENTION, DEADLINE, first.events_checked_until).await.unwrap();
    assert_eq!((second.deleted_deliveries, second.deleted_events), (1, 1), "{second:?}");
    assert_eq!(app.get(&format!("/events/{event}")).await.status, 404);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.pool).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_pass_today_keeps_everything_within_the_retention() {
    let app = spawn_app().await;
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    let report = run_once(&app.pool, OffsetDateTime::now_utc(), RETENTION, DEADLINE).await.unwrap();
    assert!(report.dropped_partitions.is_empty());
    assert_eq!(report.deleted_deliveries, 0);
    assert_eq!(app.get(&format!("/deliveries/{id}")).await.body["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn only_one_instance_runs_maintenance_at_a_time() {
    let app = spawn_app().await;
    let mut holder = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(7236418113)").execute(&mut *holder).await.unwrap();
    let report = run_once(&app.pool, OffsetDateTime::now_utc(), RETENTION, DEADLINE).await.unwrap();
    assert!(report.skipped);
    sqlx::query("SELECT pg_advisory_unlock(7236418113)").execute(&mut *holder).await.unwrap();
    drop(holder);
    assert!(!run_once(&app.pool, OffsetDateTime::now_utc(), RETENTION, DEADLINE).await.unwrap().skipped);
}

#[tokio::test]
async fn a_missing_future_partition_shows_in_health_until_maintenance_creates_it() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await.body["status"], "ok");
    let tomorrow = partition_name(OffsetDateTime::now_utc().date() + time::Duration::days(1));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {tomorrow}"))).execute(&app.pool).await.unwrap();

    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "degraded");
    assert!(health.body["checks"]["attempt_partitions"].as_str().unwrap().contains(&tomorrow));

    let report = run_once(&app.pool, OffsetDateTime::now_utc(), RETENTION, DEADLINE).await.unwrap();
    assert_eq!(report.created_partitions, [tomorrow]);
    assert_eq!(app.get("/health").await.body["status"], "ok");
}

#[tokio::test]
async fn an_old_delivery_parked_moments_ago_is_not_failed_as_expired() {
    let app = spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    // Created ten days ago and still waiting (its subscription was paused for days, then
    // resumed, and its receiver has been failing since): due now.
    let old = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH body AS (INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, '{}'))
         INSERT INTO deliveries (id, subscription_id, status, attempt_count, next_attempt_at, created_at)
         VALUES ($1, $2, 'retrying', 3, now(), now() - interval '10 days')",
    )
    .bind(old)
    .bind(subscription)
    .execute(&app.pool)
    .await
    .unwrap();
    // Paused again now: parked moments ago.
    app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    let parked = |d: &serde_json::Value| d["status"] == "retrying" && d["next_attempt_at"].is_null();
    app.wait_for_delivery(old, LIMIT, parked).await;

    let report = run_once(&app.pool, OffsetDateTime::now_utc(), RETENTION, DEADLINE).await.unwrap();
    assert_eq!(report.expired_parked_deliveries, 0, "parked just now: it has not waited a retention period");
    let kept = app.get(&format!("/deliveries/{old}")).await.body;
    assert!(parked(&kept), "still waiting, parked: {kept:#}");
}

#[tokio::test]
async fn a_partition_waits_briefly_for_its_lock_and_never_queues_attempts_behind_it() {
    use webhookd::db::partitions::{ensure_partitions, DAYS_AHEAD};
    let pool = sqlx::PgPool::connect(&fresh_database().await).await.unwrap();
    let now = OffsetDateTime::now_utc();
    ensure_partitions(&pool, now).await.unwrap();
    let last = partition_name(now.date() + time::Duration::days(DAYS_AHEAD));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {last}"))).execute(&pool).await.unwrap();
    // A long query on attempts: its transaction holds a lock that creating a partition
    // (ACCESS EXCLUSIVE on attempts) must wait for, and every attempt write would queue
    // behind that wait.
    let mut reader = pool.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM attempts").execute(&mut *reader).await.unwrap();

    let pass = run_once(&pool, now, RETENTION, DEADLINE);
    let report = tokio::time::timeout(Duration::from_secs(10), pass).await.expect("the pass waited for the long query").unwrap();
    assert!(!report.created_partitions.contains(&last), "{report}");
    // Nothing is left waiting on the server either (a statement given up by its client
    // would be): attempt writes go on.
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(waiting, 0);

    reader.commit().await.unwrap();
    let report = run_once(&pool, now, RETENTION, DEADLINE).await.unwrap();
    assert_eq!(report.created_partitions, [last], "the next pass creates it");
}

#[tokio::test]
async fn a_busy_old_partition_is_left_for_the_next_pass_and_the_rest_of_the_pass_goes_on() {
    let app = spawn_app().await;
    let ok = Receiver::answering(200).await;
    let subscription = app.create_subscription(&ok.url, json!({})).await;
    let delivered = app.ingest(subscription, "{}").await;
    app.wait_until_finished(delivered, LIMIT).await;
    let today = partition_name(OffsetDateTime::now_utc().date());
    // A long report over today's attempts holds a lock that dropping the partition needs.
    let mut report_reader = app.pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {today}"))).execute(&mut *report_reader).await.unwrap();

    let later = OffsetDateTime::now_utc() + Duration::from_secs(5 * 24 * 3600);
    let report = run_once(&app.pool, later, RETENTION, DEADLINE).await.expect("the pass goes on past a busy partition");
    assert_eq!(report.busy_partitions.first(), Some(&today), "{report}");
    assert!(!report.dropped_partitions.contains(&today), "{report}");
    assert_eq!(report.deleted_deliveries, 1, "the finished delivery is deleted all the same");

    report_reader.commit().await.unwrap();
    let report = run_once(&app.pool, later, RETENTION, DEADLINE).await.unwrap();
    assert!(report.dropped_partitions.contains(&today), "the next pass drops it: {report}");
    assert!(!partitions(&app.pool).await.contains(&today));
}
