//! Bulk recovery: a subscription's failed deliveries in a time range are re-queued with
//! their ids, their attempt numbers continuing, in batches that survive a kill -9.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{fresh_database, http_client, read_answer, spawn_app_with, Receiver, Reply, Service, TestApp, ADMIN_TOKEN};

const LIMIT: Duration = Duration::from_secs(20);

fn recover_path(subscription: Uuid) -> String {
    format!("/subscriptions/{subscription}/recover")
}

/// Polls `GET /recoveries/{id}` until `done` holds (panics after `limit`).
async fn wait_for_recovery(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let answer = app.get(&format!("/recoveries/{id}")).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        if done(&answer.body) {
            return answer.body;
        }
        assert!(Instant::now() < deadline, "recovery not there: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn created_at(pool: &PgPool, delivery: Uuid) -> time::OffsetDateTime {
    sqlx::query_scalar("SELECT created_at FROM deliveries WHERE id = $1").bind(delivery).fetch_one(pool).await.unwrap()
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn failed_deliveries_in_a_range_are_requeued_with_their_ids_and_attempt_numbers() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", ""), ("WEBHOOKD_RECOVER_MAX", "3")]).await;
    let receiver = Receiver::start(vec![Reply::Status(500); 4], Reply::Status(200)).await;
    let operator = Receiver::answering(200).await;
    app.create_subscription(&operator.url, json!({"event_types": ["webhookd.recovery.*"]})).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let before_range = app.ingest(subscription, r#"{"n":0}"#).await;
    app.wait_until_finished(before_range, LIMIT).await;
    let mut in_range = Vec::new();
    for n in 1..=3 {
        let id = app.ingest(subscription, &format!(r#"{{"n":{n}}}"#)).await;
        assert_eq!(app.wait_until_finished(id, LIMIT).await["status"], "failed");
        in_range.push(id);
    }
    let since = rfc3339(created_at(&app.pool, in_range[0]).await);

    // Bad requests are explained; a dry run counts and changes nothing.
    let everything = app.call("POST", &recover_path(subscription), Some(json!({"since": "2020-01-01T00:00:00Z"}))).await;
    assert_eq!((everything.status, everything.body["error"].as_str()), (400, Some("too_many_deliveries")));
    assert!(everything.body["message"].as_str().unwrap().contains("WEBHOOKD_RECOVER_MAX"), "{:?}", everything.body);
    let backwards = app.call("POST", &recover_path(subscription), Some(json!({"since": since, "until": "2020-01-01T00:00:00Z"}))).await;
    assert_eq!((backwards.status, backwards.body["error"].as_str()), (400, Some("invalid_range")));
    let unknown = app.call("POST", &recover_path(Uuid::now_v7()), Some(json!({"since": since}))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(app.get(&format!("/recoveries/{}", Uuid::now_v7())).await.status, 404);
    let dry = app.call("POST", &recover_path(subscription), Some(json!({"since": since, "dry_run": true}))).await;
    assert_eq!((dry.status, &dry.body), (200, &json!({"matched": 3})));
    assert_eq!(app.get(&format!("/deliveries/{}", in_range[0])).await.body["status"], "failed");

    // An inactive subscription cannot be recovered (a dry run still counts).
    let path = format!("/subscriptions/{subscription}");
    app.call("PATCH", &path, Some(json!({"is_active": false}))).await;
    let refused = app.call("POST", &recover_path(subscription), Some(json!({"since": since}))).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (409, Some("subscription_inactive")));
    app.call("PATCH", &path, Some(json!({"is_active": true}))).await;

    let started = app.call("POST", &recover_path(subscription), Some(json!({"since": since}))).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    assert_eq!(started.body["matched"], 3);
    let recovery_id = started.body["recovery_id"].as_str().unwrap().to_owned();
    let done = wait_for_recovery(&app, &recovery_id, |r| r["status"] == "done").await;
    assert_eq!((&done["matched"], &done["requeued"], &done["subscription_id"]), (&json!(3), &json!(3), &json!(subscription)));
    assert!(done["completed_at"].is_string());

    for id in &in_range {
        let delivery = app.wait_until_finished(*id, LIMIT).await;
        assert_eq!((delivery["status"].as_str(), delivery["attempt_count"].as_i64()), (Some("succeeded"), Some(2)), "{delivery}");
        let numbers: Vec<i64> = delivery["attempts"].as_array().unwrap().iter().map(|a| a["attempt_number"].as_i64().unwrap()).collect();
        assert_eq!(numbers.iter().copied().collect::<HashSet<_>>(), HashSet::from([1, 2]), "{delivery}");
        let webhook_ids: Vec<String> = receiver
            .received()
            .iter()
            .filter(|r| r.headers["webhook-id"].to_str().unwrap().contains(&id.to_string()))
            .map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned())
            .collect();
        assert_eq!(webhook_ids.len(), 2, "the same webhook-id on the first attempt and the recovered one");
    }
    assert_eq!(app.get(&format!("/deliveries/{before_range}")).await.body["status"], "failed", "outside the range");
    let metrics = app.http.get(app.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("webhookd_recovered_deliveries_total 3\n"), "{metrics}");

    let completed = operator.wait_for(1, LIMIT).await;
    let event: Value = serde_json::from_slice(&completed[0].body).unwrap();
    assert_eq!(event["type"], "webhookd.recovery.completed");
    assert_eq!(event["data"], json!({"recovery_id": recovery_id, "subscription_id": subscription, "matched": 3, "requeued": 3}));
}

/// Inserts `count` failed deliveries of `subscription`, one attempt each, created a
/// millisecond apart in the last minute (the setup of a large recovery, fast).
async fn insert_failed_deliveries(pool: &PgPool, subscription: Uuid, count: i32) {
    sqlx::query(
        "WITH made AS (
             INSERT INTO deliveries (id, subscription_id, status, attempt_count, last_error, created_at, completed_at)
             SELECT gen_random_uuid(), $1, 'failed', 1, 'HTTP 500', now() - interval '1 minute' + g * interval '1 ms', now()
             FROM generate_series(1, $2) AS g
             RETURNING id)
         INSERT INTO delivery_bodies (delivery_id, body) SELECT id, '{}'::bytea FROM made",
    )
    .bind(subscription)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_recovery_interrupted_by_kill_9_is_resumed_after_restart_without_requeueing_twice() {
    const FAILED: i64 = 1_500;
    let database_url = fresh_database().await;
    // One delivery per batch, so that the kill lands between two of many small transactions.
    // The receiver still fails and there are no retries: a recovered delivery fails again at
    // once, so a recovery that re-queued anything twice would show a second round.
    let settings = [
        ("WEBHOOKD_RECOVER_BATCH", "1"),
        ("WEBHOOKD_RETRY_SCHEDULE", ""),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "1s"),
        ("WEBHOOKD_LEASE_DURATION", "3s"),
    ];
    let mut service = Service::start(&database_url, &settings).await;
    let client = http_client();
    let receiver = Receiver::answering(500).await;
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let pool = webhookd::db::connect_lazy(&database_url, 2, std::time::Duration::from_secs(30)).unwrap();
    insert_failed_deliveries(&pool, subscription, FAILED as i32).await;

    let started = client
        .post(format!("{}/subscriptions/{subscription}/recover", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"since": "2000-01-01T00:00:00Z"}).to_string())
        .send()
        .await
        .unwrap();
    let started = read_answer(started).await;
    assert_eq!((started.status, &started.body["matched"]), (202, &json!(FAILED)), "{:?}", started.body);
    let recovery: Uuid = started.body["recovery_id"].as_str().unwrap().parse().unwrap();
    let progress = || async {
        sqlx::query_as::<_, (String, i32)>("SELECT status, requeued FROM recoveries WHERE id = $1").bind(recovery).fetch_one(&pool).await.unwrap()
    };
    let deadline = Instant::now() + LIMIT;
    while progress().await.1 == 0 {
        assert!(Instant::now() < deadline, "the recovery never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    service.kill().await;
    let (status, requeued) = progress().await;
    assert!(status == "running" && (requeued as i64) < FAILED, "killed in the middle: {status}, {requeued} of {FAILED}");

    let _restarted = Service::start(&database_url, &settings).await;
    let deadline = Instant::now() + LIMIT;
    while progress().await.0 != "done" {
        assert!(Instant::now() < deadline, "the recovery was not resumed: {:?}", progress().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(progress().await.1 as i64, FAILED, "every delivery re-queued once");
    crate::helpers::wait_all_finished(&pool, Duration::from_secs(60)).await;
    // Each delivery was re-queued exactly once: one new round, after its first attempt.
    let rounds: Vec<(i32, String, i64)> =
        sqlx::query_as("SELECT round_start_attempt, status, count(*) FROM deliveries GROUP BY 1, 2").fetch_all(&pool).await.unwrap();
    assert_eq!(rounds, vec![(1, "failed".to_owned(), FAILED)]);
    let delivered: HashSet<String> = receiver.received().iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned()).collect();
    assert_eq!(delivered.len() as i64, FAILED, "every recovered delivery reached the receiver");
}

#[tokio::test]
async fn one_recovery_runs_per_subscription_and_times_out_of_range_are_refused() {
    // An API-only instance: nothing works on the recovery, so it stays running.
    let app = spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    insert_failed_deliveries(&app.pool, subscription, 5).await;
    let since = json!({"since": "2000-01-01T00:00:00Z"});
    let first = app.call("POST", &recover_path(subscription), Some(since.clone())).await;
    assert_eq!((first.status, &first.body["matched"]), (202, &json!(5)), "{:?}", first.body);
    let running = app.get(&format!("/recoveries/{}", first.body["recovery_id"].as_str().unwrap())).await.body;
    assert_eq!((&running["status"], &running["requeued"], &running["completed_at"]), (&json!("running"), &json!(0), &json!(null)));
    let second = app.call("POST", &recover_path(subscription), Some(since)).await;
    assert_eq!((second.status, second.body["error"].as_str()), (409, Some("recovery_running")));

    // Valid RFC 3339, but past year 9999 once in UTC: a 400, not a dropped connection.
    let far = json!({"since": "2026-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-01:00", "dry_run": true});
    let answer = app.call("POST", &recover_path(subscription), Some(far)).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (400, Some("invalid_range")), "{:?}", answer.body);
}

#[tokio::test]
async fn recoveries_waiting_on_paused_subscriptions_never_hold_up_a_newer_one() {
    let app = spawn_app_with(&[]).await;
    // More waiting recoveries, older, than a round looks at (100): each of a paused subscription.
    sqlx::query(
        "WITH paused AS (
             INSERT INTO subscriptions (id, target_url, event_types, is_active)
             SELECT gen_random_uuid(), 'http://127.0.0.1:9/x', '{}', false FROM generate_series(1, 120)
             RETURNING id)
         INSERT INTO recoveries (id, subscription_id, since, until, matched, cursor_created_at, cursor_id, created_at)
         SELECT gen_random_uuid(), id, now() - interval '2 days', now() - interval '1 day', 1,
                now() - interval '2 days', '00000000-0000-0000-0000-000000000000', now() - interval '1 day'
         FROM paused",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    insert_failed_deliveries(&app.pool, subscription, 3).await;

    let started = app.call("POST", &recover_path(subscription), Some(json!({"since": "2000-01-01T00:00:00Z"}))).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let done = wait_for_recovery(&app, started.body["recovery_id"].as_str().unwrap(), |r| r["status"] == "done").await;
    assert_eq!(done["requeued"], 3);
    receiver.wait_for(3, LIMIT).await;
}
