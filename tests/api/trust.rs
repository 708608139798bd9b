//! Who may ingest, and how receivers verify us. Signatures are computed here with an
//! implementation written for the tests, not the service's own signing functions.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{read_answer, spawn_app, spawn_app_with, standard_webhooks_verifies, Receiver, TestApp, ADMIN_TOKEN};

const LIMIT: Duration = Duration::from_secs(15);

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn github_header(secret: &str, body: &[u8]) -> String {
    let hex: String = hmac_sha256(secret.as_bytes(), body).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What a Standard Webhooks receiver library does: key from whsec_, sign id.timestamp.body.
fn standard_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded).unwrap(),
        None => secret.as_bytes().to_vec(),
    };
    let message = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    format!("v1,{}", BASE64.encode(hmac_sha256(&key, &message)))
}

async fn post_signed(app: &TestApp, subscription: uuid::Uuid, body: &[u8], signature: Option<&str>) -> crate::helpers::Answer {
    let mut request = app.http.post(app.url(&format!("/ingest/{subscription}"))).body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    read_answer(request.send().await.unwrap()).await
}

/// `post_signed` with a GitHub-style signature and one more header.
async fn post_with(app: &TestApp, subscription: uuid::Uuid, body: &[u8], signature: &str, header: (&str, &str)) -> crate::helpers::Answer {
    let request = app.http.post(app.url(&format!("/ingest/{subscription}"))).header("X-Hub-Signature-256", signature).header(header.0, header.1);
    read_answer(request.body(body.to_vec()).send().await.unwrap()).await
}

async fn count_deliveries(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&app.pool).await.unwrap()
}

#[tokio::test]
async fn a_correct_body_signature_stands_in_for_the_admin_token() {
    let app = spawn_app().await;
    let secret = "producer-shared-secret";
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"secret_key": secret})).await;
    let body = br#"{"compact":true}"#;

    let signed = post_signed(&app, subscription, body, Some(&github_header(secret, body))).await;
    assert_eq!(signed.status, 202, "{:?}", signed.body);
    let upper = github_header(secret, body).replace("sha256=", "").to_uppercase();
    assert_eq!(post_signed(&app, subscription, body, Some(&format!("sha256={upper}"))).await.status, 202);

    for (signature, label) in [
        (None, "missing"),
        (Some(github_header("wrong-secret", body)), "wrong key"),
        (Some(github_header(secret, b"{\"compact\": true}")), "another body"),
        (Some("sha256=nothex".to_owned()), "garbage"),
    ] {
        let answer = post_signed(&app, subscription, body, signature.as_deref()).await;
        assert_eq!(answer.status, 401, "{label}");
        assert_eq!(answer.body["error"], "unauthorized", "{label}");
    }
    assert_eq!(count_deliveries(&app).await, 2, "refused requests create nothing");
    // The admin token is accepted as well.
    assert_eq!(app.ingest_bytes(subscription, body.to_vec(), None).await.status, 202);
}

#[tokio::test]
async fn without_a_secret_a_signature_is_not_enough() {
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let answer = post_signed(&app, subscription, b"{}", Some(&github_header("anything", b"{}"))).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["error"], "unauthorized");
    // Unknown ids look the same as unauthorised ones without the token.
    let unknown = post_signed(&app, uuid::Uuid::now_v7(), b"{}", None).await;
    assert_eq!(unknown.status, 401);
}

#[tokio::test]
async fn the_signature_generator_output_is_accepted_as_is() {
    let app = spawn_app().await;
    let secret = "generator-secret-1";
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"secret_key": secret})).await;
    for payload in [json!({"b": 1, "a": [true, null]}), json!("{ \"spaced\" : 1 }")] {
        let generated = app
            .call("POST", "/tools/signature-generator", Some(json!({"payload": payload, "secret_key": secret})))
            .await;
        assert_eq!(generated.status, 200, "{:?}", generated.body);
        assert_eq!(generated.body["header_name"], "X-Hub-Signature-256");
        let body = generated.body["body"].as_str().unwrap();
        if let Value::String(text) = &payload {
            assert_eq!(body, text, "a string payload is signed exactly as given");
        }
        assert_eq!(generated.body["header_value"], github_header(secret, body.as_bytes()));
        let header = generated.body["header_value"].as_str().unwrap();
        assert_eq!(post_signed(&app, subscription, body.as_bytes(), Some(header)).await.status, 202);
    }
}

#[tokio::test]
async fn deliveries_carry_signatures_receivers_can_verify() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let whsec = format!("whsec_{}", BASE64.encode(b"0123456789abcdef0123456789abcdef"));
    for (secret, github) in [(whsec.as_str(), false), ("plain-text-secret", true)] {
        let subscription =
            app.create_subscription(&receiver.url, json!({"secret_key": secret, "github_signature": github})).await;
        let body = b"{ \"amount\": 10.50 }".to_vec();
        let id = app.ingest_bytes(subscription, body.clone(), None).await.body["delivery_id"].as_str().unwrap().to_owned();
        app.wait_until_finished(id.parse().unwrap(), LIMIT).await;

        let request = receiver.received().into_iter().last().unwrap();
        let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
        assert_eq!(header("webhook-id"), id);
        let expected = standard_signature(secret, &id, &header("webhook-timestamp"), &body);
        assert_eq!(header("webhook-signature"), expected, "secret {secret}");
        if github {
            assert_eq!(header("x-hub-signature-256"), github_header(secret, &body));
        } else {
            assert!(request.headers.get("x-hub-signature-256").is_none(), "GitHub's header only when opted in");
        }
    }
    // A subscription without a secret gets no signature headers.
    let unsigned = app.create_subscription(&receiver.url, json!({})).await;
    let id = app.ingest(unsigned, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    assert!(request.headers.get("webhook-signature").is_none());
    assert!(request.headers.get("x-hub-signature-256").is_none());
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_verify() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let old = "the-old-secret-value";
    let subscription = app.create_subscription(&receiver.url, json!({"secret_key": old})).await;

    let rotated = app.call("POST", &format!("/subscriptions/{subscription}/rotate-secret"), None).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let new = rotated.body["secret_key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_"));
    assert!(BASE64.decode(&new["whsec_".len()..]).unwrap().len() >= 24);
    assert!(rotated.body["previous_secret_expires_at"].is_string());
    let shown = app.get(&format!("/subscriptions/{subscription}")).await;
    assert!(!shown.body.to_string().contains(&new), "the new secret is returned only once");

    let body = b"{\"n\":1}";
    let id = app.ingest_bytes(subscription, body.to_vec(), None).await.body["delivery_id"].as_str().unwrap().to_owned();
    app.wait_until_finished(id.parse().unwrap(), LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    let timestamp = request.headers["webhook-timestamp"].to_str().unwrap().to_owned();
    let signatures: Vec<String> = request.headers["webhook-signature"].to_str().unwrap().split(' ').map(str::to_owned).collect();
    assert_eq!(signatures, [standard_signature(&new, &id, &timestamp, body), standard_signature(old, &id, &timestamp, body)]);

    for secret in [old, new.as_str()] {
        assert_eq!(post_signed(&app, subscription, body, Some(&github_header(secret, body))).await.status, 202, "{secret}");
    }
}

#[tokio::test]
async fn after_the_overlap_only_the_new_secret_counts() {
    let app = spawn_app_with(&[("WEBHOOKD_SECRET_ROTATION_OVERLAP", "1s")]).await;
    let receiver = Receiver::answering(200).await;
    let old = "the-old-secret-value";
    let subscription = app.create_subscription(&receiver.url, json!({"secret_key": old})).await;
    let new = app.call("POST", &format!("/subscriptions/{subscription}/rotate-secret"), None).await.body["secret_key"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let body = b"{}";
    assert_eq!(post_signed(&app, subscription, body, Some(&github_header(old, body))).await.status, 401);
    assert_eq!(post_signed(&app, subscription, body, Some(&github_header(&new, body))).await.status, 202);
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    assert_eq!(request.headers["webhook-signature"].to_str().unwrap().split(' ').count(), 1);
}

#[tokio::test]
async fn rotating_creates_a_secret_where_there_was_none() {
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let rotated = app.call("POST", &format!("/subscriptions/{subscription}/rotate-secret"), None).await;
    assert!(rotated.body["previous_secret_expires_at"].is_null());
    assert_eq!(app.get(&format!("/subscriptions/{subscription}")).await.body["has_secret"], true);
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(app.call("POST", &format!("/subscriptions/{unknown}/rotate-secret"), None).await.status, 404);
}

#[tokio::test]
async fn a_target_that_now_resolves_to_a_private_address_is_blocked_at_connect_time() {
    let app = spawn_app_with(&[("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "false"), ("WEBHOOKD_RETRY_SCHEDULE", "50ms,50ms")])
    .await;
    let receiver = Receiver::answering(200).await;
    // As if the names resolved to public addresses when the subscriptions were written
    // (DNS rebinding): store them directly, past the API's check.
    let mut deliveries = Vec::new();
    for target in [receiver.url.replace("127.0.0.1", "localhost"), receiver.url.clone()] {
        let id = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO subscriptions (id, target_url) VALUES ($1, $2)").bind(id).bind(&target).execute(&app.pool).await.unwrap();
        deliveries.push(app.ingest(id, "{}").await);
    }
    for id in deliveries {
        let delivery = app.wait_until_finished(id, LIMIT).await;
        assert_eq!(delivery["status"], "failed");
        assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1, "blocked attempts are not retried");
        assert_eq!(delivery["attempts"][0]["outcome"], "failure");
        assert_eq!(delivery["attempts"][0]["error"], "blocked_address");
    }
    assert!(receiver.received().is_empty(), "nothing reached the private address");
}

#[tokio::test]
async fn overlong_uris_and_bad_idempotency_keys_are_client_errors() {
    let app = spawn_app().await;
    let long = format!("/subscriptions?cursor={}", "a".repeat(9000));
    let answer = app.get(&long).await;
    assert_eq!(answer.status, 414);
    assert_eq!(answer.body["error"], "uri_too_long");

    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let response = app
        .http
        .post(app.url(&format!("/ingest/{subscription}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", "k".repeat(300))
        .body("{}")
        .send()
        .await
        .unwrap();
    let answer = read_answer(response).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "invalid_idempotency_key");
}

#[tokio::test]
async fn the_official_standard_webhooks_library_accepts_our_signatures() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let old = format!("whsec_{}", BASE64.encode(b"an-old-secret-of-24-bytes!"));
    let subscription = app.create_subscription(&receiver.url, json!({"secret_key": old})).await;
    let id = app.ingest(subscription, r#"{"event": "signed"}"#).await;
    app.wait_until_finished(id, LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    standard_webhooks_verifies(&old, &request).expect("the library verifies our signature");
    let forged = format!("whsec_{}", BASE64.encode(b"somebody-else's-secret-xx"));
    assert!(standard_webhooks_verifies(&forged, &request).is_err(), "and refuses another secret");

    // During a rotation overlap, receivers holding either secret can verify.
    let new = app.call("POST", &format!("/subscriptions/{subscription}/rotate-secret"), None).await.body["secret_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = app.ingest(subscription, "[1, 2, 3]").await;
    app.wait_until_finished(id, LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    standard_webhooks_verifies(&new, &request).expect("new secret verifies");
    standard_webhooks_verifies(&old, &request).expect("old secret verifies during the overlap");
}

#[tokio::test]
async fn setting_a_secret_revokes_every_earlier_one_at_once_even_during_a_rotation_overlap() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let first = "the-first-secret-value";
    let subscription = app.create_subscription(&receiver.url, json!({"secret_key": first})).await;
    let rotated = app.call("POST", &format!("/subscriptions/{subscription}/rotate-secret"), None).await;
    let second = rotated.body["secret_key"].as_str().unwrap().to_owned();

    // PATCH with a new secret: neither the rotated one nor the one before it counts any more.
    let third = "the-third-secret-value";
    let patched = app.call("PATCH", &format!("/subscriptions/{subscription}"), Some(json!({"secret_key": third}))).await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    let body = b"{\"after\":\"patch\"}";
    for revoked in [first, second.as_str()] {
        assert_eq!(post_signed(&app, subscription, body, Some(&github_header(revoked, body))).await.status, 401, "{revoked}");
    }
    assert_eq!(post_signed(&app, subscription, body, Some(&github_header(third, body))).await.status, 202);
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    let signatures = request.headers["webhook-signature"].to_str().unwrap().to_owned();
    assert_eq!(signatures.split(' ').count(), 1, "exactly one signature: {signatures}");

    // PUT with a null secret after another rotation: no secret at all, no signature at all.
    app.call("POST", &format!("/subscriptions/{subscription}/rotate-secret"), None).await;
    let replaced = app
        .call("PUT", &format!("/subscriptions/{subscription}"), Some(json!({"target_url": receiver.url, "secret_key": null})))
        .await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    assert_eq!(post_signed(&app, subscription, body, Some(&github_header(third, body))).await.status, 401);
    let id = app.ingest(subscription, "{}").await;
    app.wait_until_finished(id, LIMIT).await;
    let request = receiver.received().into_iter().last().unwrap();
    assert!(request.headers.get("webhook-signature").is_none(), "no secret, no signature");
}

/// POSTs to ingest with Standard Webhooks headers (no admin token).
async fn post_standard(app: &TestApp, subscription: &str, id: &str, timestamp: i64, body: &[u8], signature: &str) -> crate::helpers::Answer {
    let request = app
        .http
        .post(app.url(&format!("/ingest/{subscription}")))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec());
    read_answer(request.send().await.unwrap()).await
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn standard_webhooks_signed_ingest_is_accepted_once_per_message_id_and_only_when_fresh() {
    let app = spawn_app().await;
    let secret = format!("whsec_{}", BASE64.encode(b"producer-secret-of-32-bytes-long"));
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"secret_key": secret})).await.to_string();
    let body = br#"{"order":42}"#;
    let sign = |id: &str, at: i64| standard_signature(&secret, id, &at.to_string(), body);

    let first = post_standard(&app, &subscription, "msg_1", now(), body, &sign("msg_1", now())).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    // The same message again (a producer's retry, or a replay): the first answer, nothing new.
    let again = post_standard(&app, &subscription, "msg_1", now(), body, &sign("msg_1", now())).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["delivery_id"], first.body["delivery_id"]);
    assert_eq!(count_deliveries(&app).await, 1);
    // Several signatures in the header: one valid is enough.
    let several = format!("v1,AAAA {}", sign("msg_2", now()));
    assert_eq!(post_standard(&app, &subscription, "msg_2", now(), body, &several).await.status, 202);

    let stale = now() - 301;
    let refused = [
        post_standard(&app, &subscription, "msg_3", stale, body, &sign("msg_3", stale)).await,
        post_standard(&app, &subscription, "msg_4", now() + 301, body, &sign("msg_4", now() + 301)).await,
        post_standard(&app, &subscription, "msg_5", now(), body, &sign("msg_6", now())).await,
        post_standard(&app, &subscription, "msg_7", now(), b"{}", &sign("msg_7", now())).await,
    ];
    for answer in refused {
        assert_eq!(answer.status, 401, "{:?}", answer.body);
    }
    assert_eq!(count_deliveries(&app).await, 2, "refused requests create nothing");
}

#[tokio::test]
async fn a_delivery_posted_back_to_ingest_creates_nothing() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let secret = format!("whsec_{}", BASE64.encode(b"a-secret-the-receiver-also-has!!"));
    let subscription = app.create_subscription(&receiver.url, json!({"secret_key": secret})).await;
    let id = app.ingest(subscription, r#"{"pay":100}"#).await;
    app.wait_until_finished(id, LIMIT).await;
    let delivered = receiver.received().into_iter().last().unwrap();
    assert!(delivered.headers.get("x-hub-signature-256").is_none(), "no replayable GitHub header by default");

    // The receiver (or anyone who saw the request) posts it back with all its headers.
    let mut replay = app.http.post(app.url(&format!("/ingest/{subscription}"))).body(delivered.body.clone());
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "x-webhook-event"] {
        if let Some(value) = delivered.headers.get(name) {
            replay = replay.header(name, value.to_str().unwrap());
        }
    }
    let answer = read_answer(replay.send().await.unwrap()).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["delivery_id"], id.to_string(), "answers with the delivery it already is");
    assert_eq!(count_deliveries(&app).await, 1, "and creates nothing");
}

#[tokio::test]
async fn strangers_get_the_same_401_whatever_the_id_and_without_a_read_per_request() {
    let app = spawn_app().await;
    let with_secret = app.create_subscription("http://127.0.0.1:9/x", json!({"secret_key": "a-secret-value"})).await;
    let without_secret = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let unknown = uuid::Uuid::now_v7();
    let body = b"{}";
    let wrong_hub = github_header("not-the-secret", body);
    let wrong_standard = standard_signature("not-the-secret", "m", &now().to_string(), body);
    let answers = [
        post_signed(&app, unknown, body, None).await,
        post_signed(&app, with_secret, body, None).await,
        post_signed(&app, without_secret, body, None).await,
        post_signed(&app, unknown, body, Some(&wrong_hub)).await,
        post_signed(&app, with_secret, body, Some(&wrong_hub)).await,
        post_signed(&app, without_secret, body, Some(&github_header("anything", body))).await,
        post_standard(&app, &unknown.to_string(), "m", now(), body, &wrong_standard).await,
        post_standard(&app, &with_secret.to_string(), "m", now(), body, &wrong_standard).await,
        post_standard(&app, "not-a-uuid", "m", now(), body, &wrong_standard).await,
        read_answer(app.http.post(app.url("/ingest/not-a-uuid")).body("{}").send().await.unwrap()).await,
        // Whatever else is wrong with a request, a wrong signature is what it is told.
        post_with(&app, with_secret, body, &wrong_hub, ("X-Webhook-Event", "not a valid type!")).await,
        post_with(&app, with_secret, body, &wrong_hub, ("Idempotency-Key", &"k".repeat(300))).await,
    ];
    for answer in &answers {
        assert_eq!((answer.status, &answer.body), (answers[0].status, &answers[0].body));
    }
    assert_eq!(answers[0].status, 401);

    // Made-up ids are remembered as absent: probing costs no database read per request.
    let before = crate::helpers::subscription_reads(&app.pool).await;
    for _ in 0..20 {
        assert_eq!(post_signed(&app, unknown, body, Some(&wrong_hub)).await.status, 401);
    }
    assert_eq!(crate::helpers::subscription_reads(&app.pool).await, before, "no read for an id known to be absent");
}

#[tokio::test]
async fn an_anonymous_ingest_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"secret_key": "a-secret-value"})).await;
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    // Announces a megabyte and sends none of it: only an answer that does not wait for the
    // body can come back (the body timeout is 30 s).
    let head = format!("POST /ingest/{subscription} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer)).await.expect("answered at once").unwrap();
    assert_eq!(&answer, b"HTTP/1.1 401");
}

#[tokio::test]
async fn a_replayed_standard_webhooks_request_creates_nothing_whatever_idempotency_key_it_adds() {
    let app = spawn_app().await;
    let secret = format!("whsec_{}", BASE64.encode(b"producer-secret-of-32-bytes-long"));
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({"secret_key": secret})).await;
    let body = br#"{"order":7}"#;
    let at = now();
    let signature = standard_signature(&secret, "msg_9", &at.to_string(), body);
    let mut first = None;
    for key in [None, Some("attacker-key-1"), Some("attacker-key-2")] {
        let mut request = app
            .http
            .post(app.url(&format!("/ingest/{subscription}")))
            .header("webhook-id", "msg_9")
            .header("webhook-timestamp", at.to_string())
            .header("webhook-signature", &signature)
            .body(body.to_vec());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let answer = read_answer(request.send().await.unwrap()).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        let id = answer.body["delivery_id"].clone();
        assert_eq!(*first.get_or_insert(id.clone()), id, "the first delivery, again");
    }
    assert_eq!(count_deliveries(&app).await, 1);
    let empty_id = app
        .http
        .post(app.url(&format!("/ingest/{subscription}")))
        .header("webhook-id", "")
        .header("webhook-timestamp", at.to_string())
        .header("webhook-signature", standard_signature(&secret, "", &at.to_string(), body))
        .body(body.to_vec());
    assert_eq!(read_answer(empty_id.send().await.unwrap()).await.status, 401);
}
