//! Secrets at rest and in the shared cache, against the real binary: encrypted in
//! PostgreSQL (a dump shows none), refused without the right key, re-encrypted after a key
//! rotation; sealed in Redis, where a rewritten entry is not trusted; never in the logs.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{fresh_database, http_client, webhookd_command, Receiver, RedisServer, Service, ADMIN_TOKEN};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxYdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const SECRET: &str = "whsec_c2VjcmV0LW9mLWEtc3Vic2NyaXB0aW9uLTI0Ynl0";

fn standard_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = BASE64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Waits until `receiver` has `count` requests.
async fn received(receiver: &Receiver, count: usize, service: &Service) -> Vec<crate::helpers::Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().len() < count {
        assert!(Instant::now() < deadline, "not delivered; logs:\n{}", service.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.received()
}

/// Asserts the last request `receiver` got is signed with `secret`.
fn signed_with(request: &crate::helpers::Received, secret: &str) {
    let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
    let expected = standard_signature(secret, &header("webhook-id"), &header("webhook-timestamp"), &request.body);
    assert!(header("webhook-signature").split(' ').any(|s| s == expected), "signed with the subscription's secret");
}

async fn create(service: &Service, target: &str, body: Value) -> String {
    let mut fields = json!({ "target_url": target });
    fields.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    let response = http_client()
        .post(format!("{}/subscriptions", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(fields.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn stored_secrets(database_url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let rows: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT secret_key, previous_secret_key FROM subscriptions").fetch_all(&pool).await.unwrap();
    rows.into_iter().flat_map(|(a, b)| [a, b]).flatten().collect()
}

/// Runs `webhookd encrypt-secrets`; returns how many subscriptions it rewrote.
async fn encrypt_secrets(database_url: &str, environment: &[(&str, &str)]) -> usize {
    let (code, stdout, stderr) = run_encrypt_secrets(database_url, environment).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    rewritten_count(&stdout)
}

/// Runs `webhookd encrypt-secrets`: its exit code, stdout and stderr.
async fn run_encrypt_secrets(database_url: &str, environment: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = webhookd_command();
    command.arg("encrypt-secrets").env("DATABASE_URL", database_url);
    for (name, value) in environment {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// The count in encrypt-secrets' first line, "encrypted the secrets of N subscriptions …".
fn rewritten_count(stdout: &str) -> usize {
    stdout.split_whitespace().nth(4).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{stdout}"))
}

/// Starts the binary and expects it to refuse: exit 1 and its one line.
async fn refused_start(database_url: &str, environment: &[(&str, &str)]) -> String {
    let mut variables = vec![("DATABASE_URL", database_url), ("WEBHOOKD_ADMIN_TOKEN", ADMIN_TOKEN)];
    variables.extend_from_slice(environment);
    let (code, stderr) = crate::helpers::run_to_exit(&variables).await;
    assert_eq!(code, Some(1), "{stderr}");
    stderr
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_a_start_without_the_right_key_is_refused() {
    let database_url = fresh_database().await;
    let receiver = Receiver::answering(200).await;

    // A secret stored before encryption was turned on…
    let plain = Service::start(&database_url, &[]).await;
    let early = create(&plain, &receiver.url, json!({"secret_key": SECRET})).await;
    drop(plain);
    assert_eq!(stored_secrets(&database_url).await, [SECRET]);

    // …is still read in plaintext by an instance that has the key, and encrypted by
    // `webhookd encrypt-secrets`; new and rotated ones are stored encrypted.
    let mut service = Service::start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", KEY)]).await;
    assert_eq!(encrypt_secrets(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", KEY)]).await, 1);
    let later = create(&service, &receiver.url, json!({"secret_key": "another-secret-value"})).await;
    let client = http_client();
    let rotated = client
        .post(format!("{}/subscriptions/{later}/rotate-secret", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let rotated: Value = serde_json::from_slice(&rotated.bytes().await.unwrap()).unwrap();
    let new_secret = rotated["secret_key"].as_str().unwrap().to_owned();
    let stored = stored_secrets(&database_url).await;
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|s| s.starts_with("enc:v1:")), "{stored:?}");
    let dump = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump").arg(&database_url).output().unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    for secret in [SECRET, "another-secret-value", new_secret.as_str()] {
        assert!(!dump.contains(secret), "a dump shows no secret");
    }

    // Deliveries are still signed with the plaintext secret, and signed ingest still verifies.
    let (status, _) = service.ingest(&client, early.parse().unwrap(), r#"{"n":1}"#.into()).await;
    assert_eq!(status, 202);
    signed_with(received(&receiver, 1, &service).await.last().unwrap(), SECRET);
    let body = br#"{"n":2}"#;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let signed = client
        .post(format!("{}/ingest/{early}", service.base))
        .header("webhook-id", "msg-1")
        .header("webhook-timestamp", &now)
        .header("webhook-signature", standard_signature(SECRET, "msg-1", &now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 202);
    // Delivered before the stop: a send not started by SIGTERM is given back to the queue,
    // and the instance started and killed below would claim it and hold it for a lease.
    received(&receiver, 2, &service).await;
    assert_eq!(service.terminate(Duration::from_secs(15)).await, Some(0));

    // Without the key, or with another one, the service refuses to start: it would sign with garbage.
    let without = refused_start(&database_url, &[]).await;
    assert!(without.contains("WEBHOOKD_ENCRYPTION_KEY"), "{without}");
    let wrong = refused_start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY)]).await;
    assert!(wrong.contains("WEBHOOKD_ENCRYPTION_KEY"), "{wrong}");

    // Key rotation: instances with the new key and the old one as the previous key read
    // everything; encrypt-secrets then re-encrypts with the new key…
    let rotating_keys = [("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY), ("WEBHOOKD_PREVIOUS_ENCRYPTION_KEY", KEY)];
    let rotating = Service::start(&database_url, &rotating_keys).await;
    drop(rotating);
    assert_eq!(encrypt_secrets(&database_url, &rotating_keys).await, 2);
    let before: Vec<String> = stored.iter().map(|s| s.split(':').nth(2).unwrap().to_owned()).collect();
    let after: Vec<String> = stored_secrets(&database_url).await.iter().map(|s| s.split(':').nth(2).unwrap().to_owned()).collect();
    assert!(after.iter().all(|id| !before.contains(id)), "all under the new key: {before:?} → {after:?}");
    // …after which the new key alone is enough.
    let service = Service::start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY)]).await;
    let (status, _) = service.ingest(&client, early.parse().unwrap(), r#"{"n":3}"#.into()).await;
    assert_eq!(status, 202);
    let requests = received(&receiver, 3, &service).await;
    signed_with(requests.last().unwrap(), SECRET);
}

/// A stored secret that no longer decrypts with its own key (corrupted at rest) cannot
/// sign. Its subscription's deliveries fail unsent, saying why, rather than going back to
/// the queue every few seconds for ever, unsent and unexplained.
#[tokio::test]
async fn a_delivery_whose_secret_is_corrupt_at_rest_fails_unsent_and_says_why() {
    let database_url = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let keyed = [("WEBHOOKD_ENCRYPTION_KEY", KEY)];
    let first = Service::start(&database_url, &keyed).await;
    let subscription: uuid::Uuid = create(&first, &receiver.url, json!({"secret_key": SECRET})).await.parse().unwrap();
    drop(first);
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    corrupt_stored_secret(&pool, &subscription.to_string(), "secret_key").await;
    // A webhook accepted before the damage, waiting in the queue.
    let delivery = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH body AS (INSERT INTO delivery_bodies (delivery_id, body) VALUES ($1, '{}'))
         INSERT INTO deliveries (id, subscription_id, status, next_attempt_at) VALUES ($1, $2, 'queued', now())",
    )
    .bind(delivery)
    .bind(subscription)
    .execute(&pool)
    .await
    .unwrap();

    let service = Service::start(&database_url, &keyed).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, last_error): (String, Option<String>) =
            sqlx::query_as("SELECT status, last_error FROM deliveries WHERE id = $1").bind(delivery).fetch_one(&pool).await.unwrap();
        if status == "failed" {
            assert_eq!(last_error.as_deref(), Some("secret_unreadable"));
            break;
        }
        assert!(Instant::now() < deadline, "still {status}; logs:\n{}", service.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.received().is_empty(), "nothing was signed with a secret that does not decrypt");
    let logs = service.logs();
    assert!(logs.contains("a stored secret does not decrypt"), "the start says so: {logs}");
    assert!(logs.contains("the subscription's stored secret does not decrypt"), "{logs}");
}

#[tokio::test]
async fn a_malformed_encryption_key_exits_2_naming_the_variable() {
    let output = webhookd_command().env("WEBHOOKD_ENCRYPTION_KEY", "c2hvcnQ=").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("WEBHOOKD_ENCRYPTION_KEY"));
}

#[tokio::test]
async fn redis_holds_no_readable_secret_and_a_rewritten_entry_does_not_redirect_deliveries() {
    let redis = RedisServer::start();
    let database_url = fresh_database().await;
    let service = Service::start(&database_url, &[("REDIS_URL", &redis.url), ("WEBHOOKD_SUBSCRIPTION_CACHE_TTL", "1s")]).await;
    let (real, attacker) = (Receiver::answering(200).await, Receiver::answering(200).await);
    let client = http_client();
    let subscription = create(&service, &real.url, json!({"secret_key": SECRET})).await;
    let (status, _) = service.ingest(&client, subscription.parse().unwrap(), "{}".into()).await;
    assert_eq!(status, 202);
    received(&real, 1, &service).await;

    let key = format!("webhookd:subscription:{subscription}");
    let redis_cli = |args: &[&str]| {
        let port = redis.url.rsplit(':').next().unwrap().to_owned();
        let output = std::process::Command::new("redis-cli").args(["-p", &port]).args(args).output().unwrap();
        assert!(output.status.success());
        output.stdout
    };
    let entry = redis_cli(&["--no-raw", "GET", &key]);
    assert!(entry.len() > 40, "the subscription is cached in Redis: {}", String::from_utf8_lossy(&entry));
    let entry = String::from_utf8_lossy(&entry);
    for readable in [SECRET, "secret_key", "target_url", real.url.as_str()] {
        assert!(!entry.contains(readable), "Redis shows {readable}");
    }

    // Someone with access to Redis points the entry at their own server.
    let forged = json!({
        "id": subscription, "name": null, "target_url": attacker.url, "secret_key": "forged-secret-value",
        "event_types": [], "is_active": true, "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
        "deleted_at": null, "previous_secret_key": null, "previous_secret_expires_at": null,
    });
    redis_cli(&["SET", &key, &forged.to_string()]);
    tokio::time::sleep(Duration::from_millis(1200)).await; // the in-process copy expires
    let (status, _) = service.ingest(&client, subscription.parse().unwrap(), "{}".into()).await;
    assert_eq!(status, 202);
    let requests = received(&real, 2, &service).await;
    signed_with(requests.last().unwrap(), SECRET);
    assert!(attacker.received().is_empty(), "the forged entry was not trusted");
}

#[tokio::test]
async fn no_secret_or_admin_token_appears_in_the_logs_even_at_trace() {
    let database_url = fresh_database().await;
    let service = Service::start(&database_url, &[("RUST_LOG", "trace"), ("WEBHOOKD_ENCRYPTION_KEY", KEY)]).await;
    let receiver = Receiver::answering(200).await;
    let client = http_client();
    let subscription = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    let (status, _) = service.ingest(&client, subscription.parse().unwrap(), r#"{"logged":"body"}"#.into()).await;
    assert_eq!(status, 202);
    received(&receiver, 1, &service).await;
    let rotated = client
        .post(format!("{}/subscriptions/{subscription}/rotate-secret", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let rotated: Value = serde_json::from_slice(&rotated.bytes().await.unwrap()).unwrap();
    let new_secret = rotated["secret_key"].as_str().unwrap().to_owned();
    let patched = client
        .patch(format!("{}/subscriptions/{subscription}", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"secret_key": "a-patched-secret-value"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let logs = service.logs();
    assert!(logs.lines().count() > 50, "trace logging is on");
    for secret in [SECRET, new_secret.as_str(), "a-patched-secret-value", ADMIN_TOKEN, KEY] {
        assert!(!logs.contains(secret), "a secret in the logs");
    }
}

#[tokio::test]
async fn an_old_redis_entry_written_back_after_a_change_is_not_trusted() {
    let redis = RedisServer::start();
    let database_url = fresh_database().await;
    let service = Service::start(&database_url, &[("REDIS_URL", &redis.url), ("WEBHOOKD_SUBSCRIPTION_CACHE_TTL", "1s")]).await;
    let (old, new) = (Receiver::answering(200).await, Receiver::answering(200).await);
    let client = http_client();
    let subscription = create(&service, &old.url, json!({})).await;
    let (status, _) = service.ingest(&client, subscription.parse().unwrap(), "{}".into()).await;
    assert_eq!(status, 202);
    received(&old, 1, &service).await;

    // Someone keeps the sealed entry pointing at the old target…
    let mut redis_connection = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = format!("webhookd:subscription:{subscription}");
    let saved: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut redis_connection).await.unwrap();
    assert!(!saved.is_empty());
    // …the subscription moves to a new target…
    let moved = client
        .patch(format!("{}/subscriptions/{subscription}", service.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"target_url": new.url}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    // …and once its time to live has passed, the old entry is written back, with no expiry.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let () = redis::cmd("SET").arg(&key).arg(saved).query_async(&mut redis_connection).await.unwrap();
    let (status, _) = service.ingest(&client, subscription.parse().unwrap(), "{}".into()).await;
    assert_eq!(status, 202);
    received(&new, 1, &service).await;
    assert_eq!(old.received().len(), 1, "the replayed entry was not trusted");
}

/// A subscription whose stored secret is corrupt at rest takes no webhook (nothing sent to
/// it could be signed): the operator is told why and what to do, a producer's signature is
/// refused as any other that cannot be checked, and a rotation is the way out at once, the
/// corrupt secret being of no use for the rotation's overlap.
#[tokio::test]
async fn ingest_to_a_subscription_whose_secret_is_corrupt_says_so_until_a_rotation() {
    let database_url = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let service = Service::start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", KEY)]).await;
    let subscription = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    corrupt_stored_secret(&pool, &subscription, "secret_key").await;
    let client = http_client();

    let (status, body) = admin_ingest(&service, &client, &subscription, r#"{"n":1}"#).await;
    assert_eq!(status, 409, "{body}; logs:\n{}", service.logs());
    assert_eq!(body["error"], "secret_unreadable", "{body}");
    assert!(body["message"].as_str().unwrap().contains("rotate-secret"), "the way out is named: {body}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let signed = client
        .post(format!("{}/ingest/{subscription}", service.base))
        .header("webhook-id", "msg-1")
        .header("webhook-timestamp", &now)
        .header("webhook-signature", standard_signature(SECRET, "msg-1", &now, b"{}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 401, "a signature that cannot be checked is not accepted");
    // A deleted one is not found, as any deleted subscription (no new secret can be set on it).
    let deleted = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    corrupt_stored_secret(&pool, &deleted, "secret_key").await;
    let response = client.delete(format!("{}/subscriptions/{deleted}", service.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(admin_ingest(&service, &client, &deleted, "{}").await.0, 404);

    let rotated = rotate(&service, &client, &subscription).await;
    assert_eq!(rotated["previous_secret_expires_at"], Value::Null, "the corrupt secret is not kept for an overlap: {rotated}");
    let kept: Option<String> = sqlx::query_scalar("SELECT previous_secret_key FROM subscriptions WHERE id = $1::uuid").bind(&subscription).fetch_one(&pool).await.unwrap();
    assert_eq!(kept, None);
    let (status, body) = admin_ingest(&service, &client, &subscription, r#"{"n":2}"#).await;
    assert_eq!(status, 202, "{body}; logs:\n{}", service.logs());
    let delivered = received(&receiver, 1, &service).await;
    signed_with(delivered.last().unwrap(), rotated["secret_key"].as_str().unwrap());
}

/// The secret before a rotation, kept for the overlap, corrupt at rest: set aside, and the
/// subscription goes on with its current secret (it failed whole before, for the overlap).
#[tokio::test]
async fn a_previous_secret_corrupt_at_rest_is_set_aside_and_the_current_one_signs() {
    let database_url = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let service = Service::start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", KEY)]).await;
    let subscription = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    let client = http_client();
    let rotated = rotate(&service, &client, &subscription).await;
    assert_ne!(rotated["previous_secret_expires_at"], Value::Null, "a readable secret is kept for the overlap");
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    corrupt_stored_secret(&pool, &subscription, "previous_secret_key").await;

    let (status, body) = admin_ingest(&service, &client, &subscription, r#"{"n":1}"#).await;
    assert_eq!(status, 202, "{body}; logs:\n{}", service.logs());
    let delivered = received(&receiver, 1, &service).await;
    signed_with(delivered.last().unwrap(), rotated["secret_key"].as_str().unwrap());
    assert!(service.logs().contains("previous secret does not decrypt"), "{}", service.logs());
}

/// Rotates `subscription`'s secret through the API; the answer.
async fn rotate(service: &Service, client: &reqwest::Client, subscription: &str) -> Value {
    let rotated = client.post(format!("{}/subscriptions/{subscription}/rotate-secret", service.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(rotated.status(), 200);
    serde_json::from_slice(&rotated.bytes().await.unwrap()).unwrap()
}

/// Posts `body` to `subscription` with the admin token; the status and the JSON answer.
async fn admin_ingest(service: &Service, client: &reqwest::Client, subscription: &str, body: &'static str) -> (u16, Value) {
    let response = client.post(format!("{}/ingest/{subscription}", service.base)).bearer_auth(ADMIN_TOKEN).body(body).send().await.unwrap();
    (response.status().as_u16(), serde_json::from_slice(&response.bytes().await.unwrap()).unwrap())
}

/// Changes one character of `subscription`'s sealed secret in `column`: its key is known,
/// it fails authentication.
async fn corrupt_stored_secret(pool: &sqlx::PgPool, subscription: &str, column: &str) {
    let corrupt = format!(
        "UPDATE subscriptions SET {column} = overlay({column}
             PLACING CASE WHEN substr({column}, length({column}) - 8, 1) = 'A' THEN 'B' ELSE 'A' END
             FROM length({column}) - 8 FOR 1)
         WHERE id = $1::uuid"
    );
    sqlx::query(sqlx::AssertSqlSafe(corrupt))
    .bind(subscription)
    .execute(pool)
    .await
    .unwrap();
}

/// A key rotation that meets secrets corrupt at rest: `encrypt-secrets` still seals every
/// other one with the new key, drops a previous secret that decrypts no more, and names the
/// subscription whose current secret is corrupt, exiting 1 (the old key is still needed).
/// Once that subscription has a new secret, a second run succeeds and the new key alone starts.
#[tokio::test]
async fn a_key_rotation_seals_every_readable_secret_and_names_the_corrupt_ones() {
    let database_url = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let service = Service::start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", KEY)]).await;
    let client = http_client();
    let readable = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    let corrupt = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    let overlapping = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    rotate(&service, &client, &overlapping).await;
    let deleted = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    let response = client.delete(format!("{}/subscriptions/{deleted}", service.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 204);
    drop(service);
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    corrupt_stored_secret(&pool, &corrupt, "secret_key").await;
    corrupt_stored_secret(&pool, &overlapping, "previous_secret_key").await;
    corrupt_stored_secret(&pool, &deleted, "secret_key").await;
    let key_ids = async |id: &str| -> (Option<String>, Option<String>, bool) {
        let (current, previous, expires): (Option<String>, Option<String>, Option<time::OffsetDateTime>) = sqlx::query_as(
            "SELECT secret_key, previous_secret_key, previous_secret_expires_at FROM subscriptions WHERE id = $1::uuid",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        let key_id = |value: Option<String>| value.map(|v| v.split(':').nth(2).unwrap().to_owned());
        (key_id(current), key_id(previous), expires.is_some())
    };
    let old_key = key_ids(&readable).await.0.unwrap();

    let rotating_keys = [("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY), ("WEBHOOKD_PREVIOUS_ENCRYPTION_KEY", KEY)];
    let (code, stdout, stderr) = run_encrypt_secrets(&database_url, &rotating_keys).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(rewritten_count(&stdout), 3, "{stdout}");
    assert!(stdout.contains(&format!("subscription {overlapping}: its previous secret did not decrypt and was dropped")), "{stdout}");
    // A deleted subscription signs nothing, and no new secret can be set on it: not named as
    // one to mend, its corrupt secret dropped.
    assert!(stdout.contains(&format!("subscription {deleted} (deleted): its secret did not decrypt and was dropped")), "{stdout}");
    let error = stderr.lines().find(|line| line.starts_with("webhookd: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(!error.contains(&deleted), "{error}");
    assert_eq!(key_ids(&deleted).await, (None, None, false));
    assert!(error.contains(&corrupt) && error.contains("rotate-secret"), "names the subscription and the way out: {error}");
    let new_key = key_ids(&readable).await.0.unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(key_ids(&overlapping).await, (Some(new_key.clone()), None, false), "sealed anew, the corrupt previous secret and its overlap gone");
    assert_eq!(key_ids(&corrupt).await, (Some(old_key.clone()), None, false), "left as it was");

    // The way out named: a new secret, then the run again, then the old key can go.
    let service = Service::start(&database_url, &rotating_keys).await;
    rotate(&service, &client, &corrupt).await;
    drop(service);
    assert_eq!(encrypt_secrets(&database_url, &rotating_keys).await, 0, "the new secret is sealed with the new key already");
    let service = Service::start(&database_url, &[("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY)]).await;
    let (status, body) = admin_ingest(&service, &client, &overlapping, r#"{"n":1}"#).await;
    assert_eq!(status, 202, "{body}; logs:\n{}", service.logs());
}

/// A key rotation beside the shared Redis cache: an entry cached after the keys were swapped
/// holds the secret as it was stored then, sealed with the old key. Once the old key is
/// dropped, that entry does not open, and the subscription is read from the database (sealed
/// anew by `encrypt-secrets`) instead: the old key can go at once, without waiting for the
/// entries to expire (an ingest to it answered 500 for a cache lifetime).
#[tokio::test]
async fn after_a_key_rotation_the_old_key_can_go_at_once_beside_the_shared_cache() {
    let redis = RedisServer::start();
    let database_url = fresh_database().await;
    let receiver = Receiver::answering(200).await;
    let client = http_client();
    let with = |keys: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        [&[("REDIS_URL", redis.url.as_str()), ("WEBHOOKD_SUBSCRIPTION_CACHE_TTL", "3600s")][..], keys].concat()
    };
    let service = Service::start(&database_url, &with(&[("WEBHOOKD_ENCRYPTION_KEY", KEY)])).await;
    let subscription = create(&service, &receiver.url, json!({"secret_key": SECRET})).await;
    drop(service);

    // Steps (1) and (2): the instance opens values sealed with either key; a webhook puts
    // the subscription in Redis, its secret still sealed with the old key.
    let rotating_keys = [("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY), ("WEBHOOKD_PREVIOUS_ENCRYPTION_KEY", KEY)];
    let service = Service::start(&database_url, &with(&rotating_keys)).await;
    let (status, body) = admin_ingest(&service, &client, &subscription, r#"{"n":1}"#).await;
    assert_eq!(status, 202, "{body}");
    received(&receiver, 1, &service).await;
    drop(service);
    let mut redis_connection = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = format!("webhookd:subscription:{subscription}");
    let cached = async |connection: &mut redis::aio::MultiplexedConnection| -> Vec<u8> {
        redis::cmd("GET").arg(&key).query_async(connection).await.unwrap()
    };
    let before_rotation = cached(&mut redis_connection).await;
    assert!(!before_rotation.is_empty(), "the subscription is in the shared cache");

    // Step (3), then step (4) at once: the new key alone, the entry still there for an hour.
    assert_eq!(encrypt_secrets(&database_url, &with(&rotating_keys)).await, 1);
    assert_eq!(cached(&mut redis_connection).await, before_rotation);
    let service = Service::start(&database_url, &with(&[("WEBHOOKD_ENCRYPTION_KEY", OTHER_KEY)])).await;
    let (status, body) = admin_ingest(&service, &client, &subscription, r#"{"n":2}"#).await;
    assert_eq!(status, 202, "{body}; logs:\n{}", service.logs());
    let requests = received(&receiver, 2, &service).await;
    signed_with(requests.last().unwrap(), SECRET);
    let replaced = cached(&mut redis_connection).await;
    assert!(!replaced.is_empty() && replaced != before_rotation, "the entry now holds the row as sealed anew");
}
