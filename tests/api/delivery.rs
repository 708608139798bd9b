use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Receiver, Reply};

const LIMIT: Duration = Duration::from_secs(15);

fn outcomes(delivery: &Value) -> Vec<String> {
    delivery["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_webhook_is_delivered_byte_for_byte_with_the_documented_headers() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    // Odd spacing and key order: the receiver must get these exact bytes, not re-serialised JSON.
    let body = b"{ \"z\":1,\n  \"a\" : [1.50, \"\\u00e9\"] }".to_vec();
    let answer = app.ingest_bytes(subscription, body.clone(), Some("order.created")).await;
    let id = answer.body["delivery_id"].as_str().unwrap().parse().unwrap();

    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["attempt_count"], 1);
    assert!(delivery["completed_at"].is_string());
    assert_eq!(outcomes(&delivery), ["success"]);
    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["response_excerpt"], "answer 200");
    assert_eq!(attempt["target_url"], receiver.url);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.body, body);
    let header = |name: &str| request.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("user-agent"), Some(format!("webhookd/{}", env!("CARGO_PKG_VERSION"))));
    assert_eq!(header("webhook-id"), Some(id.to_string()));
    assert_eq!(header("x-webhook-event").as_deref(), Some("order.created"));
    assert_eq!(header("x-webhook-attempt").as_deref(), Some("1"));
    let timestamp: i64 = header("webhook-timestamp").unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - timestamp).abs() < 30, "timestamp {timestamp} is not now ({now})");
}

#[tokio::test]
async fn an_attempt_timed_by_a_clock_behind_the_databases_is_still_listed() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    // The attempt's time is the sending host's clock; the delivery's, the database's. A host
    // a few milliseconds behind times a first attempt sent at once before the delivery.
    sqlx::query("UPDATE attempts SET created_at = (SELECT created_at FROM deliveries WHERE id = $1) - interval '5 milliseconds' WHERE delivery_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let shown = app.get(&format!("/deliveries/{id}")).await.body;
    assert_eq!(outcomes(&shown), ["success"], "{shown}");
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_exactly_four_attempts_spaced_as_configured() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "300ms,600ms,900ms,5s")]).await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(503), Reply::Status(404)], Reply::Status(204)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;

    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(outcomes(&delivery), ["failed_attempt", "failed_attempt", "failed_attempt", "success"]);
    let numbers: Vec<i64> = delivery["attempts"].as_array().unwrap().iter().map(|a| a["attempt_number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(delivery["attempts"][0]["error"], "receiver answered HTTP 500");

    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let attempt_headers: Vec<_> = received.iter().map(|r| r.headers["x-webhook-attempt"].to_str().unwrap().to_owned()).collect();
    assert_eq!(attempt_headers, ["1", "2", "3", "4"]);
    let ids: Vec<_> = received.iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert!(ids.iter().all(|h| *h == ids[0]), "webhook-id is the same on every retry");
    for (gap, expected_ms) in received.windows(2).zip([300u64, 600, 900]) {
        let waited = gap[1].at - gap[0].at;
        assert!(waited >= Duration::from_millis(expected_ms), "waited {waited:?}, configured {expected_ms}ms");
        // Generous upper bound: CI runs heavier tests alongside on 2 cores.
        assert!(waited < Duration::from_millis(expected_ms + 1500), "waited {waited:?}, configured {expected_ms}ms");
    }
}

#[tokio::test]
async fn an_always_failing_receiver_ends_failed_after_one_plus_retries_attempts() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "50ms,50ms,50ms")]).await;
    let receiver = Receiver::answering(500).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;

    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attempt_count"], 4);
    assert_eq!(outcomes(&delivery), ["failed_attempt", "failed_attempt", "failed_attempt", "failure"]);
    assert!(delivery["next_attempt_at"].is_null());
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_the_attempt_says_so() {
    let app = spawn_app_with(&[("WEBHOOKD_DELIVERY_TIMEOUT", "300ms"), ("WEBHOOKD_RETRY_SCHEDULE", "")])
    .await;
    let receiver = Receiver::start(vec![], Reply::Hang).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;

    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "failed");
    let attempt = &delivery["attempts"][0];
    assert_eq!(attempt["outcome"], "failure");
    assert!(attempt["status_code"].is_null());
    assert!(attempt["error"].as_str().unwrap().starts_with("timeout"), "{attempt}");
    let duration = attempt["duration_ms"].as_i64().unwrap();
    assert!((300..5000).contains(&duration), "{duration}");
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_connection_error() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "")]).await;
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let subscription = app.create_subscription(&format!("http://127.0.0.1:{port}/x"), json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    let delivery = app.wait_until_finished(id, LIMIT).await;
    let error = delivery["attempts"][0]["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("connection error"), "{error}");
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_delivered() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    // A worker claimed this delivery (attempt 1) and died: its lease ran out a second ago.
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH body AS (INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, '{}'))
         INSERT INTO deliveries (id, subscription_id, status, attempt_count, lease_id, next_attempt_at)
         VALUES ($1, $2, 'delivering', 1, gen_random_uuid(), now() - interval '1 second')",
    )
    .bind(id)
    .bind(subscription)
    .execute(&app.pool)
    .await
    .unwrap();
    app.get("/health").await; // nudge nothing: the poll interval must find it by itself

    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["attempt_count"], 2, "the lost attempt still counts");
    assert_eq!(delivery["attempts"][0]["attempt_number"], 2);
    assert_eq!(receiver.received()[0].headers["x-webhook-attempt"], "2");
}

/// Queues a row as another instance's ingest would, due `age` ago (its transaction's
/// `now()`), and announces it with that instance's NOTIFY.
async fn queue_announced(pool: &sqlx::PgPool, subscription: uuid::Uuid, body: &str, age: &str) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH body AS (INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, convert_to($3, 'UTF8')))
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at)
         VALUES ($1, $2, 'queued', now() - $4::interval)",
    )
    .bind(id)
    .bind(subscription)
    .bind(body)
    .bind(age)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('webhookd_work', '')").execute(pool).await.unwrap();
    id
}

#[tokio::test]
async fn a_webhook_committed_late_with_an_earlier_due_time_is_still_delivered() {
    // No poll to fall back on: the claim loop must find the row by itself.
    let app = spawn_app_with(&[("WEBHOOKD_POLL_INTERVAL", "1h")]).await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    // Deliveries flowing through claims (rows other instances accepted): claims now start
    // where the queue's head was.
    for n in 0..3 {
        let id = queue_announced(&app.pool, subscription, &format!("{{\"n\":{n}}}"), "0 seconds").await;
        app.wait_until_finished(id, LIMIT).await;
    }
    // A row whose transaction began an hour ago commits only now, behind that position.
    let late = queue_announced(&app.pool, subscription, r#"{"late":true}"#, "1 hour").await;

    let delivery = app.wait_until_finished(late, Duration::from_secs(5)).await;
    assert_eq!(delivery["status"], "succeeded");
    assert!(receiver.received().iter().any(|r| r.body == br#"{"late":true}"#), "sent with its stored body");
}

#[tokio::test]
async fn claims_and_outcomes_read_only_their_rows_when_statistics_say_the_queue_is_empty() {
    use sqlx::Executor;
    let database_url = crate::helpers::fresh_database().await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    webhookd::db::partitions::ensure_partitions(&pool, time::OffsetDateTime::now_utc()).await.unwrap();
    let mut db = pool.acquire().await.unwrap();
    let subscription = uuid::Uuid::now_v7();
    // History, then statistics taken while the queue was empty, as autovacuum usually leaves
    // them: the planner believes the queue's index holds about one row. Autovacuum would
    // re-analyze once a backlog is 2 % of the table; one smaller than that (in production,
    // 2 % of three days of history) is drained on these statistics.
    sqlx::query(
        "INSERT INTO deliveries (id, subscription_id, status, completed_at)
         SELECT gen_random_uuid(), $1, 'succeeded', now() FROM generate_series(1, 10000)",
    )
    .bind(subscription)
    .execute(&mut *db)
    .await
    .unwrap();
    db.execute("ANALYZE deliveries; ALTER TABLE deliveries SET (autovacuum_enabled = false)").await.unwrap();
    // A backlog, as after a receiver outage.
    sqlx::query(
        "WITH backlog AS (
             SELECT gen_random_uuid() AS id, now() - make_interval(secs => 1 - n::float8 / 5000) AS due
             FROM generate_series(1, 5000) AS n
         ), bodies AS (
             INSERT INTO delivery_bodies (delivery_id, body) SELECT id, '{}' FROM backlog
         )
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at, created_at)
         SELECT id, $1, 'queued', due, due FROM backlog",
    )
    .bind(subscription)
    .execute(&mut *db)
    .await
    .unwrap();

    // The service's own statements, planned as the service plans them (with its values).
    // The claim runs in a transaction that keeps the planner on its index.
    let prefer = include_str!("../../sql/deliveries/prefer_claim_index.sql");
    let claim = include_str!("../../sql/deliveries/claim_due_deliveries.sql");
    let record = include_str!("../../sql/deliveries/record_attempts.sql");
    db.execute(sqlx::AssertSqlSafe(format!(
        "PREPARE claim(int, float8, uuid, uuid[], int[], timestamptz[], int, float8) AS {claim};
         PREPARE record(uuid[], uuid[], text[], timestamptz[], text[], uuid[], int[], text[], int[],
                        text[], int[], text[], text[], timestamptz[], float8, text, bool, int8) AS {record};
         BEGIN;
         {prefer}"
    )))
    .await
    .unwrap();
    let lease = uuid::Uuid::new_v4();
    let claim_plan = explain_analyze(&mut db, &format!("EXECUTE claim(64, 60, '{lease}', '{{}}', '{{}}', '{{}}', 64, 5)")).await;
    let claimed: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM deliveries WHERE lease_id = $1")
        .bind(lease)
        .fetch_all(&mut *db)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 64);
    let array = |value: &str, of: &str| format!("ARRAY[{}]::{of}[]", vec![value; claimed.len()].join(","));
    let ids = claimed.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let outcomes = [
        array(&format!("'{lease}'"), "uuid"),
        array("'succeeded'", "text"),
        array("NULL", "timestamptz"),
        array("NULL", "text"),
        array(&format!("'{subscription}'"), "uuid"),
        array("1", "int"),
        array("'success'", "text"),
        array("200", "int"),
        array("NULL", "text"),
        array("5", "int"),
        array("'ok'", "text"),
        array("'http://127.0.0.1/'", "text"),
        array("now()", "timestamptz"),
    ];
    db.execute("SET LOCAL enable_sort TO DEFAULT").await.unwrap(); // the claim's setting only
    let record = |tried_before| format!("EXECUTE record(ARRAY[{ids}]::uuid[], {}, 432000, 'webhookd.delivery.failed', {tried_before}, 42)", outcomes.join(", "));
    let record_plan = explain_analyze(&mut db, &record(false)).await;
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = ANY($1) AND status = 'succeeded'")
        .bind(&claimed)
        .fetch_one(&mut *db)
        .await
        .unwrap();
    assert_eq!(recorded, 64, "every outcome recorded");
    // Written again (its first answer lost): each attempt row is looked for by its delivery,
    // in the generic plan the service's prepared statement soon runs with (where the flag is
    // a parameter, not a constant folded away).
    db.execute("SET LOCAL plan_cache_mode = force_generic_plan").await.unwrap();
    let again_plan = explain_analyze(&mut db, &record(true)).await;
    assert!(again_plan.contains("delivery_id_attempt_number_idx"), "looked up by index:\n{again_plan}");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE delivery_id = ANY($1)").bind(&claimed).fetch_one(&mut *db).await.unwrap();
    assert_eq!(logged, 64, "no attempt logged twice");

    // Looked up by id, each statement reads a few rows more than it changes; scanning the
    // queue's index instead, it reads and filters out the rest of the backlog.
    for (statement, plan) in [("claim", &claim_plan), ("record", &record_plan), ("record written again", &again_plan)] {
        let filtered_out: u64 = plan
            .lines()
            .filter_map(|line| line.trim().strip_prefix("Rows Removed by Filter: "))
            .map(|count| count.parse::<u64>().unwrap())
            .sum();
        assert!(filtered_out < 500, "the {statement} read {filtered_out} rows it did not want:\n{plan}");
    }
}

/// `EXPLAIN ANALYZE` of a statement, as text.
async fn explain_analyze(db: &mut sqlx::PgConnection, statement: &str) -> String {
    let lines: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {statement}")))
        .fetch_all(db)
        .await
        .unwrap();
    lines.join("\n")
}

#[tokio::test]
async fn a_live_lease_is_not_taken_over() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH body AS (INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, '{}'))
         INSERT INTO deliveries (id, subscription_id, status, attempt_count, lease_id, next_attempt_at)
         VALUES ($1, $2, 'delivering', 1, gen_random_uuid(), now() + interval '1 hour')",
    )
    .bind(id)
    .bind(subscription)
    .execute(&app.pool)
    .await
    .unwrap();
    // A webhook ingested afterwards is delivered, proving the workers ran meanwhile.
    let later = app.ingest(subscription, "{}").await;
    app.wait_until_finished(later, LIMIT).await;
    let delivery = app.get(&format!("/deliveries/{id}")).await.body;
    assert_eq!(delivery["status"], "delivering");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn attempts_are_listed_newest_first_and_limited() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "10ms,10ms,10ms,10ms")]).await;
    let receiver = Receiver::answering(500).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;

    let listed = app.get(&format!("/subscriptions/{subscription}/attempts?limit=3")).await;
    assert_eq!(listed.status, 200);
    let numbers: Vec<i64> = listed.body["items"].as_array().unwrap().iter().map(|a| a["attempt_number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [5, 4, 3]);
    assert_eq!(listed.body["items"][0]["delivery_id"], id.to_string());
    let all = app.get(&format!("/subscriptions/{subscription}/attempts")).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(app.get(&format!("/subscriptions/{subscription}/attempts?limit=101")).await.status, 400);
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(app.get(&format!("/subscriptions/{unknown}/attempts")).await.status, 404);
    assert_eq!(app.get(&format!("/deliveries/{unknown}")).await.status, 404);
}

#[tokio::test]
async fn a_subscription_lists_its_deliveries_newest_first_filtered_by_status() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let first = app.ingest(subscription, "{}").await;
    app.wait_until_finished(first, LIMIT).await;
    let second = app.ingest(subscription, "{}").await;
    app.wait_until_finished(second, LIMIT).await;

    let all = app.get(&format!("/subscriptions/{subscription}/deliveries")).await;
    let ids: Vec<&str> = all.body["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.to_string(), first.to_string()]);
    let succeeded = app.get(&format!("/subscriptions/{subscription}/deliveries?status=succeeded&limit=1")).await;
    assert_eq!(succeeded.body["items"].as_array().unwrap().len(), 1);
    let failed = app.get(&format!("/subscriptions/{subscription}/deliveries?status=failed")).await;
    assert_eq!(failed.body["items"], json!([]));
    assert_eq!(app.get(&format!("/subscriptions/{subscription}/deliveries?status=lost")).await.status, 400);
}

/// Waiting deliveries are listed from the queue, parked ones included (see the plan test
/// `statements_about_waiting_deliveries_read_only_waiting_ones` for what that reads).
#[tokio::test]
async fn a_subscription_lists_its_waiting_deliveries_parked_ones_included() {
    let app = spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let first = app.ingest(subscription, "{}").await;
    let second = app.ingest(subscription, "{}").await;
    let third = app.ingest(subscription, "{}").await;
    assert_eq!(app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({ "is_active": false }))).await.status, 200);
    let other = app.create_subscription(&receiver.url, json!({})).await;
    app.ingest(other, "{}").await;

    let queued = app.get(&format!("/subscriptions/{subscription}/deliveries?status=queued")).await;
    assert_eq!(queued.status, 200);
    let items = queued.body["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [third.to_string(), second.to_string(), first.to_string()]);
    assert!(items.iter().all(|d| d["status"] == "queued" && d["next_attempt_at"].is_null()), "parked: {items:?}");
    let limited = app.get(&format!("/subscriptions/{subscription}/deliveries?status=queued&limit=1")).await;
    assert_eq!(limited.body["items"][0]["id"], third.to_string());
    for status in ["retrying", "delivering"] {
        let none = app.get(&format!("/subscriptions/{subscription}/deliveries?status={status}")).await;
        assert_eq!(none.body["items"], json!([]), "{status}");
    }
}

/// With a cap of 1, a second delivery claimed waits for the first's send. Paused meanwhile,
/// the subscription gets nothing more: the waiting one is parked when its turn comes, as
/// the rest of the backlog is. (It used to be sent with the subscription as it was when
/// claimed; so too after a new target or secret, or a disable by a 410.)
#[tokio::test]
async fn a_delivery_waiting_for_its_turn_is_not_sent_once_its_subscription_is_paused() {
    let app = spawn_app_with(&[("WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "1")]).await;
    let receiver = Receiver::start(vec![Reply::Status(200)], Reply::Delay(Duration::from_millis(800), 200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    // Answered once: the subscription may have its whole allowance claimed (one sending,
    // one waiting), not only the small share of a receiver not heard from.
    let warm_up = app.ingest(subscription, "{}").await;
    app.wait_until_finished(warm_up, LIMIT).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.ingest(subscription, "{}").await);
    }
    receiver.wait_for(2, LIMIT).await;
    let paused = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    assert_eq!(paused.status, 200);

    let parked = |d: &Value| (d["status"] == "queued" || d["status"] == "retrying") && d["next_attempt_at"].is_null();
    let mut finished = 0;
    for id in &ids {
        let delivery = app.wait_for_delivery(*id, LIMIT, |d| d["status"] == "succeeded" || parked(d)).await;
        finished += usize::from(delivery["status"] == "succeeded");
    }
    assert_eq!(finished, 1, "only the delivery under way when paused was sent");
    assert_eq!(receiver.received().len(), 2, "the warm-up and that one");
}

/// With a cap of 1 and a receiver taking 1.5 s, the second of two deliveries claimed side by
/// side would start its attempt 1.5 s into a 3 s lease, and with a 2 s timeout could
/// outlive it (another claim could then send it too). Its last useful start is 0.5 s after
/// the claim: by then it goes back to the queue unsent, its attempt uncounted and due a
/// timeout later, and it is sent once, later.
#[tokio::test]
async fn a_delivery_whose_turn_would_come_too_late_in_its_lease_is_sent_later_and_once() {
    let app = spawn_app_with(&[("WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "1"), ("WEBHOOKD_LEASE_DURATION", "3s")]).await;
    let receiver = Receiver::start(vec![Reply::Status(200)], Reply::Delay(Duration::from_millis(1500), 200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    // Answered once: the subscription may have its whole allowance claimed (one sending,
    // one waiting), not only the small share of a receiver not heard from.
    let warm_up = app.ingest(subscription, "{}").await;
    app.wait_until_finished(warm_up, LIMIT).await;
    let first = app.ingest(subscription, "{}").await;
    let second = app.ingest(subscription, "{}").await;

    let at = |v: &Value| time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let given_back = |d: &Value| {
        d["status"] == "queued" && d["attempt_count"] == 0 && !d["next_attempt_at"].is_null()
            && at(&d["next_attempt_at"]) - at(&d["created_at"]) > time::Duration::seconds(1)
    };
    let waiting = app.wait_for_delivery(second, LIMIT, given_back).await;
    assert_eq!(receiver.received().len(), 2, "given back unsent: only the warm-up and the first reached the receiver so far; {waiting}");

    for id in [first, second] {
        app.wait_until_finished(id, LIMIT).await;
        let delivery = app.get(&format!("/deliveries/{id}")).await.body;
        assert_eq!((delivery["status"].as_str(), delivery["attempt_count"].as_i64()), (Some("succeeded"), Some(1)), "{delivery}");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "one attempt logged: {delivery}");
        assert_eq!(attempts[0]["attempt_number"], 1);
    }
    let received = receiver.received();
    let ids: std::collections::HashSet<_> = received.iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned()).collect();
    assert_eq!((received.len(), ids.len()), (3, 3), "each delivery reached the receiver once");
}

/// A retry is refused while the subscription is paused or after it is deleted: it would be
/// parked, or cancelled with its history rewritten as failed.
#[tokio::test]
async fn a_retry_is_refused_while_the_subscription_is_paused_or_once_it_is_deleted() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    let retry = format!("/deliveries/{id}/retry");

    app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    let paused = app.call("POST", &retry, None).await;
    assert_eq!((paused.status, paused.body["error"].as_str()), (409, Some("subscription_inactive")), "{:?}", paused.body);
    assert_eq!(app.call("DELETE", &format!("/subscriptions/{subscription}"), None).await.status, 204);
    let deleted = app.call("POST", &retry, None).await;
    assert_eq!((deleted.status, deleted.body["error"].as_str()), (409, Some("subscription_deleted")), "{:?}", deleted.body);
    assert_eq!(app.get(&format!("/deliveries/{id}")).await.body["status"], "succeeded", "its history stands");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn deactivating_a_subscription_holds_its_deliveries_until_it_is_reactivated() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "400ms")]).await;
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_for_delivery(id, LIMIT, |d| d["status"] == "retrying").await;

    let paused = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": false}))).await;
    assert_eq!(paused.body["is_active"], false);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let held = app.get(&format!("/deliveries/{id}")).await.body;
    assert_eq!(held["status"], "retrying");
    assert!(held["next_attempt_at"].is_null(), "no attempt is scheduled while inactive");
    assert_eq!(receiver.received().len(), 1);

    app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"is_active": true}))).await;
    let delivery = app.wait_until_finished(id, LIMIT).await;
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn deleting_a_subscription_stops_its_pending_deliveries_and_keeps_their_logs() {
    let app = spawn_app_with(&[("WEBHOOKD_RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::answering(500).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    app.wait_for_delivery(id, LIMIT, |d| d["status"] == "retrying").await;

    assert_eq!(app.call("DELETE", &format!("/subscriptions/{subscription}"), None).await.status, 204);
    let delivery = app.get(&format!("/deliveries/{id}")).await.body;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["last_error"], "subscription_deleted");
    assert_eq!(outcomes(&delivery), ["failed_attempt"]);
    let logs = app.get(&format!("/subscriptions/{subscription}/attempts")).await;
    assert_eq!(logs.status, 200);
    assert_eq!(logs.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn many_webhooks_to_many_subscriptions_are_all_delivered_once() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let subscription = app.create_subscription(&receiver.url, json!({})).await;
        for n in 0..40 {
            ids.push(app.ingest(subscription, &format!("{{\"n\":{n}}}")).await);
        }
    }
    for id in &ids {
        let delivery = app.wait_until_finished(*id, LIMIT).await;
        assert_eq!(delivery["status"], "succeeded");
    }
    let received = receiver.received();
    assert_eq!(received.len(), ids.len());
    let mut seen: Vec<_> = received.iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_owned()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), ids.len(), "each webhook delivered exactly once");
}

#[tokio::test]
async fn stopping_the_app_lets_in_flight_deliveries_finish() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(subscription, "{}").await;
    let pool = app.pool.clone();
    app.stop().await;
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap();
    // Either delivered before the stop, or never claimed: never stuck as 'delivering'.
    assert!(status == "succeeded" || status == "queued", "{status}");
}
