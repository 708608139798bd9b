//! Noisy-neighbour isolation: what a claim reads does not grow with the due backlog of a
//! subscription that has no room (its receiver hangs) or with a paused subscription's parked
//! rows. Checked on the plan's row counts, not on time.

use serde_json::Value;
use std::time::Duration;

use sqlx::{Executor, PgConnection, PgPool, Row};
use uuid::Uuid;
use webhookd::db::deliveries::{self, ClaimPlan, SubscriptionRoom};

use crate::helpers::{fresh_database, queue};

/// Due rows of the subscription without room: many times what any claim may take.
const FULL_BACKLOG: i64 = 25_000;
/// Rows delivered before the claim after a drain.
const DRAINED: i64 = 20_000;
/// Most rows of `deliveries` a claim may read here: the healthy subscription's small share,
/// a few index descents per subscription, and the locking and update of what it takes.
const BOUNDED: f64 = 100.0;

#[tokio::test]
async fn a_claim_reads_none_of_the_backlog_of_a_subscription_without_room() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    let (hanging, paused, healthy) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // Statistics as autovacuum usually leaves them, taken while the queue was empty: the
    // planner believes the queue's indexes hold about one row.
    pool.execute("ANALYZE deliveries; ALTER TABLE deliveries SET (autovacuum_enabled = false)").await.unwrap();
    // A receiver that hangs, with its whole backlog due (it is full at its small share);
    // a paused subscription's parked rows; and a healthy subscription with a little due work.
    queue(&pool, hanging, FULL_BACKLOG, "now() - interval '1 minute'").await;
    queue(&pool, paused, 5_000, "'infinity'").await;
    queue(&pool, healthy, 10, "now()").await;
    let plan = ClaimPlan {
        known: vec![SubscriptionRoom { subscription_id: hanging.into(), room: 0, scan_from: None }],
        small_share: 4,
    };

    let mut db = pool.acquire().await.unwrap();
    let statement = include_str!("../../sql/deliveries/claim_due_deliveries.sql");
    db.execute(sqlx::AssertSqlSafe(format!("PREPARE claim(int, float8, uuid, uuid[], int[], timestamptz[], int, float8) AS {statement}")))
    .await
    .unwrap();
    let known = format!("ARRAY['{hanging}']::uuid[], ARRAY[0], ARRAY[NULL]::timestamptz[], 4, 5");
    for statistics in ["taken on an empty queue", "taken on this backlog"] {
        // As the service runs it: in a transaction that keeps the planner on its index.
        db.execute("BEGIN").await.unwrap();
        deliveries::prefer_claim_index(&mut *db).await.unwrap();
        // Asking for more than is due: the claim also reads when the next delivery is due.
        let plan = explain(&mut db, &format!("EXECUTE claim(64, 60, '{}', {known})", Uuid::new_v4())).await;
        db.execute("ROLLBACK").await.unwrap();
        let read = rows_read(&plan[0]["Plan"]);
        assert!(read <= BOUNDED, "with statistics {statistics}, the claim read {read} rows of deliveries:\n{plan:#}");
        assert_reads_only_by_subscription(&plan[0]["Plan"]);
        db.execute("ANALYZE deliveries").await.unwrap();
    }

    // A subscription with room and a large backlog of its own: the claim reads what it
    // takes, not its backlog (nor the full one's).
    let busy = Uuid::now_v7();
    queue(&pool, busy, FULL_BACKLOG, "now() - interval '30 seconds'").await;
    db.execute("ANALYZE deliveries").await.unwrap();
    let known = format!("ARRAY['{hanging}', '{busy}']::uuid[], ARRAY[0, 128], ARRAY[NULL, NULL]::timestamptz[], 4, 5");
    db.execute("BEGIN").await.unwrap();
    deliveries::prefer_claim_index(&mut *db).await.unwrap();
    let plan_busy = explain(&mut db, &format!("EXECUTE claim(64, 60, '{}', {known})", Uuid::new_v4())).await;
    db.execute("ROLLBACK").await.unwrap();
    let read = rows_read(&plan_busy[0]["Plan"]);
    assert_reads_only_by_subscription(&plan_busy[0]["Plan"]);
    assert!(read <= BOUNDED + 3.0 * 64.0, "a claim of 64 beside a busy subscription's backlog read {read} rows of deliveries:\n{plan_busy:#}");
    sqlx::query("DELETE FROM deliveries WHERE subscription_id = $1").bind(busy).execute(&pool).await.unwrap();

    // And what it reads is the right thing: the healthy subscription's small share, and
    // when the healthy subscription's next delivery is due, not the full or the paused one's.
    let later: time::OffsetDateTime = sqlx::query_scalar("SELECT now() + interval '1 hour'").fetch_one(&pool).await.unwrap();
    queue(&pool, healthy, 1, "now() + interval '1 hour'").await;
    let claim = claim_like_the_service(&pool, &plan).await;
    assert_eq!(claim.deliveries.len(), 4);
    assert!(claim.deliveries.iter().all(|d| d.subscription_id.as_uuid() == healthy));
    assert_eq!(claim.next_due, None, "the healthy subscription filled its room: the loop waits for room, not a time");
    // With room to spare it takes the other 6 due now, and says when its next one is due:
    // the end of the first claim's lease (a minute), then the retry in an hour.
    let roomy = ClaimPlan { small_share: 16, ..plan.clone() };
    let claim = claim_like_the_service(&pool, &roomy).await;
    assert_eq!(claim.deliveries.len(), 6);
    let lease_end = later - time::Duration::minutes(59);
    assert!(claim.next_due.is_some_and(|due| due >= lease_end && due < later), "{:?} is the first lease's end", claim.next_due);
    sqlx::query("UPDATE deliveries SET status = 'succeeded', next_attempt_at = NULL, lease_id = NULL WHERE status = 'delivering'").execute(&pool).await.unwrap();
    let claim = claim_like_the_service(&pool, &roomy).await;
    assert!(claim.deliveries.is_empty());
    assert!(claim.next_due.is_some_and(|due| due >= later), "{:?} is the healthy subscription's retry", claim.next_due);

    let a_minute_ahead = claim_looking_ahead(&pool, &roomy, Duration::from_secs(60)).await;
    assert_eq!(a_minute_ahead.next_due, None, "the retry in an hour is beyond the look-ahead");

    let everyone_full = ClaimPlan { small_share: 0, ..plan };
    let claim = claim_like_the_service(&pool, &everyone_full).await;
    assert!(claim.deliveries.is_empty());
    assert_eq!(claim.next_due, None, "no subscription with room has anything due");
}

/// After a drain, every delivered row has left two dead entries in the claim's index until
/// vacuum: one where it was due and one where its lease would have ended, ahead of now. A
/// claim of the next webhook reads neither: it starts from where the last claim found the
/// subscription's head, and looks for the next due row no further than the loop would
/// sleep (5 s here). Looking to the end of the subscription, each claim at 200/s stepped
/// over the whole drain's lease-end entries (2 ms a claim for one row, stock autovacuum).
#[tokio::test]
async fn a_claim_after_a_drain_steps_over_none_of_its_dead_entries() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    pool.execute("ALTER TABLE deliveries SET (autovacuum_enabled = false)").await.unwrap();
    let subscription = Uuid::now_v7();
    queue(&pool, subscription, DRAINED, "now() - interval '1 minute'").await;
    // Claimed under a 50 s lease, then delivered: as a drain leaves them.
    pool.execute(
        "UPDATE deliveries SET status = 'delivering', attempt_count = 1, lease_id = gen_random_uuid(),
                               next_attempt_at = now() + interval '50 seconds';
         UPDATE deliveries SET status = 'succeeded', lease_id = NULL, next_attempt_at = NULL, completed_at = now();
         ANALYZE deliveries",
    )
    .await
    .unwrap();
    let head: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(&pool).await.unwrap();
    queue(&pool, subscription, 1, "now()").await;

    let mut db = pool.acquire().await.unwrap();
    let statement = include_str!("../../sql/deliveries/claim_due_deliveries.sql");
    db.execute(sqlx::AssertSqlSafe(format!("PREPARE claim(int, float8, uuid, uuid[], int[], timestamptz[], int, float8) AS {statement}")))
        .await
        .unwrap();
    // Positioned 100 ms before the last claim's head, as the scheduler positions it.
    let from = (head - time::Duration::milliseconds(100)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let known = format!("ARRAY['{subscription}']::uuid[], ARRAY[64], ARRAY['{from}']::timestamptz[], 4, 5");
    db.execute("BEGIN").await.unwrap();
    deliveries::prefer_claim_index(&mut *db).await.unwrap();
    let plan = explain(&mut db, &format!("EXECUTE claim(64, 60, '{}', {known})", Uuid::new_v4())).await;
    db.execute("ROLLBACK").await.unwrap();
    let root = &plan[0]["Plan"];
    assert_eq!(root["Actual Rows"], 1, "the new webhook is claimed:\n{plan:#}");
    let pages = root["Shared Hit Blocks"].as_f64().unwrap() + root["Shared Read Blocks"].as_f64().unwrap();
    // Claiming one row touches a few dozen pages (its indexes, its body); stepping over the
    // drain's entries touched thousands.
    assert!(pages <= 150.0, "the claim of one webhook touched {pages} pages:\n{plan:#}");
}

/// What pausing, resuming, cancelling (a deleted subscription's), expiring parked rows and
/// the queue-depth metric read: a
/// subscription's waiting rows, or the queue's, never a subscription's finished history
/// (deliveries_subscription_idx) nor another's backlog, whatever the statistics say.
#[tokio::test]
async fn statements_about_waiting_deliveries_read_only_waiting_ones() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    pool.execute("ANALYZE deliveries; ALTER TABLE deliveries SET (autovacuum_enabled = false)").await.unwrap();
    // The queue a fifth of the table, as history outgrows it (with more than half of the
    // table waiting, reading it whole is the better plan).
    let (busy, quiet, backlog) = (Uuid::now_v7(), Uuid::now_v7(), 5_000);
    queue(&pool, busy, backlog, "now()").await;
    // A long history of finished deliveries, then 100 waiting and 100 parked.
    queue(&pool, quiet, DRAINED, "now()").await;
    sqlx::query("UPDATE deliveries SET status = 'succeeded', next_attempt_at = NULL, completed_at = now() WHERE subscription_id = $1")
        .bind(quiet)
        .execute(&pool)
        .await
        .unwrap();
    queue(&pool, quiet, 100, "now()").await;
    queue(&pool, quiet, 100, "'infinity'").await;
    // Both active, so the quiet one's parked rows are misplaced (a resume cut short), with
    // 1,000 subscriptions besides that have nothing waiting.
    pool.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO subscriptions (id, target_url) VALUES ('{busy}', 'http://127.0.0.1:9/'), ('{quiet}', 'http://127.0.0.1:9/');
         INSERT INTO subscriptions (id, target_url, is_active) SELECT gen_random_uuid(), 'http://127.0.0.1:9/', n % 2 = 0 FROM generate_series(1, 1000) AS n"
    )))
    .await
    .unwrap();

    // Each statement with its arguments and the most rows of deliveries it may read. A batch
    // of the backlog task reads each row it moves twice: picked through a partial index of
    // waiting rows, then updated by id.
    let statements = [
        ("park", include_str!("../../sql/deliveries/park_subscription_deliveries.sql"), format!("('{quiet}', 1000)"), 200.0),
        ("park_part", include_str!("../../sql/deliveries/park_subscription_deliveries.sql"), format!("('{quiet}', 50)"), 100.0),
        ("resume", include_str!("../../sql/deliveries/resume_subscription_deliveries.sql"), format!("('{quiet}', 1000)"), 200.0),
        ("resume_part", include_str!("../../sql/deliveries/resume_subscription_deliveries.sql"), format!("('{quiet}', 50)"), 100.0),
        ("cancel", include_str!("../../sql/deliveries/cancel_subscription_deliveries.sql"), format!("('{quiet}', 1000)"), 400.0),
        // A batch smaller than the backlog: all due rows and some parked ones, each index
        // read in order and stopped at the batch (no bitmap of every waiting row, below).
        ("cancel_part", include_str!("../../sql/deliveries/cancel_subscription_deliveries.sql"), format!("('{quiet}', 150)"), 300.0),
        ("depth", include_str!("../../sql/deliveries/queue_depth.sql"), String::new(), backlog as f64 + 200.0),
        // Lists filtered on a waiting status: the queue's rows, not the history back to a
        // page's worth (nothing here is retrying: the history is read whole otherwise).
        ("list_waiting", include_str!("../../sql/deliveries/list_waiting_deliveries.sql"), "(NULL, NULL, 'retrying', NULL, 51)".into(), backlog as f64 + 200.0),
        // One look-up per subscription in the index of its due or of its parked rows,
        // stopped at the first row found: not every waiting row.
        ("misplaced", include_str!("../../sql/deliveries/misplaced_backlogs.sql"), String::new(), 10.0),
        ("list_waiting_for_one", include_str!("../../sql/deliveries/list_waiting_deliveries_for_subscription.sql"), format!("('{quiet}', 'retrying', 21)"), 200.0),
        // Picked, updated and returned (counted): each of its 100 expired rows three times.
        ("expire", include_str!("../../sql/maintenance/expire_parked_deliveries.sql"), "(now() + interval '1 day', 1000)".into(), 300.0),
        // Nothing parked long enough: nothing read (not every parked row, to test its time).
        ("expire_none", include_str!("../../sql/maintenance/expire_parked_deliveries.sql"), "(now() - interval '1 day', 1000)".into(), 0.0),
    ];
    let mut db = pool.acquire().await.unwrap();
    for (name, statement, _, _) in &statements {
        db.execute(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {statement}"))).await.unwrap();
    }
    for statistics in ["taken on an empty queue", "taken on these rows"] {
        for (name, _, arguments, most) in &statements {
            db.execute("BEGIN").await.unwrap();
            let plan = explain(&mut db, &format!("EXECUTE {name}{arguments}")).await;
            db.execute("ROLLBACK").await.unwrap();
            let read = rows_read(&plan[0]["Plan"]);
            assert!(read <= *most, "with statistics {statistics}, {name} read {read} rows of deliveries:\n{plan:#}");
            assert_reads_deliveries_through(
                &plan[0]["Plan"],
                &["deliveries_subscription_due_idx", "deliveries_parked_idx", "deliveries_parked_since_idx", "deliveries_pkey"],
            );
            assert!(!has_node(&plan[0]["Plan"], "BitmapOr"), "with statistics {statistics}, {name} reads a bitmap of two indexes:\n{plan:#}");
        }
        db.execute("ANALYZE deliveries").await.unwrap();
    }
}

/// Fan-out events still referred to after the cutoff (a failing customer's day of long
/// retries) are read by the first orphan sweep only: later ones start where the last one
/// ended, and such an event goes with its last delivery instead
/// (`retention::an_event_referred_to_past_the_cutoff_…`).
#[tokio::test]
async fn the_orphan_event_sweep_reads_only_events_that_grew_old_since_its_last_pass() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    pool.execute(
        "WITH old AS (
             INSERT INTO events (id, event_type, payload, created_at)
             SELECT gen_random_uuid(), 'order.paid', '{}', now() - interval '4 days' FROM generate_series(1, 1000)
             RETURNING id
         )
         INSERT INTO deliveries (id, subscription_id, event_id, status, attempt_count, next_attempt_at, created_at)
         SELECT gen_random_uuid(), gen_random_uuid(), id, 'retrying', 5, now() + interval '1 hour', now() - interval '4 days' FROM old;
         ANALYZE events, deliveries",
    )
    .await
    .unwrap();
    let mut db = pool.acquire().await.unwrap();
    let statement = include_str!("../../sql/maintenance/delete_orphan_events.sql");
    db.execute(sqlx::AssertSqlSafe(format!("PREPARE sweep(timestamptz, bigint, timestamptz) AS {statement}"))).await.unwrap();
    let cutoff = "now() - interval '3 days'";
    for (since, most) in [("NULL", 1000.0), ("now() - interval '3 days 5 minutes'", 0.0)] {
        db.execute("BEGIN").await.unwrap();
        let plan = explain(&mut db, &format!("EXECUTE sweep({cutoff}, 2000, {since})")).await;
        db.execute("ROLLBACK").await.unwrap();
        let read = rows_read_of(&plan[0]["Plan"], "events");
        assert_eq!(read, most, "since {since}: read {read} events:\n{plan:#}");
    }
}

/// `GET /subscriptions/{id}/deliveries?status=failed|filtered` reads those rows through
/// their partial indexes, in custom and generic plans alike: none of the subscription's
/// 20,000 succeeded deliveries (the history statement reads all of them to find none).
#[tokio::test]
async fn a_subscription_s_failed_or_filtered_deliveries_are_read_through_their_indexes() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    let subscription = Uuid::now_v7();
    queue(&pool, subscription, DRAINED, "now()").await;
    pool.execute("UPDATE deliveries SET status = 'succeeded', next_attempt_at = NULL, completed_at = now(); ANALYZE deliveries")
        .await
        .unwrap();
    let mut db = pool.acquire().await.unwrap();
    let statement = include_str!("../../sql/deliveries/list_rare_deliveries_for_subscription.sql");
    db.execute(sqlx::AssertSqlSafe(format!("PREPARE rare(uuid, text, bigint) AS {statement}"))).await.unwrap();
    for plans in ["auto", "force_generic_plan"] {
        db.execute(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {plans}"))).await.unwrap();
        for status in ["failed", "filtered"] {
            let plan = explain(&mut db, &format!("EXECUTE rare('{subscription}', '{status}', 21)")).await;
            let read = rows_read(&plan[0]["Plan"]);
            assert_eq!(read, 0.0, "{status}, {plans}: read {read} rows of deliveries:\n{plan:#}");
        }
    }
}

/// The writer loops' sessions plan each statement once and keep the plan until an ANALYZE
/// of a table it reads (`sql/cluster/writer_session.sql`). Plans made on an empty database
/// must still read deliveries, subscriptions and attempts by key once the queue holds a
/// large backlog that no ANALYZE has seen.
#[tokio::test]
async fn the_writers_plans_made_on_an_empty_database_read_by_key_once_it_has_grown() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    webhookd::db::partitions::ensure_partitions(&pool, time::OffsetDateTime::now_utc()).await.unwrap();
    pool.execute("ANALYZE; ALTER TABLE deliveries SET (autovacuum_enabled = false)").await.unwrap();
    let writers = webhookd::db::connect_writers(&pool, Duration::from_secs(30));
    let mut db = writers.acquire().await.unwrap();
    let settings: (String, String) = sqlx::query_as("SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')")
        .fetch_one(&mut *db)
        .await
        .unwrap();
    assert_eq!(settings, ("force_generic_plan".to_owned(), "off".to_owned()));
    for (name, statement) in [
        ("durable", include_str!("../../sql/deliveries/wait_until_durable.sql")),
        ("outcome", include_str!("../../sql/deliveries/record_attempts.sql")),
    ] {
        db.execute(sqlx::AssertSqlSafe(format!("PREPARE {name} AS {statement}"))).await.unwrap();
    }
    let subscription = Uuid::now_v7();
    let durable = |ids: &[Uuid]| format!("EXECUTE durable({})", uuid_array(ids));
    // A batch of three outcomes, as the recorder writes them on a retry (which also looks
    // up the attempts an earlier try may have logged); the leases are not the rows' own, so
    // the rows stay as they are.
    let outcome = |ids: &[Uuid]| {
        let each = |value: &str| format!("ARRAY[{}]", vec![value; ids.len()].join(", "));
        format!(
            "EXECUTE outcome({ids}, {leases}, {succeeded}, {none}::timestamptz[], {none}::text[], {subscriptions}, {one}, {success}, \
             {ok}, {none}::text[], {one}, {none}::text[], {url}, {now}, 0, 'webhookd.delivery.failed', true, 42)",
            ids = uuid_array(ids),
            leases = uuid_array(&ids.iter().map(|_| Uuid::new_v4()).collect::<Vec<_>>()),
            succeeded = each("'succeeded'"),
            none = each("NULL"),
            subscriptions = uuid_array(&vec![subscription; ids.len()]),
            one = each("1"),
            success = each("'success'"),
            ok = each("200"),
            url = each("'http://127.0.0.1:9/'"),
            now = each("now()"),
        )
    };
    // The plans are made now, on the statistics of an empty database.
    let none = [Uuid::new_v4(); 3];
    for statement in [durable(&none), outcome(&none)] {
        db.execute("BEGIN").await.unwrap();
        db.execute(sqlx::AssertSqlSafe(statement)).await.unwrap();
        db.execute("ROLLBACK").await.unwrap();
    }

    let backlog = queue(&pool, subscription, FULL_BACKLOG, "now()").await;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "INSERT INTO subscriptions (id, target_url) VALUES ('{subscription}', 'http://127.0.0.1:9/');
         INSERT INTO subscriptions (id, target_url) SELECT gen_random_uuid(), 'http://127.0.0.1:9/' FROM generate_series(1, 2000);
         UPDATE subscriptions SET failing_since = now(), failed_in_streak = 1 WHERE id = '{subscription}';
         INSERT INTO attempts (delivery_id, subscription_id, attempt_number, outcome, duration_ms, target_url)
         SELECT id, subscription_id, 1, 'failed_attempt', 5, 'http://127.0.0.1:9/' FROM deliveries"
    )))
    .await
    .unwrap();
    for statement in [durable(&backlog[..3]), outcome(&backlog[..3])] {
        db.execute("BEGIN").await.unwrap();
        let plan = explain(&mut db, &statement).await;
        db.execute("ROLLBACK").await.unwrap();
        let plan = &plan[0]["Plan"];
        assert!(!has_node(plan, "Seq Scan"), "a table read whole by a plan made on an empty database:\n{plan:#}");
        let read = rows_read(plan);
        assert!(read <= 3.0, "{read} rows of deliveries read for a batch of three:\n{plan:#}");
        let read = rows_read_of(plan, "subscriptions");
        assert!(read <= 3.0, "{read} rows of subscriptions read for a batch of three:\n{plan:#}");
        let read = rows_read_of_partitions(plan, "attempts_");
        assert!(read <= 3.0, "{read} rows of attempts read for a batch of three:\n{plan:#}");
    }
}

fn uuid_array(ids: &[Uuid]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!("ARRAY[{}]::uuid[]", quoted.join(", "))
}

/// Whether the plan has a node of this type.
fn has_node(plan: &Value, node_type: &str) -> bool {
    plan["Node Type"] == node_type || plan["Plans"].as_array().into_iter().flatten().any(|child| has_node(child, node_type))
}

/// Every read of deliveries in the plan goes through one of `indexes`.
fn assert_reads_deliveries_through(plan: &Value, indexes: &[&str]) {
    let mut nodes = vec![plan];
    while let Some(node) = nodes.pop() {
        let whole = node["Relation Name"] == "deliveries" && node["Node Type"] == "Seq Scan";
        assert!(!whole, "deliveries read whole:\n{plan:#}");
        if let Some(index) = node["Index Name"].as_str().filter(|name| name.starts_with("deliveries_")) {
            assert!(indexes.contains(&index), "deliveries read through {index}:\n{plan:#}");
        }
        nodes.extend(node["Plans"].as_array().into_iter().flatten());
    }
}

/// One claim of up to 64 deliveries, as the service makes it, looking two hours ahead.
async fn claim_like_the_service(pool: &PgPool, plan: &ClaimPlan) -> deliveries::Claim {
    claim_looking_ahead(pool, plan, Duration::from_secs(7200)).await
}

async fn claim_looking_ahead(pool: &PgPool, plan: &ClaimPlan, look_ahead: Duration) -> deliveries::Claim {
    let mut db = deliveries::connect_for_claims(&pool.connect_options()).await.unwrap();
    deliveries::claim_due(&mut db, 64, 60.0, Uuid::new_v4(), plan, look_ahead).await.unwrap()
}

/// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of a statement.
async fn explain(db: &mut PgConnection, statement: &str) -> Value {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}")))
        .fetch_one(db)
        .await
        .unwrap();
    // `json` comes back as its text; sqlx is built without its JSON support.
    serde_json::from_str(&row.try_get_unchecked::<String, _>(0).unwrap()).unwrap()
}

/// Rows of `deliveries` the plan's scans read: those they returned and those they
/// filtered out, over every loop.
fn rows_read(node: &Value) -> f64 {
    rows_read_of(node, "deliveries")
}

/// The rows of `table` a plan read, kept or filtered out.
fn rows_read_of(node: &Value, table: &str) -> f64 {
    rows_read_where(node, &|name| name == table)
}

/// The rows a plan read of the tables whose names start with `prefix` (a partitioned
/// table's partitions).
fn rows_read_of_partitions(node: &Value, prefix: &str) -> f64 {
    rows_read_where(node, &|name| name.starts_with(prefix))
}

fn rows_read_where(node: &Value, table: &dyn Fn(&str) -> bool) -> f64 {
    let number = |key: &str| node[key].as_f64().unwrap_or(0.0);
    let own = if node["Relation Name"].as_str().is_some_and(table) {
        (number("Actual Rows") + number("Rows Removed by Filter") + number("Rows Removed by Index Recheck")) * number("Actual Loops")
    } else {
        0.0
    };
    own + node["Plans"].as_array().map_or(0.0, |children| children.iter().map(|child| rows_read_where(child, table)).sum())
}

/// The plan reaches deliveries only through deliveries_subscription_due_idx (the claim's
/// reads) and the primary key (locking and updating what it chose), and sorts nothing
/// incrementally: read in due order through deliveries_due_idx (dropped since), with each subscription's
/// rows sorted incrementally, a claim steps over every row due before a subscription's
/// (claims of 600 ms behind hanging subscriptions' backlogs in the benchmark).
fn assert_reads_only_by_subscription(plan: &Value) {
    let mut nodes = vec![plan];
    while let Some(node) = nodes.pop() {
        assert_ne!(node["Node Type"], "Incremental Sort", "{node:#}");
        // Of any table: a generic plan made while bodies or events were few read them whole
        // at every claim until the next ANALYZE.
        assert_ne!(node["Node Type"], "Seq Scan", "{node:#}");
        if let Some(index) = node["Index Name"].as_str().filter(|name| name.starts_with("deliveries_")) {
            assert!(
                ["deliveries_subscription_due_idx", "deliveries_pkey"].contains(&index),
                "the claim read deliveries through {index}:\n{plan:#}"
            );
        }
        nodes.extend(node["Plans"].as_array().into_iter().flatten());
    }
}
