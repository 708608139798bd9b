//! Event-type filtering, fan-out, idempotency and operator retries.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{read_answer, spawn_app, spawn_app_with, Receiver, Reply, TestApp, ADMIN_TOKEN};

const LIMIT: Duration = Duration::from_secs(15);

async fn publish(app: &TestApp, body: &str, key: Option<&str>) -> crate::helpers::Answer {
    let mut request = app.http.post(app.url("/events")).bearer_auth(ADMIN_TOKEN).body(body.to_owned());
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    read_answer(request.send().await.unwrap()).await
}

#[tokio::test]
async fn unwanted_event_types_are_recorded_as_filtered_and_never_sent() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({"event_types": ["order.*", "invoice.paid"]})).await;

    let mut filtered = Vec::new();
    for event in [Some("invoice.created"), Some("order"), None] {
        let answer = app.ingest_bytes(subscription, b"{}".to_vec(), event).await;
        assert_eq!(answer.status, 202);
        assert_eq!(answer.body["status"], "filtered", "{event:?}");
        filtered.push(answer.body["delivery_id"].as_str().unwrap().to_owned());
    }
    let wanted = app.ingest_bytes(subscription, b"{}".to_vec(), Some("order.created")).await;
    assert_eq!(wanted.body["status"], "queued");
    app.wait_until_finished(wanted.body["delivery_id"].as_str().unwrap().parse().unwrap(), LIMIT).await;

    for id in filtered {
        let delivery = app.get(&format!("/deliveries/{id}")).await.body;
        assert_eq!(delivery["status"], "filtered");
        assert_eq!(delivery["attempts"], json!([]));
        assert!(delivery["next_attempt_at"].is_null());
    }
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn an_event_fans_out_to_every_active_subscription_that_wants_it() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let everything = app.create_subscription(&receiver.url, json!({})).await;
    let orders = app.create_subscription(&receiver.url, json!({"event_types": ["order.*"]})).await;
    let exact = app.create_subscription(&receiver.url, json!({"event_types": ["order.created"]})).await;
    let invoices = app.create_subscription(&receiver.url, json!({"event_types": ["invoice.*"]})).await;
    let inactive = app.create_subscription(&receiver.url, json!({"is_active": false})).await;
    let deleted = app.create_subscription(&receiver.url, json!({})).await;
    app.call("DELETE", &format!("/subscriptions/{deleted}"), None).await;

    let answer = publish(&app, r#"{"event_type": "order.created", "payload": { "id" : 7,  "items": [] }}"#, None).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let mut targeted: Vec<String> =
        answer.body["deliveries"].as_array().unwrap().iter().map(|d| d["subscription_id"].as_str().unwrap().to_owned()).collect();
    targeted.sort();
    let mut expected = vec![everything.to_string(), orders.to_string(), exact.to_string()];
    expected.sort();
    assert_eq!(targeted, expected, "not {invoices}, {inactive} or {deleted}");

    let event_id = answer.body["event_id"].as_str().unwrap();
    for delivery in answer.body["deliveries"].as_array().unwrap() {
        app.wait_until_finished(delivery["delivery_id"].as_str().unwrap().parse().unwrap(), LIMIT).await;
    }
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|r| r.body == br#"{ "id" : 7,  "items": [] }"#), "payload bytes are kept exactly");
    assert!(received.iter().all(|r| r.headers["x-webhook-event"] == "order.created"));

    let event = app.get(&format!("/events/{event_id}")).await;
    assert_eq!(event.status, 200);
    assert_eq!(event.body["event_type"], "order.created");
    let statuses: Vec<&str> = event.body["deliveries"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded"; 3]);
    assert!(event.body["deliveries"].as_array().unwrap().iter().all(|d| d["event_id"] == event_id));

    let only_catch_all = publish(&app, r#"{"event_type": "shipment.sent", "payload": 1}"#, None).await;
    assert_eq!(only_catch_all.status, 202);
    assert_eq!(only_catch_all.body["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(only_catch_all.body["deliveries"][0]["subscription_id"], everything.to_string());
}

#[tokio::test]
async fn malformed_events_are_refused() {
    let app = spawn_app().await;
    for (body, code) in [
        ("{}", "invalid_body"),
        (r#"{"event_type": "a.b"}"#, "invalid_body"),
        (r#"{"event_type": "bad type", "payload": 1}"#, "invalid_event_type"),
        (r#"{"event_type": "a.*", "payload": 1}"#, "invalid_event_type"),
        (r#"{"event_type": "a", "payload": 1, "extra": 2}"#, "invalid_body"),
        ("not json", "invalid_body"),
    ] {
        let answer = publish(&app, body, None).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.body["error"], code, "{body}");
    }
    assert_eq!(app.get(&format!("/events/{}", uuid::Uuid::now_v7())).await.status, 404);
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_ingest_answer() {
    let app = spawn_app().await;
    let first_subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"is_active": true})).await;
    let second_subscription = app.create_subscription("http://127.0.0.1:9/y", json!({})).await;
    let send = |subscription: uuid::Uuid, body: &'static str| {
        let request = app
            .http
            .post(app.url(&format!("/ingest/{subscription}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "order-42-created")
            .body(body);
        async move { read_answer(request.send().await.unwrap()).await }
    };
    let first = send(first_subscription, r#"{"order":42}"#).await;
    let again = send(first_subscription, r#"{"order":42}"#).await;
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.body, again.body);

    let different = send(first_subscription, r#"{"order":43}"#).await;
    assert_eq!(different.status, 409);
    assert_eq!(different.body["error"], "idempotency_key_reused");

    let elsewhere = send(second_subscription, r#"{"order":42}"#).await;
    assert_eq!(elsewhere.status, 202, "keys are per subscription");
    assert_ne!(elsewhere.body["delivery_id"], first.body["delivery_id"]);

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn concurrent_duplicates_create_exactly_one_delivery() {
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let requests = (0..16).map(|_| {
        let request = app
            .http
            .post(app.url(&format!("/ingest/{subscription}")))
            .bearer_auth(ADMIN_TOKEN)
            .header("Idempotency-Key", "same-key")
            .body("{}");
        async move { read_answer(request.send().await.unwrap()).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|a| a.status == 202), "{answers:?}");
    assert!(answers.iter().all(|a| a.body == answers[0].body));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 1);
}

/// The maintenance sweep deletes keys past their 24 hours by the instance's clock, a
/// request's own check by the database's: a repeat can find its key at its insert and see
/// it gone at its read. Here a trigger does the sweep's delete at that moment.
#[tokio::test]
async fn a_key_swept_away_between_its_insert_and_its_read_is_reserved_afresh_not_a_500() {
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let send = || {
        let request = app.http.post(app.url(&format!("/ingest/{subscription}"))).bearer_auth(ADMIN_TOKEN).header("Idempotency-Key", "swept").body("{}");
        async move { read_answer(request.send().await.unwrap()).await }
    };
    let first = send().await;
    assert_eq!(first.status, 202);
    sqlx::raw_sql(
        "CREATE TABLE swept (done bool NOT NULL);
         INSERT INTO swept VALUES (false);
         CREATE FUNCTION sweep_once() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NOT (SELECT done FROM swept) THEN
                 UPDATE swept SET done = true;
                 DELETE FROM idempotency_keys;
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER sweep_once AFTER INSERT ON idempotency_keys FOR EACH STATEMENT EXECUTE FUNCTION sweep_once();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let again = send().await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    assert_ne!(again.body["delivery_id"], first.body["delivery_id"], "the key had expired: a new delivery");
    let swept: bool = sqlx::query_scalar("SELECT done FROM swept").fetch_one(&app.pool).await.unwrap();
    assert!(swept, "the sweep ran between the insert and the read");
}

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_fan_out() {
    let app = spawn_app().await;
    app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let body = r#"{"event_type": "a.b", "payload": {}}"#;
    let first = publish(&app, body, Some("evt-1")).await;
    let again = publish(&app, body, Some("evt-1")).await;
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.body, again.body);
    let other = publish(&app, r#"{"event_type": "a.b", "payload": {"x": 1}}"#, Some("evt-1")).await;
    assert_eq!(other.status, 409);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.pool).await.unwrap();
    assert_eq!(events, 1);
}

#[tokio::test]
async fn a_finished_delivery_can_be_retried_with_continuing_attempt_numbers() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "")]).await;
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    let failed = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(failed["status"], "failed");

    let retried = app.call("POST", &format!("/deliveries/{id}/retry"), None).await;
    assert_eq!(retried.status, 202, "{:?}", retried.body);
    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "succeeded");
    let attempts: Vec<(i64, &str)> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt_number"].as_i64().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(attempts, [(1, "failure"), (2, "success")]);
    assert_eq!(receiver.received()[1].headers["x-webhook-attempt"], "2");

    assert_eq!(app.call("POST", &format!("/deliveries/{}/retry", uuid::Uuid::now_v7()), None).await.status, 404);
}

#[tokio::test]
async fn a_delivery_in_flight_cannot_be_retried() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::answering(500).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_for_delivery(id, LIMIT, |d| d["status"] == "retrying").await;
    let answer = app.call("POST", &format!("/deliveries/{id}/retry"), None).await;
    assert_eq!(answer.status, 409);
    assert_eq!(answer.body["error"], "delivery_not_finished");
}
