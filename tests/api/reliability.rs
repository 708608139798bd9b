//! Fault injection against real processes: the `webhookd` binary, a real PostgreSQL and
//! real receivers. Each test states the guarantee it backs (README, "Guarantees").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::helpers::{fresh_database, http_client, ingest_once, wait_all_finished, wait_for_lock_waiters, Receiver, Reply, Service, VanishingProxy, ADMIN_TOKEN};

/// Ingests `count` webhooks through `service` with `parallel` concurrent requests; returns
/// the delivery ids that got a 202.
async fn ingest_many(service: &Service, subscription: Uuid, count: usize, parallel: usize) -> Vec<Uuid> {
    let client = http_client();
    let accepted = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (client, accepted, next, base) = (client.clone(), accepted.clone(), next.clone(), service.base.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= count {
                        return;
                    }
                    if let (202, Some(id)) = ingest_once(&client, &base, subscription, format!("{{\"n\":{n}}}")).await {
                        accepted.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    accepted.lock().unwrap().clone()
}

/// The attempt numbers received per webhook-id (`x-webhook-attempt`).
fn receipts(receiver: &Receiver) -> HashMap<Uuid, Vec<u32>> {
    let mut by_id: HashMap<Uuid, Vec<u32>> = HashMap::new();
    for request in receiver.received() {
        let id = request.headers["webhook-id"].to_str().unwrap().parse().unwrap();
        let attempt = request.headers["x-webhook-attempt"].to_str().unwrap().parse().unwrap();
        by_id.entry(id).or_default().push(attempt);
    }
    by_id
}

async fn wait_until_received(receiver: &Receiver, ids: &[Uuid], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = receipts(receiver);
        let missing = ids.iter().filter(|id| !seen.contains_key(id)).count();
        if missing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} accepted webhooks never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const FAST_RECOVERY: &[(&str, &str)] = &[
    ("WEBHOOKD_LEASE_DURATION", "3s"),
    ("WEBHOOKD_DELIVERY_TIMEOUT", "1s"),
    ("WEBHOOKD_RETRY_SCHEDULE", "200ms,200ms,200ms"),
    ("WEBHOOKD_POLL_INTERVAL", "500ms"),
    ("WEBHOOKD_WORKER_CONCURRENCY", "32"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_delivery_loses_nothing_and_duplicates_only_what_was_in_flight() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(vec![], Reply::Delay(Duration::from_millis(15), 200)).await;
    let mut service = Service::start(&database, FAST_RECOVERY).await;
    let subscription = service.create_subscription(&http_client(), &receiver.url).await;

    let accepted = ingest_many(&service, subscription, 5_000, 32).await;
    assert_eq!(accepted.len(), 5_000, "every ingest was accepted");
    while receiver.received().len() < 1_500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    service.kill().await;
    let before_kill = receiver.received().len();
    assert!(before_kill < 5_000, "the kill came mid-delivery");

    let _restarted = Service::start(&database, FAST_RECOVERY).await;
    wait_until_received(&receiver, &accepted, Duration::from_secs(90)).await;
    wait_all_finished(&pool, Duration::from_secs(30)).await;

    let seen = receipts(&receiver);
    // A webhook sent again must have been in flight at the kill: its first attempt was the
    // killed instance's (the receiver always answers, so nothing else retries), and the
    // second the next instance's claim after the lease ran out. When each copy arrived says
    // less: under load the receiver reads a request the killed instance sent well after
    // the kill returns.
    let duplicated: Vec<_> = seen.iter().filter(|(_, attempts)| attempts.len() > 1).collect();
    for (id, attempts) in &duplicated {
        let mut attempts = attempts.to_vec();
        attempts.sort_unstable();
        assert_eq!(attempts, [1, 2], "{id} was delivered twice though it was not in flight at the kill");
    }
    assert!(duplicated.len() <= 32 + 32, "at most the in-flight deliveries repeat: {}", duplicated.len());
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'succeeded'").fetch_one(&pool).await.unwrap();
    assert_eq!(succeeded, 5_000, "none stuck in delivering after the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_handed_to_the_senders_at_ingest_is_written_claimed_and_survives_a_kill_9() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    // The second request hangs until the kill; the others are answered.
    let receiver = Receiver::start(vec![Reply::Status(200), Reply::Hang], Reply::Status(200)).await;
    let settings = [("WEBHOOKD_LEASE_DURATION", "3s"), ("WEBHOOKD_DELIVERY_TIMEOUT", "2s"), ("WEBHOOKD_POLL_INTERVAL", "500ms")];
    let mut service = Service::start(&database, &settings).await;
    let client = http_client();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    // First, a subscription whose receiver answers: the instance knows it, and hands its
    // webhooks over even while a claim is in the database (a new subscription's first
    // webhook is queued instead if a claim that may discover it is running, which one
    // started by the subscription's creation often is).
    let (status, _) = service.ingest(&client, subscription, "{\"warm\":true}".into()).await;
    assert_eq!(status, 202);
    // And its outcome recorded: killed before that, the instance would leave it to be
    // sent again after its lease, as any unrecorded attempt is (at least once), and the
    // receiver would count one request more than this test is about.
    wait_all_finished(&pool, Duration::from_secs(10)).await;
    assert_eq!(receiver.received().len(), 1);
    let (status, id) = service.ingest(&client, subscription, "{\"handed\":true}".into()).await;
    assert_eq!(status, 202);
    let id = id.unwrap();

    // Written claimed by the very transaction that accepted it (the one that wrote its
    // body): no claim statement, no second version of the row.
    let (state, attempt, same_transaction): (String, i32, bool) = sqlx::query_as(
        "SELECT d.status, d.attempt_count, d.xmin = b.xmin
         FROM deliveries AS d JOIN delivery_bodies AS b ON b.delivery_id = d.id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), attempt, same_transaction), ("delivering", 1, true));
    while receiver.received().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    service.kill().await;

    // Its lease runs out and another instance sends it again: nothing accepted is lost.
    let _restarted = Service::start(&database, &settings).await;
    wait_all_finished(&pool, Duration::from_secs(30)).await;
    let (state, attempt): (String, i32) =
        sqlx::query_as("SELECT status, attempt_count FROM deliveries WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap();
    assert_eq!((state.as_str(), attempt), ("succeeded", 2), "the attempt lost with the first instance still counts");
    let received: Vec<_> = receiver.received().into_iter().skip(1).collect();
    let sent: Vec<_> = received.iter().map(|r| (&r.headers["webhook-id"], &r.headers["x-webhook-attempt"])).collect();
    assert_eq!(received.len(), 2, "only the handed webhook, twice: {sent:?}");
    assert!(received.iter().all(|r| r.headers["webhook-id"] == id.to_string().as_str() && r.body == br#"{"handed":true}"#));
    assert_eq!(received[1].headers["x-webhook-attempt"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_deliveries_finish_and_a_restart_delivers_the_rest() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(vec![], Reply::Delay(Duration::from_millis(300), 200)).await;
    let settings = [("WEBHOOKD_WORKER_CONCURRENCY", "8"), ("WEBHOOKD_SHUTDOWN_GRACE", "5s")];
    let mut service = Service::start(&database, &settings).await;
    let subscription = service.create_subscription(&http_client(), &receiver.url).await;
    let accepted = ingest_many(&service, subscription, 100, 8).await;
    while receiver.received().len() < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert_eq!(service.terminate(Duration::from_secs(7)).await, Some(0));
    let delivering: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'delivering'").fetch_one(&pool).await.unwrap();
    assert_eq!(delivering, 0, "every in-flight delivery finished and was recorded");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts").fetch_one(&pool).await.unwrap();
    assert_eq!(logged as usize, receiver.received().len(), "every request sent has its attempt row; logs:\n{}", service.logs());

    let _restarted = Service::start(&database, &settings).await;
    wait_until_received(&receiver, &accepted, Duration::from_secs(60)).await;
    wait_all_finished(&pool, Duration::from_secs(30)).await;
    assert!(receipts(&receiver).values().all(|attempts| attempts.len() == 1), "nothing was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_hanging_receivers_releases_their_deliveries_within_the_grace_period() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(vec![], Reply::Hang).await;
    // A receiver that never answered gets at most 4 attempts at once: all 4 start.
    let settings = [("WEBHOOKD_SHUTDOWN_GRACE", "1s"), ("WEBHOOKD_DELIVERY_TIMEOUT", "30s")];
    let mut service = Service::start(&database, &settings).await;
    let subscription = service.create_subscription(&http_client(), &receiver.url).await;
    let accepted = ingest_many(&service, subscription, 4, 4).await;
    while receiver.received().len() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = Instant::now();
    assert_eq!(service.terminate(Duration::from_secs(10)).await, Some(0));
    assert!(stopping.elapsed() < Duration::from_secs(6), "exit within the grace period, not the 30 s timeout");

    let rows: Vec<(String, i32)> = sqlx::query_as("SELECT status, attempt_count FROM deliveries").fetch_all(&pool).await.unwrap();
    assert_eq!(rows.len(), accepted.len());
    assert!(rows.iter().all(|(status, attempts)| status == "queued" && *attempts == 0), "released, attempt uncounted: {rows:?}");
    // Those requests reached the receiver and are in no attempt log: the operator was told
    // at start that a grace shorter than the timeout allows this.
    assert!(service.logs().contains("WEBHOOKD_SHUTDOWN_GRACE is shorter than WEBHOOKD_DELIVERY_TIMEOUT"), "{}", service.logs());
}

/// On SIGTERM, a delivery still waiting for its turn (here a rate limit's) goes back to the
/// queue at once. Started during the grace period instead, its request could be cut off at
/// the grace's end after the receiver had it, with no attempt logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_starts_no_new_send_and_every_request_sent_is_logged() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(vec![], Reply::Delay(Duration::from_secs(2), 200)).await;
    let mut service = Service::start(&database, &[("WEBHOOKD_SHUTDOWN_GRACE", "2500ms")]).await;
    let body = serde_json::json!({ "target_url": receiver.url, "rate_limit": 1 });
    let subscription = service.create_subscription_with(&http_client(), &body).await;
    let accepted = ingest_many(&service, subscription, 3, 3).await;
    assert_eq!(accepted.len(), 3);
    while receiver.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert_eq!(service.terminate(Duration::from_secs(10)).await, Some(0));
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts").fetch_one(&pool).await.unwrap();
    assert_eq!(receiver.received().len(), 1, "no request started after SIGTERM; logs:\n{}", service.logs());
    assert_eq!(logged, 1, "the request sent has its attempt row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_10000_webhooks_without_double_delivery() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::answering(200).await;
    let settings = [("WEBHOOKD_WORKER_CONCURRENCY", "32")];
    let instances = [
        Service::start(&database, &settings).await,
        Service::start(&database, &settings).await,
        Service::start(&database, &settings).await,
    ];
    let subscription = instances[0].create_subscription(&http_client(), &receiver.url).await;
    let mut accepted = Vec::new();
    for instance in &instances {
        accepted.extend(ingest_many(instance, subscription, 3_334, 16).await);
    }
    assert!(accepted.len() >= 10_000);
    wait_until_received(&receiver, &accepted, Duration::from_secs(120)).await;
    wait_all_finished(&pool, Duration::from_secs(30)).await;

    let seen = receipts(&receiver);
    assert_eq!(seen.len(), accepted.len());
    assert!(seen.values().all(|attempts| attempts.len() == 1), "no webhook delivered twice");
    let shares: Vec<usize> = instances.iter().map(|i| i.logs().matches("attempt finished").count()).collect();
    assert_eq!(shares.iter().sum::<usize>(), accepted.len(), "{shares:?}");
    for share in &shares {
        assert!(*share >= accepted.len() / 20, "work is spread across instances: {shares:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_logs_follow_one_webhook_from_ingest_to_its_last_attempt() {
    let database = fresh_database().await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let receiver = Receiver::start(vec![Reply::Status(500)], Reply::Status(200)).await;
    let service = Service::start(&database, &[("WEBHOOKD_RETRY_SCHEDULE", "100ms"), ("WEBHOOKD_LOG_FORMAT", "json")]).await;
    let subscription = service.create_subscription(&http_client(), &receiver.url).await;
    let (_, id) = service.ingest(&http_client(), subscription, "{}".into()).await;
    let id = id.unwrap();
    wait_all_finished(&pool, Duration::from_secs(15)).await;

    let lines: Vec<serde_json::Value> = service
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| line.to_string().contains(&id.to_string()))
        .collect();
    // The first attempt may finish before `webhook accepted` (the 202): a handed-over
    // webhook's send starts once its row is committed, the 202 waits for the flush.
    let with_message = |message: &str| lines.iter().filter(|line| line["message"] == message).collect::<Vec<_>>();
    let (accepted, attempts) = (with_message("webhook accepted"), with_message("attempt finished"));
    assert_eq!((accepted.len(), attempts.len(), lines.len()), (1, 2, 3), "{lines:#?}");
    assert_eq!(accepted[0]["delivery.id"], id.to_string());
    assert_eq!(attempts[0]["span"]["delivery.id"], id.to_string());
    assert_eq!((&attempts[0]["outcome"], &attempts[1]["outcome"]), (&"failed_attempt".into(), &"success".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_sent_while_its_flush_is_pending_and_answered_202_only_once_durable() {
    let receiver = Receiver::answering(200).await;
    // The next webhook is handed over, or (a claim looking for new subscriptions in the
    // database at that moment) queued for the claim loop; either way its send starts
    // before its flush.
    let (_cluster, admin, service, subscription) = flush_held_back("standby", &receiver, &[]).await;
    let client = http_client();
    let answer = {
        let (client, base) = (client.clone(), service.base.clone());
        tokio::spawn(async move { ingest_once(&client, &base, subscription, "{\"paused\":true}".into()).await })
    };
    let arrived = Instant::now() + Duration::from_secs(10);
    while receiver.received().len() < 2 {
        assert!(Instant::now() < arrived, "not delivered while its flush was pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!answer.is_finished(), "answered before the webhook was durable: {:?}", answer.await);

    set_synchronous_standby(&admin, "").await;
    let (status, id) = tokio::time::timeout(Duration::from_secs(10), answer).await.expect("answered once durable").unwrap();
    assert_eq!(status, 202);
    assert_eq!(receiver.received()[1].headers["webhook-id"], id.unwrap().to_string().as_str());
}

/// A webhook that finds no free send slot at ingest (here: its subscription at its cap of
/// 1) is written queued and claimed by the claim loop; that too happens before its flush.
/// It used to be committed with its own flush, so its send waited for the disk (the likely
/// cause of the test above failing once in CI: a claim in the database at the moment of
/// its ingest refuses a slot to a subscription it may discover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_queued_for_lack_of_a_slot_is_also_sent_while_its_flush_is_pending() {
    let receiver = Receiver::start(vec![Reply::Status(200)], Reply::Delay(Duration::from_millis(500), 200)).await;
    let capped = [("WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "1")];
    let (_cluster, admin, service, subscription) = flush_held_back("standby-capped", &receiver, &capped).await;
    let client = http_client();
    // The first takes the subscription's one slot (its send lasts 500 ms); the second finds
    // none and is written queued.
    let answers: Vec<_> = (0..2)
        .map(|n| {
            let (client, base) = (client.clone(), service.base.clone());
            tokio::spawn(async move { ingest_once(&client, &base, subscription, format!("{{\"n\":{n}}}")).await })
        })
        .collect();
    let arrived = Instant::now() + Duration::from_secs(10);
    while receiver.received().len() < 3 {
        assert!(Instant::now() < arrived, "both sent while their flush was pending: {} of 2 received", receiver.received().len() - 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(answers.iter().all(|answer| !answer.is_finished()), "answered before the webhooks were durable");

    set_synchronous_standby(&admin, "").await;
    for answer in answers {
        let (status, _) = tokio::time::timeout(Duration::from_secs(10), answer).await.expect("answered once durable").unwrap();
        assert_eq!(status, 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_a_flush_vouches_only_for_webhooks_the_database_still_has() {
    // A webhook committed without waiting for its flush is lost if the database crashes
    // or fails over first; the wait may then succeed on the restarted database. It says
    // which of the webhooks exist after the flush, and only those get a 202 (the unit
    // tests in group_commit.rs): here an id never stored stands for one lost.
    let database = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let service = Service::start(&database, &[]).await;
    let client = http_client();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let (status, stored) = service.ingest(&client, subscription, "{}".into()).await;
    assert_eq!(status, 202);
    let (stored, lost) = (stored.unwrap(), Uuid::now_v7());

    // The service's own statement, as it runs it.
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let statement = include_str!("../../sql/deliveries/wait_until_durable.sql");
    let (_flushed_past, durable): (String, Vec<Uuid>) = sqlx::query_as(statement).bind(vec![stored, lost]).fetch_one(&pool).await.unwrap();
    assert_eq!(durable, [stored]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_refuses_the_flush_wait_still_gets_every_webhook_accepted_and_delivered() {
    use sqlx::Connection;
    // A database of a role that is no superuser, where PUBLIC may not run the function the
    // wait for a flush uses (a hardened database could be set up so).
    let cluster = crate::helpers::cluster();
    let name = format!("plain_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&cluster.url_for("postgres")).await.unwrap();
    for statement in [format!("CREATE ROLE {name} LOGIN PASSWORD 'plain'"), format!("CREATE DATABASE {name} OWNER {name}")] {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.unwrap();
    }
    let mut database = sqlx::PgConnection::connect(&cluster.url_for(&name)).await.unwrap();
    sqlx::query("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_logical_emit_message(boolean, text, text) FROM PUBLIC").execute(&mut database).await.unwrap();
    let mut as_role = url::Url::parse(&cluster.url_for(&name)).unwrap();
    as_role.set_username(&name).unwrap();
    as_role.set_password(Some("plain")).unwrap();

    let receiver = Receiver::answering(200).await;
    // Only a webhook handed to the senders at ingest waits for a flush apart from its
    // commit. A webhook is queued instead while a claim may discover its subscription, and
    // each queued webhook wakes a claim: so first one webhook delivered, then no claim
    // but those that queued webhooks wake (no poll), and the next webhook is handed over.
    let settings = [("WEBHOOKD_POLL_INTERVAL", "60s")];
    let service = Service::start(as_role.as_str(), &settings).await;
    let client = http_client();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let (status, warm) = service.ingest(&client, subscription, "{\"warm\":true}".into()).await;
    assert_eq!(status, 202);
    wait_until_received(&receiver, &[warm.unwrap()], Duration::from_secs(10)).await;
    let pool = sqlx::PgPool::connect(&cluster.url_for(&name)).await.unwrap();
    wait_all_finished(&pool, Duration::from_secs(10)).await;
    let mut accepted = Vec::new();
    for n in 0..20 {
        let (status, id) = service.ingest(&client, subscription, format!("{{\"n\":{n}}}")).await;
        assert_eq!(status, 202, "webhook {n}");
        accepted.push(id.unwrap());
    }
    wait_until_received(&receiver, &accepted, Duration::from_secs(10)).await;
    assert!(service.logs().contains("does not let webhookd wait for a flush"), "{}", service.logs());
}

/// Sets `synchronous_standby_names` and returns once commits follow it: a commit that
/// waits for durability is held when a standby is named, and not otherwise. (A probe held
/// is let go by closing its connection; its backend waits until the standby is lifted.
/// A statement timeout would not end the wait: it does not cover the commit.)
/// A service on a cluster of its own (`name`), with a subscription to `receiver` that has
/// answered once, and then every flush held back: a synchronous standby that never comes
/// stands for a disk that does not finish a flush, and every commit that waits for
/// durability waits until `set_synchronous_standby(admin, "")` lifts it. (The shared test
/// cluster commits without waiting.) Returns the cluster (keep it), its admin URL, the
/// service and the subscription.
async fn flush_held_back(
    name: &str,
    receiver: &Receiver,
    settings: &[(&str, &str)],
) -> (webhookd::embedded_postgres::EmbeddedPostgres, String, Service, Uuid) {
    let cluster = own_cluster(name, None);
    webhookd::embedded_postgres::create_database_if_missing(&cluster.url_for("postgres"), "webhookd").await.unwrap();
    let admin = cluster.url_for("postgres");
    let service = Service::start(&cluster.database_url(), settings).await;
    let client = http_client();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let (status, warm) = service.ingest(&client, subscription, "{\"warm\":true}".into()).await;
    assert_eq!(status, 202);
    wait_until_received(receiver, &[warm.unwrap()], Duration::from_secs(10)).await;
    set_synchronous_standby(&admin, "never").await;
    (cluster, admin, service, subscription)
}

async fn set_synchronous_standby(admin_url: &str, name: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER SYSTEM SET synchronous_standby_names = '{name}'"))).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()").execute(&mut admin).await.unwrap();
    let settled = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = sqlx::PgConnection::connect(admin_url).await.unwrap();
        let commit = sqlx::query("SELECT pg_logical_emit_message(true, 'test', '')").execute(&mut probe);
        // Held: not done in 300 ms, and waiting for the standby (not merely slow).
        let held = tokio::time::timeout(Duration::from_millis(300), commit).await.is_err()
            && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'SyncRep')")
                .fetch_one(&mut admin)
                .await
                .unwrap();
        let named = !name.is_empty();
        if held == named {
            return;
        }
        assert!(Instant::now() < settled, "synchronous_standby_names = '{name}' never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PostgreSQL of the test's own, so it can be stopped and started again on the same port.
fn own_cluster(name: &str, port: Option<u16>) -> webhookd::embedded_postgres::EmbeddedPostgres {
    let directory = std::env::temp_dir().join("webhookd-tests").join(format!("{}-{name}", std::process::id())).join("postgres");
    webhookd::embedded_postgres::EmbeddedPostgres::start(&webhookd::embedded_postgres::ClusterOptions {
        directory,
        server_settings: vec![("fsync".into(), "off".into())],
        port,
    })
    .expect("own cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_survived_with_503s_meanwhile_and_nothing_accepted_lost() {
    let mut cluster = own_cluster("restart", None);
    let port = cluster.port();
    webhookd::embedded_postgres::create_database_if_missing(&cluster.url_for("postgres"), "webhookd").await.unwrap();
    let database = cluster.database_url();
    let receiver = Receiver::answering(200).await;
    // An API-only instance takes the webhooks; the worker delivers only what NOTIFY (or a
    // 30 s poll) tells it about, so prompt delivery after recovery proves LISTEN is back.
    let mut api = Service::start(&database, &[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let mut worker = Service::start(&database, &[("WEBHOOKD_POLL_INTERVAL", "30s")]).await;
    let client = http_client();
    let subscription = api.create_subscription(&client, &receiver.url).await;

    let stop_ingest = tokio_util::sync::CancellationToken::new();
    let ingesting = {
        let (client, base, stop) = (client.clone(), api.base.clone(), stop_ingest.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.is_cancelled() {
                let started = Instant::now();
                let (status, id) = ingest_once(&client, &base, subscription, "{}".into()).await;
                answers.push((status, id, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = client.get(format!("{}/health", api.base)).send().await.unwrap();
    assert_eq!(health.status(), 503, "health reports the outage");
    // The liveness probe does not: restarting the process would not bring the database back.
    let liveness = client.get(format!("{}/livez", api.base)).send().await.unwrap();
    assert_eq!(liveness.status(), 200, "the process is alive");
    assert_eq!(liveness.text().await.unwrap(), r#"{"status":"ok"}"#);
    tokio::time::sleep(Duration::from_secs(8)).await;
    drop(cluster);
    let _cluster = own_cluster("restart", Some(port));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_ingest.cancel();
    let answers = ingesting.await.unwrap();

    assert!(api.is_running() && worker.is_running(), "neither instance exited");
    let accepted: Vec<Uuid> = answers.iter().filter(|(status, _, _)| *status == 202).map(|(_, id, _)| id.unwrap()).collect();
    let refused = answers.iter().filter(|(status, _, _)| *status == 503).count();
    assert!(refused > 0, "ingest answered 503 while the database was down");
    assert!(answers.iter().all(|(status, _, _)| [202, 503].contains(status)), "only 202 or 503");
    let slowest = answers.iter().map(|(_, _, took)| *took).max().unwrap();
    assert!(slowest < Duration::from_secs(5), "no request hung ({slowest:?})");
    wait_until_received(&receiver, &accepted, Duration::from_secs(20)).await;

    // After recovery: delivered at once through NOTIFY/LISTEN, not at the 30 s poll.
    let after = Instant::now();
    let (_, id) = ingest_once(&client, &api.base, subscription, "{\"after\":true}".into()).await;
    wait_until_received(&receiver, &[id.unwrap()], Duration::from_secs(10)).await;
    assert!(after.elapsed() < Duration::from_secs(10));
}

/// Guarantee (README, "Guarantees"): a database that vanishes without closing its
/// connections, as in a failover, holds delivery up for about the statement deadline, not
/// for good. sqlx sets no TCP keepalive, so a statement sent on such a connection would
/// wait for its answer for ever: the claim loop's own connection first of all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_gone_silent_holds_delivery_up_for_the_statement_deadline_not_for_good() {
    let settings = [("WEBHOOKD_DB_STATEMENT_DEADLINE", "1s"), ("WEBHOOKD_POLL_INTERVAL", "500ms")];
    let Proxied { proxy, api, mut worker, client, subscription, receiver, .. } = behind_a_vanishing_proxy(&settings).await;
    proxy.vanish();
    let (status, second) = api.ingest(&client, subscription, "{\"n\":2}".into()).await;
    assert_eq!(status, 202);
    let second = second.unwrap();
    wait_until_received(&receiver, &[second], Duration::from_secs(20)).await;
    // And its outcome is recorded, through a connection made after the old ones went silent.
    let recorded = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(format!("{}/deliveries/{second}", api.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let delivery: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        if delivery["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < recorded, "the outcome was never recorded: {delivery}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worker.is_running(), "the delivering instance kept running");
    assert!(worker.logs().contains("did not answer within 1s"), "the deadline is what ended the wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_database_goes_silent_wake_ups_come_through_and_silent_pooled_connections_are_dropped_at_once() {
    // The delivering instance polls only every minute: within this test, only a wake-up
    // over its LISTEN connection starts its claims. Its lease is the default 90 s: an
    // attempt that failed for want of a connection would wait that long.
    let settings = [("WEBHOOKD_DB_STATEMENT_DEADLINE", "1s"), ("WEBHOOKD_POLL_INTERVAL", "60s")];
    let Proxied { database, proxy, api, worker, client, subscription, receiver } = behind_a_vanishing_proxy(&settings).await;
    // Several connections left idle in the delivering instance's pool (API reads served
    // by it at once).
    let reads = (0..8).map(|_| client.get(format!("{}/subscriptions", worker.base)).bearer_auth(ADMIN_TOKEN).send());
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.unwrap().status(), 200);
    }

    // Every connection of the delivering instance goes silent, never closed.
    proxy.vanish();
    let found = Instant::now() + Duration::from_secs(15);
    for sign in ["LISTEN re-established", "cannot claim deliveries"] {
        // The listener's reconnect wakes the claim loop, whose claim fails on its silent
        // connection and is tried again a second later; then it sleeps for the minute.
        while !worker.logs().contains(sign) {
            assert!(Instant::now() < found, "never logged `{sign}`:\n{}", worker.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, second) = api.ingest(&client, subscription, "{\"n\":2}".into()).await;
    assert_eq!(status, 202);
    let second = second.unwrap();
    // Claimed at once: the NOTIFY reached the new LISTEN (the poll is a minute away).
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let claimed = Instant::now() + Duration::from_secs(10);
    loop {
        let attempts: i32 = sqlx::query_scalar("SELECT attempt_count FROM deliveries WHERE id = $1").bind(second).fetch_one(&pool).await.unwrap();
        if attempts > 0 {
            break;
        }
        assert!(Instant::now() < claimed, "not woken for a webhook accepted elsewhere:\n{}", worker.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And delivered at once: its send takes pooled connections (the subscription, the
    // outcome), and those left idle before the silence was noticed are dropped unasked,
    // not each waited on.
    let delivered = Instant::now() + Duration::from_secs(10);
    while !receipts(&receiver).contains_key(&second) {
        assert!(Instant::now() < delivered, "not delivered soon after the silence was noticed:\n{}", worker.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = worker.logs();
    assert!(logs.contains("dropping a pooled connection left idle since a connection was found silent"), "{logs}");
    assert!(!logs.contains("pool timed out"), "no request waited out the acquire timeout:\n{logs}");
}

/// The ingest writer keeps its connection between batches (db/held.rs). One that went
/// silent during a pause must cost the next webhook a ping, not the statement deadline.
#[tokio::test]
async fn a_webhook_accepted_after_the_ingest_connection_went_silent_in_a_pause_is_answered_202_not_503() {
    let database = fresh_database().await;
    let mut through_proxy = url::Url::parse(&database).unwrap();
    let target = std::net::SocketAddr::new(through_proxy.host_str().unwrap().parse().unwrap(), through_proxy.port().unwrap());
    let proxy = VanishingProxy::start(target).await;
    through_proxy.set_port(Some(proxy.address.port())).unwrap();
    let settings = [("WEBHOOKD_WORKER_CONCURRENCY", "0"), ("WEBHOOKD_DB_STATEMENT_DEADLINE", "20s")];
    let api = Service::start(through_proxy.as_str(), &settings).await;
    let client = http_client();
    let subscription = api.create_subscription(&client, "http://127.0.0.1:9/").await;
    let (status, _) = api.ingest(&client, subscription, "{\"n\":1}".into()).await;
    assert_eq!(status, 202);
    // Within the half second the writer keeps its connection unused, past the pause after
    // which it checks it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.vanish();
    let (status, second) = api.ingest(&client, subscription, "{\"n\":2}".into()).await;
    assert_eq!(status, 202, "{}", api.logs());
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = $1").bind(second.unwrap()).fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 1);
    assert!(api.logs().contains("dropping a connection kept between statements"), "{}", api.logs());
}

/// What happens on the server to a write whose answer the service never gets.
enum OnTheServer {
    /// It commits after the service gave up waiting for it (its statement deadline).
    CommitsLate,
    /// It is ended there (a backend terminated in a failover) and rolls back.
    RollsBack,
}

/// A fresh database, a proxy to it that can go silent, and an API-only instance connected
/// through the proxy, with a statement deadline of 2 s (a request's own deadline is 5 + 2 s).
async fn api_only_behind_a_vanishing_proxy() -> (String, VanishingProxy, Service) {
    let database = fresh_database().await;
    let mut through_proxy = url::Url::parse(&database).unwrap();
    let target = std::net::SocketAddr::new(through_proxy.host_str().unwrap().parse().unwrap(), through_proxy.port().unwrap());
    let proxy = VanishingProxy::start(target).await;
    through_proxy.set_port(Some(proxy.address.port())).unwrap();
    let settings = [("WEBHOOKD_WORKER_CONCURRENCY", "0"), ("WEBHOOKD_DB_STATEMENT_DEADLINE", "2s"), ("WEBHOOKD_HTTP_BODY_TIMEOUT", "5s")];
    let api = Service::start(through_proxy.as_str(), &settings).await;
    (database, proxy, api)
}

/// An ingest batch's INSERT runs on the server, held up there, when the database goes
/// silent to the service (the answer is lost); 3 s later, past the writer's deadline of
/// 2 s, the INSERT goes on or is ended. Returns the request's status, its delivery id if
/// any, whether the database has a webhook with that body, and the service's logs.
async fn ingest_whose_answer_is_lost(on_the_server: OnTheServer) -> (u16, Option<Uuid>, bool, String) {
    let (database, proxy, api) = api_only_behind_a_vanishing_proxy().await;
    let client = http_client();
    let subscription = api.create_subscription(&client, "http://127.0.0.1:9/").await;
    assert_eq!(api.ingest(&client, subscription, "{\"n\":1}".into()).await.0, 202);

    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    // Holds the batch's INSERT up on the server while it runs (as a slow disk or a lock
    // would): a trigger waits for a lock the test holds.
    sqlx::raw_sql(
        "CREATE FUNCTION hold_up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
         CREATE TRIGGER hold_up BEFORE INSERT ON delivery_bodies FOR EACH ROW EXECUTE FUNCTION hold_up();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut lock = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)").execute(&mut *lock).await.unwrap();
    let request = api.ingest(&client, subscription, "{\"n\":2}".into());
    let server = silence_then_let_go(&pool, &mut lock, &proxy, "%Records many ingested webhooks%", on_the_server);
    let ((status, id), ()) = tokio::join!(request, server);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_bodies WHERE body = convert_to('{\"n\":2}', 'UTF8')").fetch_one(&pool).await.unwrap();
    (status, id, stored == 1, api.logs())
}

/// Once the service's statement like `pattern` waits on the server for the advisory lock
/// 4242 (which `lock` holds), makes the database go silent to the service; 3 s later, past
/// its statement deadline, ends that statement's session or not (`on_the_server`), and
/// lets the lock go.
async fn silence_then_let_go(pool: &sqlx::PgPool, lock: &mut sqlx::pool::PoolConnection<sqlx::Postgres>, proxy: &VanishingProxy, pattern: &str, on_the_server: OnTheServer) {
    wait_for_lock_waiters(pool, pattern, 1).await;
    proxy.vanish();
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let OnTheServer::RollsBack = on_the_server {
        // This database's only: tests on other databases of the cluster run meanwhile.
        let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE query LIKE $1 AND wait_event_type = 'Lock' AND datname = current_database()";
        sqlx::query(terminate).bind(pattern).execute(pool).await.unwrap();
    }
    sqlx::query("SELECT pg_advisory_unlock(4242)").execute(&mut **lock).await.unwrap();
}

/// Guarantee: a webhook the database kept is answered 202, even when the answer to its
/// write was lost; a 503 would have its producer send it again, and its receiver get it
/// twice. The service waits until the write has ended on the server before it looks.
#[tokio::test]
async fn an_ingest_whose_write_committed_after_its_answer_was_lost_is_answered_202() {
    let (status, id, stored, logs) = ingest_whose_answer_is_lost(OnTheServer::CommitsLate).await;
    assert!(stored, "the write committed on the server:\n{logs}");
    assert_eq!(status, 202, "a webhook the database has is accepted:\n{logs}");
    assert!(id.is_some());
    assert!(logs.contains("an ingest batch's write got no answer"), "{logs}");
    assert!(logs.contains("found what an ingest batch without an answer committed"), "{logs}");
}

/// Guarantee: no 202 for a webhook the database does not have.
#[tokio::test]
async fn an_ingest_whose_write_rolled_back_after_its_answer_was_lost_is_answered_503() {
    let (status, _, stored, logs) = ingest_whose_answer_is_lost(OnTheServer::RollsBack).await;
    assert!(!stored, "the write was ended on the server:\n{logs}");
    assert_eq!(status, 503, "{logs}");
    assert!(logs.contains("found what an ingest batch without an answer committed"), "{logs}");
}

/// An event published without an `Idempotency-Key` whose COMMIT is held up on the server
/// (a deferred trigger waits for a lock the test holds) when the database goes silent to
/// the service; 3 s later, past the statement deadline of 2 s, the COMMIT goes on or is
/// ended. Returns the request's status and body, how many deliveries of its event the
/// database has, and the service's logs.
async fn event_whose_commit_answer_is_lost(on_the_server: OnTheServer) -> (u16, serde_json::Value, i64, String) {
    let (database, proxy, api) = api_only_behind_a_vanishing_proxy().await;
    let client = http_client();
    for _ in 0..2 {
        api.create_subscription(&client, "http://127.0.0.1:9/").await;
    }
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION hold_up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER hold_up AFTER INSERT ON events DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_up();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut lock = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)").execute(&mut *lock).await.unwrap();
    let request = async {
        let body = serde_json::json!({ "event_type": "order.created", "payload": { "n": 1 } }).to_string();
        let response = client.post(format!("{}/events", api.base)).bearer_auth(ADMIN_TOKEN).header("content-type", "application/json").body(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap())
    };
    let server = silence_then_let_go(&pool, &mut lock, &proxy, "COMMIT%", on_the_server);
    let ((status, body), ()) = tokio::join!(request, server);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE event_id IS NOT NULL").fetch_one(&pool).await.unwrap();
    (status, body, stored, api.logs())
}

/// Guarantee: an event the database kept is answered 202 with its deliveries, even when
/// the answer to its COMMIT was lost; a 503 would have its producer publish it again, and
/// each subscriber receive it twice under two webhook ids.
#[tokio::test]
async fn an_event_whose_commit_went_through_after_its_answer_was_lost_is_answered_202() {
    let (status, body, stored, logs) = event_whose_commit_answer_is_lost(OnTheServer::CommitsLate).await;
    assert_eq!(stored, 2, "the event committed on the server with a delivery per subscription:\n{logs}");
    assert_eq!(status, 202, "an event the database has is accepted: {body}\n{logs}");
    assert_eq!(body["deliveries"].as_array().map(Vec::len), Some(2), "{body}");
    assert!(logs.contains("an event's commit got no answer"), "{logs}");
    assert!(logs.contains("found the event whose commit got no answer"), "{logs}");
}

/// Guarantee: no 202 for an event the database does not have.
#[tokio::test]
async fn an_event_whose_commit_was_ended_after_its_answer_was_lost_is_answered_503() {
    let (status, body, stored, logs) = event_whose_commit_answer_is_lost(OnTheServer::RollsBack).await;
    assert_eq!(stored, 0, "the transaction was ended on the server:\n{logs}");
    assert_eq!(status, 503, "{body}\n{logs}");
    assert_eq!(body["error"], "database_unavailable", "{body}");
    assert!(logs.contains("is not in the database: not stored"), "{logs}");
}

/// Guarantee: no 202 for what is not durable. A commit waiting for a synchronous standby
/// that is cancelled on the server (an operator ending a stuck session) is visible at once,
/// but a failover could still take it back: the look for a lost answer waits for the flush
/// and the standby too, and without them answers 503.
#[tokio::test]
async fn an_event_whose_commit_was_cancelled_waiting_for_a_standby_is_not_answered_202() {
    let body = serde_json::json!({ "event_type": "order.created", "payload": {} }).to_string();
    let (status, stored, logs) = write_cancelled_waiting_for_a_standby("standby-event", |_| ("/events".into(), body), "COMMIT", "events").await;
    assert_eq!(stored, 1, "the cancelled wait left the event committed locally:\n{logs}");
    assert_eq!(status, 503, "an event no standby confirmed is not answered 202:\n{logs}");
    assert!(logs.contains("an event's commit got no answer"), "{logs}");
}

#[tokio::test]
async fn an_ingest_whose_commit_was_cancelled_waiting_for_a_standby_is_not_answered_202() {
    let (status, stored, logs) =
        write_cancelled_waiting_for_a_standby("standby-ingest", |subscription| (format!("/ingest/{subscription}"), "{}".into()), "%Records many ingested webhooks%", "deliveries").await;
    assert_eq!(stored, 1, "the cancelled wait left the webhook committed locally:\n{logs}");
    assert_eq!(status, 503, "a webhook no standby confirmed is not answered 202:\n{logs}");
    assert!(logs.contains("an ingest batch's write got no answer"), "{logs}");
}

/// Posts what `request` makes of a subscription's id (path and body) to an API-only instance
/// of a cluster whose commits wait for a standby that never comes; once the commit of that
/// write (its statement like `commit`) has waited past the 2 s statement deadline, cancels
/// its wait on the server. Returns the request's status, how many rows `table` has then, and
/// the service's logs.
async fn write_cancelled_waiting_for_a_standby(
    name: &str,
    request: impl FnOnce(Uuid) -> (String, String),
    commit: &str,
    table: &str,
) -> (u16, i64, String) {
    let cluster = own_cluster(name, None);
    webhookd::embedded_postgres::create_database_if_missing(&cluster.url_for("postgres"), "webhookd").await.unwrap();
    let admin = cluster.url_for("postgres");
    let settings = [("WEBHOOKD_WORKER_CONCURRENCY", "0"), ("WEBHOOKD_DB_STATEMENT_DEADLINE", "2s"), ("WEBHOOKD_HTTP_BODY_TIMEOUT", "5s")];
    let api = Service::start(&cluster.database_url(), &settings).await;
    let client = http_client();
    let subscription = api.create_subscription(&client, "http://127.0.0.1:9/").await;
    set_synchronous_standby(&admin, "never").await;

    let (path, body) = request(subscription);
    let sent = client.post(format!("{}{path}", api.base)).bearer_auth(ADMIN_TOKEN).header("content-type", "application/json").body(body).send();
    let sent = tokio::spawn(sent);
    let database = sqlx::PgPool::connect(&cluster.database_url()).await.unwrap();
    let held = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        let waiting = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND wait_event = 'SyncRep'").bind(commit);
        if let Some(pid) = waiting.fetch_optional(&database).await.unwrap() {
            break pid;
        }
        assert!(Instant::now() < held, "the write's commit never waited for the standby:\n{}", api.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Past the commit's deadline (2 s), the service looks, and waits for the write's advisory
    // lock; the wait for the standby is then cancelled, and the write is visible.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&database).await.unwrap();
    let status = sent.await.unwrap().unwrap().status().as_u16();
    let stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&database).await.unwrap();
    set_synchronous_standby(&admin, "").await;
    (status, stored, api.logs())
}

#[tokio::test]
async fn an_api_request_caught_by_a_silent_database_answers_503_at_its_deadline_and_gives_its_connection_and_locks_back() {
    // A pool of two, both taken by requests waiting on a row lock when every connection
    // goes silent: without a deadline they would wait for ever (the proxy never closes
    // them), and so would every later request, for want of a connection. Deadline: body
    // timeout + statement deadline = 3 s.
    let settings = [("WEBHOOKD_DB_STATEMENT_DEADLINE", "2s"), ("WEBHOOKD_HTTP_BODY_TIMEOUT", "1s"), ("WEBHOOKD_DB_POOL_SIZE", "2")];
    let Proxied { database, proxy, worker, client, subscription, .. } = behind_a_vanishing_proxy(&settings).await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE").bind(subscription).execute(&mut *lock).await.unwrap();
    let url = format!("{}/subscriptions/{subscription}", worker.base);
    let patches: Vec<_> = (0..2)
        .map(|n| {
            let body = serde_json::json!({ "name": format!("renamed {n}") }).to_string();
            let request = client.patch(&url).bearer_auth(ADMIN_TOKEN).header("content-type", "application/json").body(body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (status, serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap())
            })
        })
        .collect();
    // The first waits for the row, the second for its turn on the subscription's backlog
    // lock, which the first holds (src/delivery/backlog.rs).
    wait_for_lock_waiters(&pool, "%FOR UPDATE%", 1).await;
    wait_for_lock_waiters(&pool, "%pg_advisory_xact_lock%", 1).await;

    // Their statements' answers will never arrive.
    proxy.vanish();
    lock.commit().await.unwrap();
    for patch in patches {
        let answered = tokio::time::timeout(Duration::from_secs(10), patch).await;
        let (status, body) = answered.unwrap_or_else(|_| panic!("a request caught by the silence never answered:\n{}", worker.logs())).unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "database_unavailable", "{body}");
        assert!(body["message"].as_str().unwrap().contains("may or may not have taken effect"), "{body}");
    }
    // Their connections did not keep their places in the pool: the next request gets one
    // at once (a new connection, through the proxy), not a 503 after the pool's wait.
    let started = Instant::now();
    let read = client.get(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(read.status(), 200, "{}", worker.logs());
    assert!(started.elapsed() < Duration::from_secs(3), "waited {:?} for a connection:\n{}", started.elapsed(), worker.logs());
    assert!(worker.logs().contains("a request got no answer from the database in time"), "{}", worker.logs());
    // On the server, the two requests' sessions are left idle in their transactions, the
    // first holding the subscription's row lock, the second its turn on the backlog lock
    // once the first is gone (the proxy keeps their sockets open, as a vanished client host
    // does). The server ends each once idle in it for 10 s (the statement deadline, at
    // least 10 s), and the row can be changed again.
    let mut direct = pool.acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '60s'").execute(&mut *direct).await.unwrap();
    let started = Instant::now();
    sqlx::query("UPDATE subscriptions SET name = 'after the silence' WHERE id = $1").bind(subscription).execute(&mut *direct).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(40), "the row stayed locked for {:?}", started.elapsed());
}

#[tokio::test]
async fn a_maintenance_pass_caught_by_a_silent_database_gives_up_at_its_deadline_and_frees_its_connections() {
    use webhookd::db::partitions::{self, partition_name};
    let database = fresh_database().await;
    let direct = sqlx::PgPool::connect(&database).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    partitions::ensure_partitions(&direct, now).await.unwrap();
    // A partition past the retention, which the pass will detach on its own connection, and
    // a lock on it that the detach waits for (up to 5 s: set_partition_lock_timeout.sql).
    let old = now.date() - time::Duration::days(10);
    let table = partition_name(old);
    let create = format!("CREATE TABLE {table} PARTITION OF attempts FOR VALUES FROM ('{old} 00:00:00+00') TO ('{} 00:00:00+00')", old.next_day().unwrap());
    sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&direct).await.unwrap();
    let mut lock = direct.begin().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("LOCK TABLE {table} IN SHARE UPDATE EXCLUSIVE MODE"))).execute(&mut *lock).await.unwrap();

    let mut through_proxy = url::Url::parse(&database).unwrap();
    let target = std::net::SocketAddr::new(through_proxy.host_str().unwrap().parse().unwrap(), through_proxy.port().unwrap());
    let proxy = VanishingProxy::start(target).await;
    through_proxy.set_port(Some(proxy.address.port())).unwrap();
    let deadline = Duration::from_secs(1);
    let pool = webhookd::db::connect_lazy(through_proxy.as_str(), 2, deadline).unwrap();
    let pass = tokio::spawn({
        let pool = pool.clone();
        async move {
            let started = Instant::now();
            let result = webhookd::maintenance::run_once(&pool, now, Duration::from_secs(72 * 3600), deadline).await;
            (result, started.elapsed())
        }
    });
    wait_for_lock_waiters(&direct, "ALTER TABLE attempts DETACH%", 1).await;

    // The answer to the pass's statement will never arrive.
    proxy.vanish();
    lock.rollback().await.unwrap();
    let (result, took) = tokio::time::timeout(Duration::from_secs(10), pass).await.expect("the pass waited on a silent database for good").unwrap();
    let error = result.expect_err("the pass cannot have finished");
    assert!(error.to_string().contains("did not answer within"), "{error:#}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    // Neither of its connections kept its place in the pool (of two).
    let started = Instant::now();
    let (first, second) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(3), "waited {:?} for two connections", started.elapsed());
    drop((first, second));
}

#[tokio::test]
async fn an_outcome_batch_written_again_waits_for_its_first_try_still_running_on_the_server() {
    // The recorder gave up waiting for its first try (the statement deadline) while the
    // server was still running it: here, a first try left uncommitted in a transaction.
    let pool = sqlx::PgPool::connect(&fresh_database().await).await.unwrap();
    webhookd::db::partitions::ensure_partitions(&pool, time::OffsetDateTime::now_utc()).await.unwrap();
    let (subscription, delivery, lease) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::new_v4());
    sqlx::query("INSERT INTO subscriptions (id, target_url) VALUES ($1, 'http://127.0.0.1:9/hook')").bind(subscription).execute(&pool).await.unwrap();
    insert_delivering(&pool, subscription, (delivery, lease)).await;
    let now = time::OffsetDateTime::now_utc();
    let batch = 7_i64; // the key every try of the batch shares
    // The service's statements, in the order `deliveries::record_attempts` sends them.
    let write = async move |db: &mut sqlx::PgConnection, tried_before: bool| {
        if tried_before {
            sqlx::query(include_str!("../../sql/deliveries/wait_for_earlier_try.sql")).bind(batch).execute(&mut *db).await.unwrap();
        }
        record_failed_attempt(db, (delivery, lease), subscription, now, tried_before, batch).await;
    };
    let mut still_running = pool.begin().await.unwrap();
    write(&mut still_running, false).await;

    let again = tokio::spawn({
        let pool = pool.clone();
        async move { write(&mut *pool.acquire().await.unwrap(), true).await }
    });
    // The second try waits for the first to end, rather than look for its attempt before
    // it is committed.
    wait_for_lock_waiters(&pool, "%pg_advisory_xact_lock%", 1).await;
    still_running.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), again).await.unwrap().unwrap();
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE delivery_id = $1").bind(delivery).fetch_one(&pool).await.unwrap();
    assert_eq!(logged, 1, "the attempt shows once in the delivery's history");
    let streak: i32 = sqlx::query_scalar("SELECT failed_in_streak FROM subscriptions WHERE id = $1").bind(subscription).fetch_one(&pool).await.unwrap();
    assert_eq!(streak, 1, "and counts once towards disabling its subscription");
}

/// A delivery of `subscription` being attempted (its id and lease), with its body.
async fn insert_delivering(pool: &sqlx::PgPool, subscription: Uuid, (delivery, lease): (Uuid, Uuid)) {
    sqlx::query(
        "WITH body AS (INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, '{}'))
         INSERT INTO deliveries (id, subscription_id, status, attempt_count, next_attempt_at, lease_id)
         VALUES ($1, $2, 'delivering', 1, now() + interval '1 minute', $3)",
    )
    .bind(delivery)
    .bind(subscription)
    .bind(lease)
    .execute(pool)
    .await
    .unwrap();
}

/// The service's outcome statement for a failed first attempt (HTTP 500, a retry due in
/// 10 s) of `delivery` (its id and lease), made at `at`, as a try of outcome batch `batch`;
/// returns the deliveries it updated.
async fn record_failed_attempt(
    db: &mut sqlx::PgConnection,
    (delivery, lease): (Uuid, Uuid),
    subscription: Uuid,
    at: time::OffsetDateTime,
    tried_before: bool,
    batch: i64,
) -> Vec<Option<Uuid>> {
    let error = "receiver answered HTTP 500";
    sqlx::query_scalar(include_str!("../../sql/deliveries/record_attempts.sql"))
        .bind([delivery])
        .bind([lease])
        .bind(["retrying"])
        .bind([at + Duration::from_secs(10)])
        .bind([error])
        .bind([subscription])
        .bind([1])
        .bind(["failed_attempt"])
        .bind([500])
        .bind([error])
        .bind([3])
        .bind([None::<String>])
        .bind(["http://127.0.0.1:9/hook"])
        .bind([at])
        .bind(0.0)
        .bind("webhookd.delivery.failed")
        .bind(tried_before)
        .bind(batch)
        .fetch_all(db)
        .await
        .unwrap()
}

/// A database; an API-only instance connected straight to it, which accepts the webhooks
/// (queued, then a NOTIFY); and a delivering instance with `settings` whose connections
/// all go through a proxy that can make them silent at once. One webhook has been
/// delivered through them.
struct Proxied {
    database: String,
    proxy: VanishingProxy,
    api: Service,
    worker: Service,
    client: reqwest::Client,
    subscription: Uuid,
    receiver: Receiver,
}

async fn behind_a_vanishing_proxy(settings: &[(&str, &str)]) -> Proxied {
    let database = fresh_database().await;
    let mut through_proxy = url::Url::parse(&database).unwrap();
    let target = std::net::SocketAddr::new(through_proxy.host_str().unwrap().parse().unwrap(), through_proxy.port().unwrap());
    let proxy = VanishingProxy::start(target).await;
    through_proxy.set_port(Some(proxy.address.port())).unwrap();
    let receiver = Receiver::answering(200).await;
    let api = Service::start(&database, &[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let worker = Service::start(through_proxy.as_str(), settings).await;
    let client = http_client();
    let subscription = api.create_subscription(&client, &receiver.url).await;
    let (status, first) = api.ingest(&client, subscription, "{\"n\":1}".into()).await;
    assert_eq!(status, 202);
    wait_until_received(&receiver, &[first.unwrap()], Duration::from_secs(10)).await;
    Proxied { database, proxy, api, worker, client, subscription, receiver }
}

#[tokio::test]
async fn an_outcome_batch_written_again_after_its_answer_was_lost_logs_and_counts_each_attempt_once() {
    // The recorder writes a batch of outcomes again when it got no answer to the first
    // write (a dropped connection, the statement deadline), which may have committed.
    let pool = sqlx::PgPool::connect(&fresh_database().await).await.unwrap();
    let subscription = Uuid::now_v7();
    sqlx::query("INSERT INTO subscriptions (id, target_url) VALUES ($1, 'http://127.0.0.1:9/hook')").bind(subscription).execute(&pool).await.unwrap();
    // Two deliveries in flight: the first try of one batch committed, that of the other
    // never reached the database.
    let (committed, never_written) = ((Uuid::now_v7(), Uuid::new_v4()), (Uuid::now_v7(), Uuid::new_v4()));
    for delivery in [committed, never_written] {
        insert_delivering(&pool, subscription, delivery).await;
    }
    webhookd::db::partitions::ensure_partitions(&pool, time::OffsetDateTime::now_utc()).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    // The service's own statement, as it runs it (one batch: key 42).
    let write = async |delivery: (Uuid, Uuid), tried_before: bool| {
        record_failed_attempt(&mut pool.acquire().await.unwrap(), delivery, subscription, now, tried_before, 42).await
    };
    assert_eq!(write(committed, false).await, [Some(committed.0)], "the first write applies the outcome");
    assert!(write(committed, true).await.is_empty(), "the lease was given up by the first write");
    assert_eq!(write(never_written, true).await, [Some(never_written.0)], "a retry of a write that never happened applies it");

    for (delivery, _) in [committed, never_written] {
        let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE delivery_id = $1").bind(delivery).fetch_one(&pool).await.unwrap();
        assert_eq!(logged, 1, "the attempt shows once in the delivery's history");
    }
    let streak: i32 = sqlx::query_scalar("SELECT failed_in_streak FROM subscriptions WHERE id = $1").bind(subscription).fetch_one(&pool).await.unwrap();
    assert_eq!(streak, 2, "and each attempt counts once towards disabling its subscription");
}

/// A panic in a task the instance cannot work without (its outcome recorder, claim loop,
/// ingest writer, ...) must not leave it half alive, answering 202 and /health while it
/// delivers nothing, or sends every webhook again at each lease expiry: it stops as at a
/// SIGTERM and exits 1, naming the task. No input is known to make one of them panic, so
/// the test binary (a debug build) is asked to, through `WEBHOOKD_TEST_PANIC`.
#[tokio::test]
async fn a_panic_in_an_essential_task_stops_the_instance_with_exit_1_naming_it() {
    let database_url = fresh_database().await;
    for task in ["ingest writer", "ingest flusher", "claim loop", "outcome recorder", "change listener", "maintenance"] {
        let environment = [("DATABASE_URL", database_url.as_str()), ("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN), ("WEBHOOKD_TEST_PANIC", task)];
        let exited = tokio::time::timeout(Duration::from_secs(60), crate::helpers::run_to_exit(&environment)).await;
        let (code, stderr) = exited.unwrap_or_else(|_| panic!("still running 60 s after a panic of its {task} task"));
        assert_eq!(code, Some(1), "{task}: {stderr}");
        assert!(stderr.contains(&format!("its {task} task panicked")), "{task}: {stderr}");
    }
}
