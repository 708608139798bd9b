//! A subscription's waiting deliveries move in batches when it is paused, resumed or
//! deleted (src/delivery/backlog.rs): the change answers at once however large the backlog,
//! holds nothing another customer's deliveries need, and every waiting delivery still ends
//! where the subscription's state puts it, even after an instance stopped half-way.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{fresh_database, queue, spawn_app, spawn_app_on, Receiver, TestApp};

/// Two and a half of the service's batches (1,000 rows).
const BACKLOG: i64 = 2_500;
const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_pause_answers_while_its_backlog_is_busy_parks_it_all_after_and_a_resume_delivers_it_all() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    queue(&app.pool, subscription, BACKLOG - 1, "now() + interval '1 hour'").await;
    // The row a park reaches last, locked by another transaction (as a claim would, for
    // a moment): one statement over the whole backlog waited for it.
    let last = queue(&app.pool, subscription, 1, "now() + interval '2 hours'").await[0];
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE").bind(last).execute(&mut *holder).await.unwrap();

    let path = format!("/subscriptions/{subscription}");
    let pause = app.call("PATCH", &path, Some(json!({"is_active": false})));
    let paused = tokio::time::timeout(Duration::from_secs(10), pause).await.expect("the pause answers while its backlog is busy");
    assert_eq!((paused.status, &paused.body["is_active"]), (200, &json!(false)));
    // The subscription's row is free: the outcome writer, which updates it whenever the
    // subscription's failure streak grows, does not wait behind the backlog.
    let mut outcome_writer = app.pool.acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '2s'").execute(&mut *outcome_writer).await.unwrap();
    sqlx::query("UPDATE subscriptions SET failed_in_streak = failed_in_streak WHERE id = $1")
        .bind(subscription)
        .execute(&mut *outcome_writer)
        .await
        .expect("the subscription's row is not held while its backlog is parked");
    drop(outcome_writer);
    // The pause parked one batch itself, the backlog task the next one (the third waits
    // for the locked row), and all of it once the row is let go.
    wait_for_count(&app, subscription, PARKED, |parked| parked >= 2_000).await;
    holder.rollback().await.unwrap();
    wait_for_count(&app, subscription, PARKED, |parked| parked == BACKLOG).await;
    assert_eq!(count(&app.pool, subscription, DUE).await, 0);
    assert!(receiver.received().is_empty(), "nothing of a paused subscription is sent");

    let resumed = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": true}))).await;
    assert_eq!(resumed.status, 200);
    receiver.wait_for(BACKLOG as usize, LIMIT).await;
    app.deliver_all_pending(LIMIT).await;
    assert_eq!(count(&app.pool, subscription, PARKED).await, 0);
    assert_eq!(receiver.received().len(), BACKLOG as usize, "each parked delivery is sent once after the resume");
}

#[tokio::test]
async fn deleting_a_subscription_with_a_large_backlog_fails_every_waiting_delivery_parked_or_not() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    queue(&app.pool, subscription, BACKLOG, "now() + interval '1 hour'").await;
    queue(&app.pool, subscription, BACKLOG, "'infinity'").await;

    assert_eq!(app.call("DELETE", &format!("/subscriptions/{subscription}"), None).await.status, 204);
    wait_for_count(&app, subscription, CANCELLED, |cancelled| cancelled == 2 * BACKLOG).await;
    assert_eq!((count(&app.pool, subscription, DUE).await, count(&app.pool, subscription, PARKED).await), (0, 0));
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn backlogs_an_instance_left_half_moved_are_finished_by_the_next_one_to_start() {
    let database = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let first = spawn_app_on(&database, &[]).await;
    let paused = first.create_subscription(&receiver.url, json!({})).await;
    let resumed = first.create_subscription(&receiver.url, json!({})).await;
    first.stop().await;
    // As an instance killed in the middle of the moves leaves them: a paused subscription
    // with deliveries still due (in an hour, so that no claim takes them: only the backlog
    // task's sweep can park them), an active one with deliveries still parked.
    let pool = PgPool::connect(&database).await.unwrap();
    sqlx::query("UPDATE subscriptions SET is_active = false WHERE id = $1").bind(paused).execute(&pool).await.unwrap();
    queue(&pool, paused, BACKLOG, "now() + interval '1 hour'").await;
    queue(&pool, resumed, BACKLOG, "'infinity'").await;

    let second = spawn_app_on(&database, &[]).await;
    wait_for_count(&second, paused, PARKED, |parked| parked == BACKLOG).await;
    receiver.wait_for(BACKLOG as usize, LIMIT).await;
    second.deliver_all_pending(LIMIT).await;
    assert_eq!(count(&pool, resumed, PARKED).await, 0);
}

/// Waiting and parked (due 'infinity').
const PARKED: &str = "status = 'queued' AND next_attempt_at = 'infinity'";
/// Waiting and due at a time.
const DUE: &str = "status = 'queued' AND next_attempt_at < 'infinity'";
const CANCELLED: &str = "status = 'failed' AND last_error = 'subscription_deleted'";

/// Deliveries of `subscription` matching `condition` (SQL).
async fn count(pool: &PgPool, subscription: Uuid, condition: &str) -> i64 {
    let statement = format!("SELECT count(*) FROM deliveries WHERE subscription_id = $1 AND {condition}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement)).bind(subscription).fetch_one(pool).await.unwrap()
}

/// Waits until the count of `subscription`'s deliveries matching `condition` passes `check`.
async fn wait_for_count(app: &TestApp, subscription: Uuid, condition: &str, check: impl Fn(i64) -> bool) {
    let counted = async || {
        let counted = count(&app.pool, subscription, condition).await;
        if check(counted) { Ok(()) } else { Err(counted) }
    };
    if let Err(last) = app.wait_for_progress(LIMIT, counted).await {
        panic!("{last} deliveries where {condition} after {LIMIT:?}");
    }
}
