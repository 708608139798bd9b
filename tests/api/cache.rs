//! The subscription cache: no database reads on a warm path, invalidation across
//! instances, and Redis as an optional shared level that may fail without consequence.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{fresh_database, spawn_app, spawn_app_on, subscription_reads, Receiver, RedisServer};

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn with_a_warm_cache_ingest_and_delivery_read_no_subscription_row() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let first = app.ingest(subscription, "{}").await;
    app.wait_until_finished(first, LIMIT).await;

    let before = subscription_reads(&app.pool).await;
    assert!(before >= 1, "the cold path read the subscription (the counter works)");
    for n in 0..25 {
        let id = app.ingest(subscription, &format!("{{\"n\":{n}}}")).await;
        app.wait_until_finished(id, LIMIT).await;
    }
    assert_eq!(receiver.received().len(), 26);
    assert_eq!(subscription_reads(&app.pool).await, before, "25 webhooks ingested and delivered without reading subscriptions");
}

#[tokio::test]
async fn a_change_made_on_one_instance_reaches_another_within_a_second() {
    let database = fresh_database().await;
    // One API-only instance takes the writes; the other delivers, from its cache.
    let api = spawn_app_on(&database, &[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let worker = spawn_app_on(&database, &[]).await;
    let old_target = Receiver::answering(200).await;
    let new_target = Receiver::answering(200).await;
    let subscription = api.create_subscription(&old_target.url, json!({})).await;
    let warm = worker.ingest(subscription, "{}").await;
    worker.wait_until_finished(warm, LIMIT).await;
    assert_eq!(old_target.received().len(), 1);

    let patched = api.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"target_url": new_target.url}))).await;
    assert_eq!(patched.status, 200);
    let id = api.ingest(subscription, "{}").await;
    worker.wait_until_finished(id, LIMIT).await;
    assert_eq!(new_target.received().len(), 1, "the worker delivered to the new target");
    assert_eq!(old_target.received().len(), 1);

    // How fast a change propagates: deactivation seen by the other instance's ingest path.
    api.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let answer = worker.ingest_bytes(subscription, b"{}".to_vec(), None).await;
        if answer.status == 409 {
            break;
        }
        assert!(Instant::now() < deadline, "the worker still accepts for an inactive subscription");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The subscription as cached in Redis, if it is, opened with the key every instance
/// derives from what they share (here the admin token: no encryption key is set).
async fn redis_entry(url: &str, subscription: uuid::Uuid) -> Option<serde_json::Value> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let name = format!("webhookd:subscription:{subscription}");
    let sealed: Option<Vec<u8>> = redis::cmd("GET").arg(&name).query_async(&mut connection).await.unwrap();
    let seal = webhookd::secrets::CacheSeal::derive(crate::helpers::ADMIN_TOKEN.as_bytes());
    sealed.map(|bytes| serde_json::from_slice(&seal.open(&name, &bytes).expect("an entry webhookd sealed")[8..]).unwrap())
}

#[tokio::test]
async fn redis_is_a_shared_second_level_and_writes_clear_it() {
    let redis = RedisServer::start();
    let database = fresh_database().await;
    // A generous timeout: this test is about what is shared, not about slow Redis (below).
    let with_redis = [("REDIS_URL", redis.url.as_str()), ("WEBHOOKD_REDIS_TIMEOUT", "5s")];
    let first = spawn_app_on(&database, &with_redis).await;
    let second = spawn_app_on(&database, &with_redis).await;
    let receiver = Receiver::answering(200).await;
    let subscription = first.create_subscription(&receiver.url, json!({})).await;

    let before = subscription_reads(&first.pool).await;
    first.ingest(subscription, "{}").await;
    assert_eq!(subscription_reads(&first.pool).await, before + 1, "a miss everywhere reads PostgreSQL once");
    assert!(redis_entry(&redis.url, subscription).await.is_some(), "and fills Redis");
    second.ingest(subscription, "{}").await;
    assert_eq!(subscription_reads(&first.pool).await, before + 1, "the other instance's miss is served by Redis");

    first.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"name": "renamed"}))).await;
    // The write removed the old entry; a delivery may already have cached the new row.
    if let Some(entry) = redis_entry(&redis.url, subscription).await {
        assert_eq!(entry["name"], "renamed", "Redis never serves the row from before the write");
    }
}

#[tokio::test]
async fn a_dead_or_hanging_redis_never_fails_ingest_or_delivery() {
    let redis = RedisServer::start();
    let app = spawn_app_on(&fresh_database().await, &[("REDIS_URL", redis.url.as_str()), ("WEBHOOKD_REDIS_TIMEOUT", "100ms")])
    .await;
    let receiver = Receiver::answering(200).await;

    for signal in [libc::SIGSTOP, libc::SIGKILL] {
        redis.signal(signal);
        // A new subscription is a cache miss: Redis is asked, fails, PostgreSQL answers.
        let subscription = app.create_subscription(&receiver.url, json!({})).await;
        let started = Instant::now();
        let id = app.ingest(subscription, "{}").await;
        assert!(started.elapsed() < Duration::from_secs(2), "ingest waited {:?} on Redis", started.elapsed());
        let delivery = app.wait_until_finished(id, LIMIT).await;
        assert_eq!(delivery["status"], "succeeded");
    }
}

/// The writer's delete from Redis failed (Redis unreachable from it for a moment), so Redis
/// still holds the row as it was before a pause. Another instance, told of the change by
/// its NOTIFY (which carries the row's new version), does not take that older copy: it
/// refuses the paused subscription's webhooks at once, not after the cache's lifetime.
#[tokio::test]
async fn an_instance_takes_no_copy_from_redis_older_than_a_change_it_was_told_of() {
    let redis = RedisServer::start();
    let database = fresh_database().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = format!("redis://127.0.0.1:{closed}");
    let writer = spawn_app_on(&database, &[("REDIS_URL", unreachable.as_str()), ("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let other = spawn_app_on(&database, &[("REDIS_URL", redis.url.as_str()), ("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let receiver = Receiver::answering(200).await;
    let subscription = writer.create_subscription(&receiver.url, json!({})).await;
    assert_eq!(other.ingest_bytes(subscription, b"{}".to_vec(), None).await.status, 202);
    assert!(redis_entry(&redis.url, subscription).await.is_some(), "the other instance filled Redis");

    let paused = writer.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    assert_eq!(paused.status, 200);
    let refused = other
        .wait_for_progress(Duration::from_secs(3), async || match other.ingest_bytes(subscription, b"{}".to_vec(), None).await.status {
            409 => Ok(()),
            status => Err(status),
        })
        .await;
    assert_eq!(refused, Ok(()), "the other instance still took webhooks for the paused subscription");
}
