use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, ADMIN_TOKEN};

#[tokio::test]
async fn ingest_answers_202_with_a_queued_delivery_only_once_stored() {
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"is_active": true})).await;
    let answer = app.ingest_bytes(subscription, br#"{"a":1}"#.to_vec(), Some("order.created")).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "queued");
    let id: uuid::Uuid = answer.body["delivery_id"].as_str().unwrap().parse().unwrap();
    let stored: (Vec<u8>, Option<String>) =
        sqlx::query_as("SELECT b.body, d.event_type FROM deliveries AS d JOIN delivery_bodies AS b ON b.delivery_id = d.id WHERE d.id = $1").bind(id).fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, (br#"{"a":1}"#.to_vec(), Some("order.created".to_owned())));
}

#[tokio::test]
async fn the_event_type_may_come_from_the_query_string() {
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let response = app
        .http
        .post(app.url(&format!("/ingest/{subscription}?event_type=user.signed_up")))
        .bearer_auth(ADMIN_TOKEN)
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let event: Option<String> = sqlx::query_scalar("SELECT event_type FROM deliveries").fetch_one(&app.pool).await.unwrap();
    assert_eq!(event.as_deref(), Some("user.signed_up"));
}

#[tokio::test]
async fn each_ingest_mistake_gets_its_own_4xx_and_stores_nothing() {
    let app = spawn_app_with(&[("WEBHOOKD_MAX_PAYLOAD", "1KiB")]).await;
    let active = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let inactive = app.create_subscription("http://127.0.0.1:9/y", json!({"is_active": false})).await;
    let unknown = uuid::Uuid::now_v7();

    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (format!("/ingest/{unknown}"), b"{}".to_vec(), 404, "not_found"),
        (format!("/ingest/{inactive}"), b"{}".to_vec(), 409, "subscription_inactive"),
        (format!("/ingest/{active}"), b"{not json".to_vec(), 400, "invalid_json"),
        (format!("/ingest/{active}"), b"".to_vec(), 400, "invalid_json"),
        (format!("/ingest/{active}"), b"{} {}".to_vec(), 400, "invalid_json"),
        (format!("/ingest/{active}"), format!("\"{}\"", "x".repeat(2000)).into_bytes(), 413, "payload_too_large"),
        ("/ingest/not-a-uuid".to_owned(), b"{}".to_vec(), 400, "invalid_id"),
        (format!("/ingest/{active}?event_type=bad%20type"), b"{}".to_vec(), 400, "invalid_event_type"),
    ];
    for (path, body, status, code) in cases {
        let response = app.http.post(app.url(&path)).bearer_auth(ADMIN_TOKEN).body(body).send().await.unwrap();
        let answer = crate::helpers::read_answer(response).await;
        assert_eq!(answer.status, status, "{path}: {:?}", answer.body);
        assert_eq!(answer.body["error"], code, "{path}");
        assert!(answer.body["message"].is_string(), "{path}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_accepted_and_a_streamed_oversize_one_refused() {
    let app = spawn_app_with(&[("WEBHOOKD_MAX_PAYLOAD", "1KiB")]).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let exact = format!("\"{}\"", "x".repeat(1022)).into_bytes();
    assert_eq!(exact.len(), 1024);
    assert_eq!(app.ingest_bytes(subscription, exact, None).await.status, 202);

    // No Content-Length: the limit must hold while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..64).map(|_| Ok(vec![b' '; 64])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = app.http.post(app.url(&format!("/ingest/{subscription}"))).bearer_auth(ADMIN_TOKEN).body(body).send().await.unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn while_the_database_is_unreachable_ingest_and_health_answer_503() {
    // A port nothing listens on stands in for a database that is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://nobody:nothing@127.0.0.1:{port}/none");
    let app = crate::helpers::spawn_app_on(&url, &[("WEBHOOKD_AUTO_MIGRATE", "false")]).await;

    let health = app.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.body["error"], "database_unavailable");
    let started = std::time::Instant::now();
    let answer = app.ingest_bytes(uuid::Uuid::now_v7(), b"{}".to_vec(), None).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.body["error"], "database_unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "no hang");
}
