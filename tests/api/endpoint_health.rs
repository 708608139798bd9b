//! Endpoint health: receivers that answer 410 Gone or keep failing are taken out of
//! service, and operators hear about it through operational events.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app_with, standard_webhooks_verifies, Received, Receiver, Reply, TestApp};

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
    // Parked by a batch committed after the disable (src/delivery/backlog.rs).
    let parked = app.wait_for_delivery(waiting, LIMIT, |d| d["next_attempt_at"].is_null()).await;
    assert_eq!(parked["status"], "retrying", "parked, not failed");

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

    // Re-enabled while the receiver still fails: a new streak starts, so the first failure
    // after it does not disable the subscription again; 300 ms and 3 failures later it does.
    let resumed_at: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(&app.pool).await.unwrap();
    let enabled = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": true}))).await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    let disabled_again = wait_until_inactive(&app, subscription).await;
    assert_eq!(disabled_again["disabled_reason"], "failing");
    let failing_since: time::OffsetDateTime =
        sqlx::query_scalar("SELECT failing_since FROM subscriptions WHERE id = $1").bind(subscription).fetch_one(&app.pool).await.unwrap();
    assert!(failing_since >= resumed_at, "the streak began before the re-enable: {failing_since} < {resumed_at}");
    let after_resume = receiver.received().len() - attempts;
    assert!(after_resume >= 3, "disabled again after {after_resume} attempt(s), not a new streak of 3");
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

/// An operator's subscription to every operational event, signed with a Standard Webhooks secret.
const OPERATOR_SECRET: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The body of an operational event as delivered, after checking it is the envelope and that
/// its type is also in `X-Webhook-Event`.
fn envelope(request: &Received) -> Value {
    assert!(request.body.starts_with(br#"{"type":"webhookd."#), "{}", String::from_utf8_lossy(&request.body));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "type, timestamp and data: {body}");
    assert_eq!(request.headers["x-webhook-event"].to_str().unwrap(), body["type"].as_str().unwrap());
    let timestamp = body["timestamp"].as_str().unwrap();
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339).expect("RFC 3339 timestamp");
    body
}

#[tokio::test]
async fn operators_receive_signed_events_when_deliveries_give_up_and_subscriptions_are_disabled() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "")]).await;
    let operator = Receiver::answering(200).await;
    let bystander = Receiver::answering(200).await;
    let customer = Receiver::start(vec![Reply::Status(500), Reply::Status(410)], Reply::Status(200)).await;
    app.create_subscription(&operator.url, json!({"event_types": ["webhookd.*"], "secret_key": OPERATOR_SECRET})).await;
    app.create_subscription(&bystander.url, json!({})).await; // takes every producer event, not webhookd's
    let subscription = app.create_subscription(&customer.url, json!({})).await;

    let answer = app.ingest_bytes(subscription, br#"{"n":1}"#.to_vec(), Some("order.created")).await;
    let first: Uuid = answer.body["delivery_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.wait_until_finished(first, LIMIT).await["status"], "failed");
    let gone = app.ingest(subscription, r#"{"n":2}"#).await;
    assert_eq!(app.wait_until_finished(gone, LIMIT).await["status"], "failed");

    let received = operator.wait_for(3, LIMIT).await;
    let events: Vec<Value> = received.iter().map(envelope).collect();
    for request in &received {
        standard_webhooks_verifies(OPERATOR_SECRET, request).expect("the Standard Webhooks library verifies the event");
    }
    let of_type = |t: &str| events.iter().filter(|e| e["type"] == t).map(|e| e["data"].clone()).collect::<Vec<_>>();
    let failed = of_type("webhookd.delivery.failed");
    assert_eq!(failed.len(), 2, "{events:?}");
    let first_failed = failed.iter().find(|d| d["delivery_id"] == first.to_string()).expect("an event for the first delivery");
    assert_eq!(
        first_failed,
        &json!({"delivery_id": first, "subscription_id": subscription, "event_type": "order.created",
                "attempts": 1, "last_error": first_failed["last_error"], "last_status_code": 500})
    );
    let disabled = of_type("webhookd.subscription.disabled");
    assert_eq!(disabled.len(), 1, "{events:?}");
    assert_eq!((&disabled[0]["subscription_id"], &disabled[0]["reason"]), (&json!(subscription), &json!("endpoint_gone")));
    let shown = app.get(&format!("/subscriptions/{subscription}")).await.body;
    let at = |v: &Value| time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(at(&disabled[0]["disabled_at"]), at(&shown["disabled_at"]));

    app.deliver_all_pending(LIMIT).await;
    assert!(bystander.received().is_empty(), "a subscription without filters gets no operational events");
    let metrics = app.http.get(app.url("/metrics")).bearer_auth(crate::helpers::ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("webhookd_subscriptions_disabled_total{reason=\"endpoint_gone\"} 1\n"), "{metrics}");
    assert!(metrics.contains("webhookd_subscriptions_disabled_total{reason=\"failing\"} 0\n"), "{metrics}");
}

#[tokio::test]
async fn an_operator_endpoint_that_fails_raises_no_event_about_its_own_events() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "")]).await;
    let operator = Receiver::answering(500).await;
    let customer = Receiver::answering(500).await;
    app.create_subscription(&operator.url, json!({"event_types": ["webhookd.*"]})).await;
    let subscription = app.create_subscription(&customer.url, json!({})).await;
    app.ingest(subscription, "{}").await;

    operator.wait_for(1, LIMIT).await;
    app.deliver_all_pending(LIMIT).await;
    // Everything has finished: a looping event would now be either queued or delivered.
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM operational_events").fetch_one(&app.pool).await.unwrap();
    let operational: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE event_type LIKE 'webhookd.%'").fetch_one(&app.pool).await.unwrap();
    assert_eq!((queued, operational), (0, 1), "one event about the customer's delivery, none about the operator's");
    assert_eq!(operator.received().len(), 1);
}

/// A receiver moved: its old URL answers 410 to an attempt still under way when the
/// subscription is pointed at the new one. That answer is about the old URL: the
/// subscription stays in service and the next webhook goes to the new target.
#[tokio::test]
async fn a_410_from_a_target_replaced_meanwhile_does_not_disable_the_subscription() {
    let app = spawn_app_with(&[]).await;
    let old = Receiver::start(vec![], Reply::Delay(Duration::from_millis(800), 410)).await;
    let new = Receiver::answering(200).await;
    let subscription = app.create_subscription(&old.url, json!({})).await;
    let first = app.ingest(subscription, "{}").await;
    old.wait_for(1, LIMIT).await;
    let moved = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"target_url": new.url}))).await;
    assert_eq!(moved.status, 200);
    assert_eq!(app.wait_until_finished(first, LIMIT).await["status"], "failed", "410: the old URL is gone");

    // Ingest checks the subscription is active: a disable would make this a 409.
    let second = app.ingest(subscription, "{}").await;
    assert_eq!(app.wait_until_finished(second, LIMIT).await["status"], "succeeded");
    assert_eq!(new.received().len(), 1);
    let current = app.get(&format!("/subscriptions/{subscription}")).await.body;
    assert_eq!((current["is_active"].as_bool(), current["disabled_reason"].as_str()), (Some(true), None), "{current:#}");
}
