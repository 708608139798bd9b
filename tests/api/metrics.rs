//! `GET /metrics`: after known traffic, the counters Prometheus scrapes say what happened.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app, Receiver, ADMIN_TOKEN};

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_what_happened_and_need_the_admin_token() {
    let app = spawn_app().await;
    let healthy = Receiver::answering(200).await;
    let broken = Receiver::answering(500).await;
    let ok = app.create_subscription(&healthy.url, json!({})).await;
    let failing = app.create_subscription(&broken.url, json!({})).await;
    for n in 0..3 {
        app.ingest(ok, &format!(r#"{{"n":{n}}}"#)).await;
    }
    app.ingest(failing, r#"{"doomed":true}"#).await;
    app.deliver_all_pending(Duration::from_secs(20)).await;
    assert_eq!(app.get("/no/such/path").await.status, 404);

    let anonymous = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let response = app.http.get(app.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();

    assert_eq!(sample(&text, "webhookd_ingested_total"), 4.0);
    // The test schedule is 100ms,100ms: three attempts, then the delivery gives up.
    assert_eq!(sample(&text, r#"webhookd_delivery_attempts_total{outcome="success"}"#), 3.0);
    assert_eq!(sample(&text, r#"webhookd_delivery_attempts_total{outcome="failed_attempt"}"#), 2.0);
    assert_eq!(sample(&text, r#"webhookd_delivery_attempts_total{outcome="failure"}"#), 1.0);
    assert_eq!(sample(&text, "webhookd_delivery_attempt_duration_seconds_count"), 6.0);
    assert_eq!(sample(&text, "webhookd_delivery_lag_seconds_count"), 6.0);
    let ingest = r#"{method="POST",route="/ingest/{subscription_id}",status="2xx"}"#;
    assert_eq!(sample(&text, &format!("webhookd_http_requests_total{ingest}")), 4.0);
    assert_eq!(sample(&text, r#"webhookd_http_requests_total{method="GET",route="unmatched",status="4xx"}"#), 1.0);
    assert_eq!(sample(&text, r#"webhookd_http_requests_total{method="GET",route="/metrics",status="4xx"}"#), 1.0);
    for status in ["queued", "retrying", "delivering"] {
        assert_eq!(sample(&text, &format!(r#"webhookd_queue_depth{{status="{status}"}}"#)), 0.0);
    }
    assert_eq!(sample(&text, "webhookd_queue_oldest_due_age_seconds"), 0.0);
    assert_eq!(sample(&text, "webhookd_db_pool_max_connections"), 8.0);
    // The writer loops' own pool: one connection for each of the three loops, one spare.
    assert_eq!(sample(&text, "webhookd_db_writer_pool_max_connections"), 4.0);
    assert!(sample(&text, "webhookd_db_writer_pool_connections") >= 1.0, "the ingest writer's connection is open");
    assert!(sample(&text, "webhookd_http_connections") >= 1.0);
    assert_eq!(sample(&text, &format!(r#"webhookd_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(!text.contains(&ok.to_string()) && !text.contains(&failing.to_string()), "no subscription ids in labels");
}

#[tokio::test]
async fn queue_gauges_show_a_backlog_and_how_long_it_has_waited() {
    let app = crate::helpers::spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    for _ in 0..5 {
        app.ingest(subscription, "{}").await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = app.http.get(app.url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&text, r#"webhookd_queue_depth{status="queued"}"#), 5.0);
    assert!(sample(&text, "webhookd_queue_oldest_due_age_seconds") >= 1.0, "{text}");
}
