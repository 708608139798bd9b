//! Receivers that misbehave at the HTTP level, served by raw TCP on 127.0.0.1.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{spawn_app_with, Receiver};

/// What a raw receiver does once a request has arrived.
#[derive(Clone, Copy)]
enum Misbehaviour {
    Hang,
    Reset,
    Slow,
    Redirect,
    HugeBody,
    NotHttp,
}

/// Starts a raw TCP receiver; returns its URL.
async fn raw_receiver(behaviour: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                match behaviour {
                    Misbehaviour::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                    Misbehaviour::Reset => {
                        // Linger 0: closing sends RST instead of FIN (and so never blocks).
                        #[expect(deprecated, reason = "a zero linger cannot block the thread on drop")]
                        let _ = socket.set_linger(Some(Duration::ZERO));
                        drop(socket);
                    }
                    Misbehaviour::Slow => {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow").await;
                    }
                    Misbehaviour::Redirect => {
                        let answer = b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n";
                        let _ = socket.write_all(answer).await;
                    }
                    Misbehaviour::HugeBody => {
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10737418240\r\n\r\n").await;
                        let chunk = vec![b'x'; 64 * 1024];
                        while socket.write_all(&chunk).await.is_ok() {}
                    }
                    Misbehaviour::NotHttp => {
                        let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn each_misbehaving_receiver_gets_a_clear_attempt_record_while_others_are_delivered() {
    let app = spawn_app_with(&[("WEBHOOKD_DELIVERY_TIMEOUT", "2s"), ("WEBHOOKD_RETRY_SCHEDULE", "")])
    .await;
    let healthy = Receiver::answering(200).await;
    let healthy_subscription = app.create_subscription(&healthy.url, json!({})).await;

    let cases = [
        (Misbehaviour::Hang, None, "timeout"),
        (Misbehaviour::Reset, None, ""),
        (Misbehaviour::Slow, Some(200), ""),
        (Misbehaviour::Redirect, Some(302), "receiver answered HTTP 302"),
        (Misbehaviour::HugeBody, Some(200), ""),
        (Misbehaviour::NotHttp, None, ""),
    ];
    let mut deliveries = Vec::new();
    for (behaviour, _, _) in &cases {
        let subscription = app.create_subscription(&raw_receiver(*behaviour).await, json!({})).await;
        deliveries.push(app.ingest(subscription, "{}").await);
    }
    // While the hanging receiver holds its attempt open, the healthy subscription is served.
    let mut healthy_deliveries = Vec::new();
    for _ in 0..20 {
        healthy_deliveries.push(app.ingest(healthy_subscription, "{}").await);
    }
    for id in &healthy_deliveries {
        app.wait_until_finished(*id, Duration::from_secs(15)).await;
    }
    let hanging = app.get(&format!("/deliveries/{}", deliveries[0])).await.body;
    assert_eq!(hanging["status"], "delivering", "the hanging attempt was still open meanwhile");

    for ((behaviour, status_code, error), id) in cases.iter().zip(&deliveries) {
        let delivery = app.wait_until_finished(*id, Duration::from_secs(15)).await;
        let attempt = &delivery["attempts"][0];
        let label = format!("{:?}", attempt);
        match status_code {
            Some(200) => {
                assert_eq!(delivery["status"], "succeeded", "{label}");
                assert_eq!(attempt["status_code"], 200);
                if matches!(behaviour, Misbehaviour::HugeBody) {
                    assert_eq!(attempt["response_excerpt"].as_str().unwrap().len(), 1024, "only 1 KiB is read");
                }
            }
            Some(code) => {
                assert_eq!(delivery["status"], "failed", "{label}");
                assert_eq!(attempt["status_code"], *code);
                assert_eq!(attempt["error"], *error);
            }
            None => {
                assert_eq!(delivery["status"], "failed", "{label}");
                assert!(attempt["status_code"].is_null(), "{label}");
                let text = attempt["error"].as_str().unwrap();
                assert!(!text.is_empty() && text.starts_with(error), "{label}");
            }
        }
    }
}

#[tokio::test]
async fn under_overload_the_backlog_waits_in_the_database_and_drains_afterwards() {
    let app = spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "4")]).await;
    let slow = Receiver::start(vec![], crate::helpers::Reply::Delay(Duration::from_millis(10), 200)).await;
    let subscription = app.create_subscription(&slow.url, json!({})).await;

    let mut ids = Vec::new();
    let mut most_in_flight = 0i64;
    for batch in 0..20 {
        let bodies: Vec<String> = (0..50).map(|n| format!("{{\"n\":{}}}", batch * 50 + n)).collect();
        ids.extend(futures_util::future::join_all(bodies.iter().map(|body| app.ingest(subscription, body))).await);
        let in_flight: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'delivering'").fetch_one(&app.pool).await.unwrap();
        most_in_flight = most_in_flight.max(in_flight);
    }
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'queued'").fetch_one(&app.pool).await.unwrap();
    assert!(waiting > 100, "ingest outran delivery ({waiting} waiting)");
    assert!(most_in_flight <= 4, "no more in flight than the concurrency: the backlog stays in the database ({most_in_flight})");
    app.deliver_all_pending(Duration::from_secs(60)).await;
    assert_eq!(slow.received().len(), ids.len());
}

#[tokio::test]
async fn hanging_receivers_cannot_take_every_send_slot() {
    // Receivers that never answered get 32 / 16 = 2 slots each.
    let app = spawn_app_with(&[
        ("WEBHOOKD_WORKER_CONCURRENCY", "8"),
        ("WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "32"),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "20s"),
    ])
    .await;
    let hanging = Receiver::start(vec![], crate::helpers::Reply::Hang).await;
    let healthy = Receiver::answering(200).await;
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let subscription = app.create_subscription(&hanging.url, json!({})).await;
        for _ in 0..5 {
            app.ingest(subscription, "{}").await;
        }
        stuck.push(subscription);
    }
    let healthy_subscription = app.create_subscription(&healthy.url, json!({})).await;
    let mut served = Vec::new();
    for _ in 0..20 {
        served.push(app.ingest(healthy_subscription, "{}").await);
    }
    for id in served {
        app.wait_until_finished(id, Duration::from_secs(10)).await;
    }
    for subscription in stuck {
        let in_flight: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE subscription_id = $1 AND status = 'delivering'")
            .bind(subscription)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(in_flight, 2, "each hanging subscription holds exactly its small share of 2 slots");
    }
}

#[tokio::test]
async fn a_rate_limited_subscription_is_paced_and_the_limit_can_be_lifted() {
    let app = spawn_app_with(&[]).await;
    let receiver = Receiver::answering(200).await;
    let paced = app.create_subscription(&receiver.url, json!({ "rate_limit": 5 })).await;
    assert_eq!(app.get(&format!("/subscriptions/{paced}")).await.body["rate_limit"], 5);

    let bodies: Vec<String> = (0..11).map(|n| format!("{{\"n\":{n}}}")).collect();
    let ids = futures_util::future::join_all(bodies.iter().map(|body| app.ingest(paced, body))).await;
    for id in ids {
        app.wait_until_finished(id, Duration::from_secs(20)).await;
    }
    let mut arrivals: Vec<_> = receiver.received().iter().map(|r| r.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 11);
    // 5 a second: 11 requests need at least 10 intervals of 200 ms.
    let span = *arrivals.last().unwrap() - arrivals[0];
    assert!(span >= Duration::from_millis(1800), "11 requests at 5/s arrived within {span:?}");
    for (i, first) in arrivals.iter().enumerate() {
        let within_a_second = arrivals[i..].iter().take_while(|at| **at - *first < Duration::from_secs(1)).count();
        assert!(within_a_second <= 6, "{within_a_second} requests arrived within one second");
    }

    let lifted = app.call("PATCH", &format!("/subscriptions/{paced}"), Some(json!({ "rate_limit": null }))).await;
    assert_eq!(lifted.status, 200);
    assert_eq!(lifted.body["rate_limit"], serde_json::Value::Null);
}

#[tokio::test]
async fn hanging_receivers_backlogs_queued_first_do_not_hold_back_the_webhooks_behind_them() {
    // Receivers that never answered get 32 / 16 = 2 slots each.
    let app = spawn_app_with(&[
        ("WEBHOOKD_WORKER_CONCURRENCY", "200"),
        ("WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "32"),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "5s"),
        ("WEBHOOKD_POLL_INTERVAL", "1h"),
    ])
    .await;
    let hanging = Receiver::start(vec![], crate::helpers::Reply::Hang).await;
    let healthy = Receiver::answering(200).await;
    let mut stuck = Vec::new();
    for _ in 0..50 {
        stuck.push(app.create_subscription(&hanging.url, json!({})).await);
    }
    // Each hanging subscription's backlog in one block, longer than a claim looks ahead
    // (at most 200 rows here), all due before the healthy subscription's one webhook.
    sqlx::query(
        "WITH backlog AS (
             SELECT gen_random_uuid() AS id, s, now() - interval '1 minute' + (k * 300 + n) * interval '1 ms' AS due
             FROM unnest($1::uuid[]) WITH ORDINALITY AS u(s, k), generate_series(1, 300) AS n
         ), bodies AS (
             INSERT INTO delivery_bodies (delivery_id, body) SELECT id, '{}' FROM backlog
         )
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, created_at)
         SELECT id, s, 'queued', due, due FROM backlog",
    )
    .bind(&stuck)
    .execute(&app.pool)
    .await
    .unwrap();
    let healthy_subscription = app.create_subscription(&healthy.url, json!({})).await;
    let started = std::time::Instant::now();
    let id = app.ingest(healthy_subscription, "{}").await;
    app.wait_until_finished(id, Duration::from_secs(10)).await;
    // Each claim reaches one more hanging subscription's block and stops at its room; the
    // next one must follow at once, not after the 100 ms recheck (50 × 100 ms = 5 s).
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(2500), "the healthy webhook waited {waited:?} behind the hanging backlogs");
}
