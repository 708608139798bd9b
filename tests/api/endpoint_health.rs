//! Endpoint health: a receiver that answers 410 Gone is taken out of service.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{spawn_app_with, Receiver, Reply, TestApp};

const LIMIT: Duration = Duration::from_secs(15);

/// Waits until the subscription shows `is_active: false`; returns it as shown.
async fn wait_until_inactive(app: &TestApp, subscription: uuid::Uuid) -> serde_json::Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let shown = app.get(&format!("/subscriptions/{subscription}")).await.body;
        if shown["is_active"] == false {
            return shown;
        }
        assert!(Instant::now() < deadline, "not disabled: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_410_fails_its_delivery_at_once_and_disables_the_subscription_until_it_is_reenabled() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start(vec![Reply::Status(503), Reply::Status(410)], Reply::Status(200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;

    // A first webhook fails once and waits an hour for its retry…
    let waiting = app.ingest(subscription, r#"{"n":1}"#).await;
    app.wait_for_delivery(waiting, LIMIT, |d| d["status"] == "retrying").await;
    // …then the receiver answers 410 to the next one: no retry, and the subscription is disabled.
    let gone = app.ingest(subscription, r#"{"n":2}"#).await;
    let failed = app.wait_until_finished(gone, LIMIT).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempt_count"], 1, "the receiver said it is gone: no retries");

    let disabled = wait_until_inactive(&app, subscription).await;
    assert_eq!(disabled["disabled_reason"], "endpoint_gone");
    assert!(disabled["disabled_at"].is_string());
    let refused = app.ingest_bytes(subscription, b"{}".to_vec(), None).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (409, Some("subscription_inactive")));
    let parked = app.get(&format!("/deliveries/{waiting}")).await.body;
    assert_eq!((parked["status"].as_str(), &parked["next_attempt_at"]), (Some("retrying"), &json!(null)), "parked, not failed");

    // Re-enabling clears the reason, and the parked delivery is due at once.
    let enabled = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": true}))).await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    assert_eq!((enabled.body["is_active"].as_bool(), &enabled.body["disabled_reason"]), (Some(true), &json!(null)));
    assert_eq!(enabled.body["disabled_at"], json!(null));
    assert_eq!(app.wait_until_finished(waiting, LIMIT).await["status"], "succeeded");
}

#[tokio::test]
async fn an_admin_pause_sets_no_reason() {
    let app = spawn_app_with(&[]).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let paused = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    assert_eq!((paused.body["is_active"].as_bool(), &paused.body["disabled_reason"]), (Some(false), &json!(null)));
}

#[tokio::test]
async fn a_subscription_failing_for_longer_than_the_limit_is_disabled_and_a_success_resets_the_streak() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"), ("WEBHOOKD_AUTO_DISABLE_AFTER", "300ms")]).await;
    // A receiver that fails twice, recovers once (resetting the streak), then fails for good.
    let script = vec![Reply::Status(500), Reply::Status(500), Reply::Status(200)];
    let receiver = Receiver::start(script, Reply::Status(503)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let first = app.ingest(subscription, r#"{"n":1}"#).await;
    assert_eq!(app.wait_until_finished(first, LIMIT).await["status"], "succeeded");
    let streak: (Option<time::OffsetDateTime>, i32) =
        sqlx::query_as("SELECT failing_since, failed_in_streak FROM subscriptions WHERE id = $1").bind(subscription).fetch_one(&app.pool).await.unwrap();
    assert_eq!(streak, (None, 0), "the success ended the first streak");

    // Now every attempt fails: after 300 ms and at least 3 failures the subscription is disabled.
    let second = app.ingest(subscription, r#"{"n":2}"#).await;
    let disabled = wait_until_inactive(&app, subscription).await;
    assert_eq!(disabled["disabled_reason"], "failing");
    // Its delivery stops where it is: parked, not failed, no further attempts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parked = app.get(&format!("/deliveries/{second}")).await.body;
    assert_eq!(parked["status"], "retrying", "{parked}");
    let attempts = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), attempts, "no attempt after the subscription was disabled");
}

#[tokio::test]
async fn producers_cannot_send_webhookd_event_types_but_may_subscribe_to_them() {
    let app = spawn_app_with(&[]).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"event_types": ["webhookd.*"]})).await;
    let ingested = app.ingest_bytes(subscription, b"{}".to_vec(), Some("webhookd.subscription.disabled")).await;
    assert_eq!((ingested.status, ingested.body["error"].as_str()), (400, Some("invalid_event_type")));
    let published = app.call("POST", "/events", Some(json!({"event_type": "webhookd.delivery.failed", "payload": {}}))).await;
    assert_eq!((published.status, published.body["error"].as_str()), (400, Some("invalid_event_type")), "{:?}", published.body);
}
