use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn a_subscription_can_be_created_read_listed_updated_and_deleted() {
    let app = spawn_app().await;

    let created = app
        .call("POST", "/subscriptions", Some(json!({
            "target_url": "http://127.0.0.1:9/hook", "secret_key": "super-secret-value",
            "event_types": ["order.*"], "name": "orders"
        })))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["has_secret"], true);
    assert_eq!(created.body["is_active"], true);
    assert_eq!(created.body["event_types"], json!(["order.*"]));
    assert!(created.body.get("secret_key").is_none(), "the secret is never returned");

    let read = app.get(&format!("/subscriptions/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);

    let patched = app.call("PATCH", &format!("/subscriptions/{id}"), Some(json!({"name": "renamed"}))).await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["name"], "renamed");
    assert_eq!(patched.body["event_types"], json!(["order.*"]), "PATCH keeps absent fields");
    assert_eq!(patched.body["has_secret"], true);

    let replaced = app
        .call("PUT", &format!("/subscriptions/{id}"), Some(json!({"target_url": "http://127.0.0.1:9/other"})))
        .await;
    assert_eq!(replaced.status, 200);
    assert_eq!(replaced.body["target_url"], "http://127.0.0.1:9/other");
    assert_eq!(replaced.body["name"], serde_json::Value::Null, "PUT resets absent fields");
    assert_eq!(replaced.body["event_types"], json!([]));
    assert_eq!(replaced.body["has_secret"], true, "PUT without secret_key keeps the secret");

    let cleared = app.call("PATCH", &format!("/subscriptions/{id}"), Some(json!({"secret_key": null}))).await;
    assert_eq!(cleared.body["has_secret"], false);

    let deleted = app.call("DELETE", &format!("/subscriptions/{id}/"), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.get(&format!("/subscriptions/{id}")).await.status, 404);
    assert_eq!(app.call("DELETE", &format!("/subscriptions/{id}"), None).await.status, 404);
}

#[tokio::test]
async fn the_list_pages_with_a_cursor_and_accepts_a_trailing_slash() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.create_subscription(&format!("http://127.0.0.1:9/{n}"), json!({})).await.to_string());
    }
    let first = app.get("/subscriptions/?limit=2").await;
    assert_eq!(first.status, 200);
    let page: Vec<_> = first.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(page, ids[..2]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("/subscriptions?limit=10&cursor={cursor}")).await;
    let page: Vec<_> = rest.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(page, ids[2..]);
    assert!(rest.body["next_cursor"].is_null());

    for bad in ["/subscriptions?limit=0", "/subscriptions?limit=101", "/subscriptions?cursor=nope", "/subscriptions?limit=x"] {
        let answer = app.get(bad).await;
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        assert!(answer.body["error"].is_string() && answer.body["message"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn invalid_subscriptions_are_refused_with_a_clear_400() {
    let app = spawn_app().await;
    let cases = [
        (json!({"target_url": "not a url"}), "invalid_target_url"),
        (json!({"target_url": "ftp://example.com/x"}), "invalid_target_url"),
        (json!({"target_url": "/relative"}), "invalid_target_url"),
        (json!({"target_url": "http://127.0.0.1:9/x", "event_types": ["bad type"]}), "invalid_event_types"),
        (json!({"target_url": "http://127.0.0.1:9/x", "event_types": ["*"]}), "invalid_event_types"),
        (json!({"target_url": "http://127.0.0.1:9/x", "secret_key": "short"}), "invalid_secret_key"),
        (json!({"target_url": "http://127.0.0.1:9/x", "name": "n".repeat(201)}), "invalid_name"),
        (json!({"target_url": "http://127.0.0.1:9/x", "rate_limit": 0}), "invalid_rate_limit"),
        (json!({"target_url": "http://127.0.0.1:9/x", "rate_limit": 100_001}), "invalid_rate_limit"),
        (json!({"target_url": "http://127.0.0.1:9/x", "rate_limit": "fast"}), "invalid_body"),
        (json!({"target_url": "http://127.0.0.1:9/x", "unknown": 1}), "invalid_body"),
        (json!({"name": "no target"}), "invalid_body"),
        (json!({"target_url": ["http://127.0.0.1:9/x"]}), "invalid_body"),
        // PostgreSQL's text cannot hold NUL: refused by name, never a 500.
        (json!({"target_url": "http://127.0.0.1:9/a\0b"}), "invalid_target_url"),
        (json!({"target_url": "http://127.0.0.1:9/x", "name": "a\0b"}), "invalid_name"),
        (json!({"target_url": "http://127.0.0.1:9/x", "secret_key": "0123456789abcdef\u{0}0123456789"}), "invalid_secret_key"),
    ];
    for (body, code) in cases {
        let answer = app.call("POST", "/subscriptions", Some(body.clone())).await;
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["error"], code, "{body}: {:?}", answer.body);
        assert!(!answer.body["message"].as_str().unwrap().is_empty());
    }
    let not_json = app
        .http
        .post(app.url("/subscriptions"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let missing = app.call("PATCH", "/subscriptions/0196f3a4-1111-7000-8000-000000000001", Some(json!({}))).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"], "not_found");
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed_naming_the_variable() {
    let app = spawn_app_with(&[("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "false")]).await;
    for target in [
        "http://127.0.0.1:8080/x", "http://10.0.0.8/x", "http://169.254.169.254/latest", "http://[::1]/x", "http://localhost:9/x",
        // Other spellings of loopback and of private addresses, as resolvers read them.
        "http://127.1/x", "http://0177.0.0.1/x", "http://017700000001/x", "http://0x7f.1/x",
        "http://[2002:7f00:1::]/x", "http://[64:ff9b::a9fe:a9fe]/latest", "http://[::ffff:10.0.0.8]/x",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", "http://198.18.0.1/x", "http://[ff02::1]/x",
    ] {
        let answer = app.call("POST", "/subscriptions", Some(json!({"target_url": target}))).await;
        assert_eq!(answer.status, 400, "{target}");
        assert_eq!(answer.body["error"], "target_not_allowed", "{target}");
        assert!(answer.body["message"].as_str().unwrap().contains("WEBHOOKD_ALLOW_PRIVATE_TARGETS"));
    }
    let public = app.call("POST", "/subscriptions", Some(json!({"target_url": "https://93.184.216.34/hook"}))).await;
    assert_eq!(public.status, 201, "{:?}", public.body);
}

#[tokio::test]
async fn a_change_that_leaves_the_target_alone_does_not_check_it_again() {
    let app = spawn_app_with(&[("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let subscription = app.create_subscription("https://93.184.216.34/hook", json!({})).await;
    // The host now leads somewhere private (as DNS can change after the check).
    sqlx::query("UPDATE subscriptions SET target_url = 'http://localhost:9/x' WHERE id = $1").bind(subscription).execute(&app.pool).await.unwrap();
    let path = format!("/subscriptions/{subscription}");
    let paused = app.call("PATCH", &path, Some(json!({"is_active": false, "name": "paused"}))).await;
    assert_eq!(paused.status, 200, "a pause must not fail on the target it does not touch: {:?}", paused.body);
    assert_eq!(paused.body["is_active"], false);
    // A PUT sends the target whole: unchanged, it is not checked either.
    let replaced = app.call("PUT", &path, Some(json!({"target_url": "http://localhost:9/x", "is_active": false}))).await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    // A target the request sets is still checked, by PATCH and by PUT.
    let moved = app.call("PATCH", &path, Some(json!({"target_url": "http://localhost:9/y"}))).await;
    assert_eq!((moved.status, moved.body["error"].as_str()), (400, Some("target_not_allowed")));
    let replaced = app.call("PUT", &path, Some(json!({"target_url": "http://10.0.0.8/x"}))).await;
    assert_eq!((replaced.status, replaced.body["error"].as_str()), (400, Some("target_not_allowed")));
}
