//! The operator dashboard and the subscriber portal, driven in real headless Chromium
//! (one browser for the whole binary, taken in turn): login and logout, the create form,
//! a failed delivery and Retry, portal link scope, expiry and revocation, cross-site posts,
//! and hostile text everywhere it is shown.

use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, EndpointExt, Response, Route, Server};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::*;

/// Text that runs script wherever it is not escaped.
const HOSTILE: &str = r#""><img src=x onerror="window.xssFired=1"><script>window.xssFired=2</script>"#;

/// A real HTTP server on another port of 127.0.0.1 (another origin, the same site): serves
/// `page` at `/` and answers every POST 500 with `HOSTILE` in its body.
struct OtherSite {
    url: String,
    _stop: CancellationToken,
}

impl OtherSite {
    async fn start(page: String) -> Self {
        #[handler]
        fn answer_hostile() -> Response {
            Response::builder().status(poem::http::StatusCode::INTERNAL_SERVER_ERROR).body(HOSTILE)
        }
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().map(SocketAddr::port).unwrap();
        let stop = CancellationToken::new();
        let page = poem::endpoint::make_sync(move |_| Response::builder().content_type("text/html").body(page.clone()));
        let app = Route::new().at("/", poem::get(page)).at("/hook", poem::post(answer_hostile)).boxed();
        let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(app, stop.clone().cancelled_owned(), Some(Duration::ZERO));
        tokio::spawn(server);
        Self { url: format!("http://127.0.0.1:{port}"), _stop: stop }
    }
}

/// A form POST outside the browser, with `headers`.
async fn post_form(app: &TestApp, url: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut request = app.http.post(url).header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.to_owned()).send().await.unwrap()
}

/// Logs in with the admin token outside the browser; expects the redirect that sets the cookie.
async fn log_in(client: &reqwest::Client, app: &TestApp) -> reqwest::Response {
    let login = client
        .post(app.url("/ui/login"))
        .header("origin", &app.address)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    login
}

/// The session cookie the browser holds for the app, as a `Cookie` header.
async fn session_cookie(browser: &Browser) -> String {
    let cookie = browser.cookie("webhookd_session").await.expect("the browser has a session cookie");
    format!("webhookd_session={}", cookie["value"].as_str().unwrap())
}

#[tokio::test]
async fn an_operator_logs_in_with_the_admin_token_and_out_again() {
    let app = spawn_app().await;
    let browser = browser().await;

    // The root redirects to the dashboard, which asks for the token.
    browser.goto(&app.url("/")).await;
    browser.clear_cookies().await;
    browser.goto(&app.url("/")).await;
    assert!(browser.current_url().await.ends_with("/ui"), "{}", browser.current_url().await);
    assert_eq!(browser.count("input[name=token]").await, 1);

    // A wrong token: an error, and no cookie.
    browser.fill("input[name=token]", "not-the-admin-token-at-all").await;
    browser.click_button("Log in").await;
    assert!(browser.text().await.contains("That token is not the admin token"));
    assert!(browser.cookie("webhookd_session").await.is_none());

    // The right one: the overview, with "Log out".
    browser.fill("input[name=token]", ADMIN_TOKEN).await;
    browser.click_button("Log in").await;
    let text = browser.text().await;
    assert!(text.contains("Overview") && text.contains("Deliveries per minute"), "{text}");
    let cookie = browser.cookie("webhookd_session").await.unwrap();
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    assert_eq!(cookie["path"], "/ui");
    let expires_in = cookie["expiry"].as_i64().unwrap() - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((43_000..=43_200).contains(&expires_in), "{expires_in}");
    let copied = session_cookie(&browser).await;

    // Every page has "Log out"; after it, the old cookie opens nothing either.
    browser.goto(&app.url("/ui/deliveries")).await;
    browser.click_button("Log out").await;
    assert_eq!(browser.count("input[name=token]").await, 1);
    assert!(browser.cookie("webhookd_session").await.is_none());
    let replayed = app.http.get(app.url("/ui")).header("cookie", copied).send().await.unwrap().text().await.unwrap();
    assert!(replayed.contains("name=\"token\"") && !replayed.contains("Deliveries per minute"));
}

#[tokio::test]
async fn a_subscription_created_through_the_form_is_stored_and_found_by_name() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let browser = browser().await;
    browser.log_in(&app.address, ADMIN_TOKEN).await;

    browser.goto(&app.url("/ui/subscriptions")).await;
    browser.fill("#target_url", &receiver.url).await;
    browser.fill("#name", "Orders to ACME").await;
    browser.fill("#event_types", "order.created, invoice.*").await;
    browser.fill("#secret_key", "a-long-enough-secret").await;
    browser.click_button("Create subscription").await;

    assert!(browser.text().await.contains("Subscription created."));
    let id = browser.current_url().await.split('/').next_back().unwrap().split('?').next().unwrap().to_owned();
    let stored = app.get(&format!("/subscriptions/{id}")).await;
    assert_eq!(stored.status, 200);
    assert_eq!(stored.body["name"], "Orders to ACME");
    assert_eq!(stored.body["event_types"], json!(["order.created", "invoice.*"]));
    assert_eq!(stored.body["has_secret"], true);

    // Found by a word prefix, in the API and in the list; others are not.
    app.create_subscription(&receiver.url, json!({ "name": "Billing" })).await;
    let found = app.get("/subscriptions?q=acm").await;
    let names: Vec<&Value> = found.body["items"].as_array().unwrap().iter().map(|s| &s["name"]).collect();
    assert_eq!(names, [&json!("Orders to ACME")]);
    browser.goto(&app.url("/ui/subscriptions?q=orders&state=active")).await;
    let text = browser.text().await;
    assert!(text.contains("Orders to ACME") && !text.contains("Billing"), "{text}");

    // A refused form shows why, and keeps what was typed.
    browser.fill("#target_url", "ftp://example.com/").await;
    browser.fill("#name", "Kept name").await;
    browser.click_button("Create subscription").await;
    assert!(browser.text().await.to_lowercase().contains("target"));
    assert_eq!(browser.eval("return document.querySelector('#name').value").await, "Kept name");
}

#[tokio::test]
async fn a_failed_delivery_shows_every_attempt_and_retry_delivers_it() {
    let app = spawn_app().await;
    let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(500), Reply::Status(500)], Reply::Status(200)).await;
    let subscription = app.create_subscription(&receiver.url, json!({ "name": "Shop" })).await;
    let delivery = app.ingest(subscription, r#"{"order": 42, "items": ["book"]}"#).await;
    let failed = app.wait_until_finished(delivery, Duration::from_secs(10)).await;
    assert_eq!(failed["status"], "failed");
    if std::env::var_os("WEBHOOKD_SCREENSHOTS").is_some() {
        // An hour of traffic for the README's picture of the overview.
        sqlx::query(
            "INSERT INTO deliveries (id, subscription_id, status, attempt_count, created_at, completed_at)
             SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g * 10 + h), 12, '0'))::uuid, $1, CASE WHEN g % 13 = 0 OR g BETWEEN 95 AND 105 THEN 'failed' ELSE 'succeeded' END, 1,
                    now() - g * interval '10 seconds', now() - g * interval '10 seconds'
             FROM generate_series(1, 355) AS g, generate_series(1, 2 + (g * 7 / 11) % 6) AS h",
        )
        .bind(subscription)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let browser = browser().await;
    browser.log_in(&app.address, ADMIN_TOKEN).await;

    browser.goto(&app.url("/ui/deliveries?status=failed")).await;
    browser.click(&format!("a[href='/ui/deliveries/{delivery}']")).await;
    let text = browser.text().await;
    assert!(text.contains("\"order\": 42"), "the payload is pretty-printed: {text}");
    assert!(text.contains(&format!("webhook-id: {delivery}")));
    assert_eq!(browser.count("table.attempts tbody tr").await, 3);
    assert!(text.contains("answer 500"), "each attempt's response excerpt: {text}");
    save_screenshots(&browser, &app, "delivery").await;

    browser.click_button("Retry").await;
    assert!(browser.text().await.contains("Delivery re-queued"));
    let retried = app.wait_until_finished(delivery, Duration::from_secs(10)).await;
    assert_eq!(retried["status"], "succeeded");
    browser.goto(&app.url(&format!("/ui/deliveries/{delivery}"))).await;
    assert_eq!(browser.count("table.attempts tbody tr").await, 4);
    assert_eq!(browser.count("form[action$='/retry'] button").await, 1, "a succeeded delivery can be sent again");

    browser.goto(&app.url("/ui")).await;
    assert!(browser.text().await.contains("Success rate"));
    save_screenshots(&browser, &app, "overview").await;
}

/// With `WEBHOOKD_SCREENSHOTS=<dir>`, saves the current page at desktop and phone widths
/// (how the README's pictures are made).
async fn save_screenshots(browser: &Browser, _app: &TestApp, name: &str) {
    if let Some(dir) = std::env::var_os("WEBHOOKD_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        browser.screenshot(&dir.join(format!("{name}.png")), 1000, 900).await;
        browser.screenshot(&dir.join(format!("{name}-phone.png")), 390, 844).await;
    }
}

#[tokio::test]
async fn a_portal_link_opens_its_subscription_only_until_revoked_or_expired() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let mine = app.create_subscription(&receiver.url, json!({ "name": "Mine" })).await;
    let other = app.create_subscription(&receiver.url, json!({ "name": "Someone else" })).await;
    let my_delivery = app.ingest(mine, r#"{"n": 1}"#).await;
    let other_delivery = app.ingest(other, r#"{"n": 2}"#).await;
    app.wait_until_finished(other_delivery, Duration::from_secs(10)).await;

    let issued = app.call("POST", &format!("/subscriptions/{mine}/portal-link"), Some(json!({ "expires_in": "1h" }))).await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    let link = issued.body["url"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&app.url("/portal/")), "{link}");
    assert!(issued.body["expires_at"].is_string());
    let browser = browser().await;
    browser.goto(&app.url("/ui")).await;
    browser.clear_cookies().await;

    // Its own subscription and deliveries.
    browser.goto(&link).await;
    let text = browser.text().await;
    assert!(text.contains("Mine") && !text.contains("Someone else"), "{text}");
    browser.goto(&format!("{link}/deliveries/{my_delivery}")).await;
    assert!(browser.text().await.contains("\"n\": 1"));
    // Nothing else: another subscription's delivery, the dashboard, the admin API.
    browser.goto(&format!("{link}/deliveries/{other_delivery}")).await;
    assert!(browser.text().await.contains("There is no delivery with this id for this subscription"));
    browser.goto(&app.url("/ui")).await;
    assert_eq!(browser.count("input[name=token]").await, 1, "the dashboard asks for the admin token");
    let token = link.rsplit('/').next().unwrap();
    let api = app.http.get(app.url("/subscriptions")).bearer_auth(token).send().await.unwrap();
    assert_eq!(api.status(), 401);

    // What it may do: send a test event, change the target URL (checked), rotate the secret.
    browser.goto(&link).await;
    browser.click_button("Send test event").await;
    assert!(browser.text().await.contains("Test event queued"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !receiver.received().iter().any(|r| r.headers.get("x-webhook-event").is_some_and(|v| v == "webhookd.test")) {
        assert!(std::time::Instant::now() < deadline, "the test event did not arrive");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // (A public address: the portal keeps to the public-address rule even here, where the
    // operator allows private targets.)
    let moved = "https://93.184.216.34/hooks";
    browser.fill("#target_url", moved).await;
    browser.click_button("Change target URL").await;
    assert!(browser.text().await.contains("Target URL changed"));
    assert_eq!(app.get(&format!("/subscriptions/{mine}")).await.body["target_url"], moved);
    browser.fill("#target_url", "ftp://example.com/hook").await;
    browser.click_button("Change target URL").await;
    assert!(browser.text().await.contains("That did not work"));
    browser.goto(&link).await;
    browser.click_button("Rotate secret").await;
    assert!(browser.eval("return document.querySelector('input.copy').value").await.as_str().unwrap().starts_with("whsec_"));

    // Revoked: every link issued so far stops working; a new one works.
    let revoked = app.call("DELETE", &format!("/subscriptions/{mine}/portal-links"), None).await;
    assert_eq!(revoked.status, 204);
    browser.goto(&link).await;
    assert!(browser.text().await.contains("revoked"));
    let fresh = app.call("POST", &format!("/subscriptions/{mine}/portal-link"), Some(json!({ "expires_in": "1s" }))).await;
    let fresh = fresh.body["url"].as_str().unwrap().to_owned();
    browser.goto(&fresh).await;
    assert!(browser.text().await.contains("Mine"));
    // Expired.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser.goto(&fresh).await;
    assert!(browser.text().await.contains("expired"));
    let status = app.http.get(&fresh).send().await.unwrap().status();
    assert_eq!(status, 403);

    let bad = app.call("POST", &format!("/subscriptions/{mine}/portal-link"), Some(json!({ "expires_in": "90d" }))).await;
    assert_eq!(bad.status, 400);
    let missing = app.call("POST", &format!("/subscriptions/{}/portal-link", Uuid::now_v7()), Some(json!({}))).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_cross_site_post_with_the_session_cookie_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({ "name": "Target" })).await;
    // Another port of 127.0.0.1 is the same site: the browser sends the SameSite=Strict
    // cookie with this form, so only the origin check stands in the way.
    let attacker = OtherSite::start(format!(
        r#"<!doctype html><form method="post" action="{}"><input type="hidden" name="confirm" value="yes"><button>Win a prize</button></form>"#,
        app.url(&format!("/ui/subscriptions/{subscription}/delete"))
    ))
    .await;
    let browser = browser().await;
    browser.log_in(&app.address, ADMIN_TOKEN).await;
    let cookie = session_cookie(&browser).await;

    browser.goto(&attacker.url).await;
    browser.click_button("Win a prize").await;
    assert!(browser.text().await.contains("cross-site request refused"), "{}", browser.text().await);
    assert_eq!(app.get(&format!("/subscriptions/{subscription}")).await.status, 200, "still there");

    // The same request outside a browser: 403, still nothing changed.
    let delete = app.url(&format!("/ui/subscriptions/{subscription}/delete"));
    let forged = post_form(&app, &delete, &[("cookie", &cookie), ("origin", &attacker.url)], "confirm=yes").await;
    assert_eq!(forged.status(), 403);
    let pause = app.url(&format!("/ui/subscriptions/{subscription}/pause"));
    let no_origin = post_form(&app, &pause, &[("cookie", &cookie)], "").await;
    assert_eq!(no_origin.status(), 403);
    let stored = app.get(&format!("/subscriptions/{subscription}")).await;
    assert_eq!((stored.status, &stored.body["is_active"]), (200, &json!(true)));

    // From the dashboard itself the same delete works.
    browser.goto(&app.url(&format!("/ui/subscriptions/{subscription}"))).await;
    browser.tick("input[name=confirm]").await;
    browser.click_button("Delete subscription").await;
    assert!(browser.text().await.contains("Subscription deleted."));
    assert_eq!(app.get(&format!("/subscriptions/{subscription}")).await.status, 404);
}

#[tokio::test]
async fn hostile_text_is_shown_as_text_on_every_page() {
    let app = spawn_app().await;
    let hostile_site = OtherSite::start(String::new()).await;
    let subscription = app.create_subscription(&format!("{}/hook", hostile_site.url), json!({ "name": HOSTILE })).await;
    let payload = json!({ "comment": HOSTILE, "nested": { HOSTILE: [HOSTILE] } }).to_string();
    let delivery = app.ingest(subscription, &payload).await;
    app.wait_until_finished(delivery, Duration::from_secs(10)).await;
    // Event types and errors are checked or written by webhookd, but older rows or a
    // future bug must not matter: put hostile text in them directly.
    sqlx::query("UPDATE deliveries SET event_type = $1, last_error = $1 WHERE id = $2").bind(HOSTILE).bind(delivery).execute(&app.pool).await.unwrap();
    sqlx::query("UPDATE attempts SET error = $1 WHERE delivery_id = $2").bind(HOSTILE).bind(delivery).execute(&app.pool).await.unwrap();
    let link = app.call("POST", &format!("/subscriptions/{subscription}/portal-link"), Some(json!({}))).await.body["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let browser = browser().await;
    browser.log_in(&app.address, ADMIN_TOKEN).await;

    let pages = [
        app.url("/ui"),
        app.url("/ui/subscriptions"),
        app.url(&format!("/ui/subscriptions/{subscription}")),
        app.url("/ui/deliveries"),
        app.url(&format!("/ui/deliveries/{delivery}")),
        link.clone(),
        format!("{link}/deliveries/{delivery}"),
    ];
    for page in pages {
        browser.goto(&page).await;
        assert_eq!(browser.eval("return window.xssFired === undefined").await, true, "script ran on {page}");
        assert_eq!(browser.count("img").await, 0, "an <img> was injected on {page}");
        assert_eq!(browser.count("script").await, 0, "a <script> was injected on {page}");
        assert!(browser.text().await.contains("<script>window.xssFired=2</script>"), "the text is shown as text on {page}");
    }
    // Where every field appears at once, each is there as text.
    browser.goto(&app.url(&format!("/ui/deliveries/{delivery}"))).await;
    let text = browser.text().await;
    assert!(text.matches("onerror").count() >= 4, "payload, event type, error, excerpt: {text}");

    // An error message that quotes what was typed.
    browser.goto(&app.url("/ui/subscriptions")).await;
    browser.fill("#target_url", &format!("{}/hook", hostile_site.url)).await;
    browser.fill("#event_types", &format!("a{HOSTILE}")).await;
    browser.click_button("Create subscription").await;
    let text = browser.text().await;
    assert!(text.contains("event type") && text.contains("<img"), "{text}");
    assert_eq!(browser.eval("return window.xssFired === undefined").await, true);
    assert_eq!(browser.count("img").await, 0);
}

#[tokio::test]
async fn the_root_redirects_to_the_dashboard_which_asks_for_the_token() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let root = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/ui");
    for path in ["/ui", "/ui/", "/ui/deliveries?status=failed"] {
        let page = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
        assert_eq!(page.headers()["cache-control"], "no-store");
        let text = page.text().await.unwrap();
        assert!(text.contains(r#"name="token""#), "{path}: {text}");
    }
    // After logging in, the page asked for opens (and only a dashboard page).
    let page = client.get(app.url("/ui/deliveries?status=failed")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"name="next" value="/ui/deliveries?status=failed""#), "{page}");
    let login = post_form(&app, &app.url("/ui/login"), &[("origin", &app.address)], &format!("token={ADMIN_TOKEN}&next=%2F%2Fevil.example")).await;
    assert_eq!(login.url().path(), "/ui", "redirected to the dashboard, not elsewhere");
    // The stylesheet is cached for good under its hashed name; other names are not served.
    let login = client.get(app.url("/ui")).send().await.unwrap().text().await.unwrap();
    let css = login.split("href=\"").find(|s| s.starts_with("/ui/static/")).unwrap().split('"').next().unwrap().to_owned();
    let sheet = client.get(app.url(&css)).send().await.unwrap();
    assert_eq!(sheet.status(), 200);
    assert!(sheet.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(client.get(app.url("/ui/static/app-00000000.css")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_portal_cannot_point_its_subscription_at_a_private_address() {
    // Even where the operator allows private targets for their own receivers (as the tests do).
    let app = spawn_app().await;
    let subscription = app.create_subscription("https://93.184.216.34/hook", json!({})).await;
    let link = app.call("POST", &format!("/subscriptions/{subscription}/portal-link"), Some(json!({}))).await.body["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = "target_url=http%3A%2F%2F169.254.169.254%2Flatest";
    let answer = post_form(&app, &format!("{link}/target-url"), &[("origin", &app.address)], body).await;
    assert_eq!(answer.status(), 400);
    assert_eq!(app.get(&format!("/subscriptions/{subscription}")).await.body["target_url"], "https://93.184.216.34/hook");
}

#[tokio::test]
async fn a_portal_retries_failed_deliveries_only_and_sends_one_test_event_at_a_time() {
    let app = spawn_app().await;
    let receiver = crate::helpers::Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, json!({})).await;
    let delivered = app.ingest(subscription, "{}").await;
    app.wait_until_finished(delivered, Duration::from_secs(15)).await;
    let link = app.call("POST", &format!("/subscriptions/{subscription}/portal-link"), Some(json!({}))).await.body["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = post_form(&app, &format!("{link}/deliveries/{delivered}/retry"), &[("origin", &app.address)], "").await;
    assert_eq!(answer.status(), 409);
    assert_eq!(app.get(&format!("/deliveries/{delivered}")).await.body["attempt_count"], 1, "not sent again");

    // Test events: one at a time (a link holder could otherwise queue them without end).
    let first = post_form(&app, &format!("{link}/test-event"), &[("origin", &app.address)], "").await;
    assert_eq!(first.status(), 200, "sent, then shown the portal");
    let second = post_form(&app, &format!("{link}/test-event"), &[("origin", &app.address)], "").await;
    assert_eq!(second.status(), 409);
}

#[tokio::test]
async fn replacing_the_admin_token_ends_every_dashboard_session() {
    let database_url = crate::helpers::fresh_database().await;
    let app = crate::helpers::spawn_app_on(&database_url, &[]).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = log_in(&client, &app).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let overview = |app: &TestApp| client.get(app.url("/ui")).header("cookie", cookie.clone()).send();
    assert!(overview(&app).await.unwrap().text().await.unwrap().contains("Log out"), "logged in");
    app.stop().await;

    let replaced = crate::helpers::spawn_app_on(&database_url, &[("WEBHOOKD_ADMIN_TOKEN", "a-new-admin-token-0123456789")]).await;
    let page = overview(&replaced).await.unwrap().text().await.unwrap();
    assert!(!page.contains("Log out") && page.contains(r#"name="token""#), "the old session is over: {page}");
}

#[tokio::test]
async fn replacing_the_admin_token_revokes_every_portal_link() {
    let database_url = crate::helpers::fresh_database().await;
    let app = crate::helpers::spawn_app_on(&database_url, &[]).await;
    let subscription = app.create_subscription("http://127.0.0.1:9/x", json!({})).await;
    let issued = app.call("POST", &format!("/subscriptions/{subscription}/portal-link"), Some(json!({ "expires_in": "30d" }))).await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    let link = issued.body["url"].as_str().unwrap().to_owned();
    let opened = app.http.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), 200, "the link opens while the token is the same");
    let first_address = app.address.clone();
    app.stop().await;
    // Restarted with the same token (and so the same key and fingerprint): it still opens.
    let restarted = crate::helpers::spawn_app_on(&database_url, &[]).await;
    let link = link.replace(&first_address, &restarted.address);
    assert_eq!(restarted.http.get(&link).send().await.unwrap().status(), 200, "a restart alone revokes nothing");
    let old_address = restarted.address.clone();
    restarted.stop().await;

    let replaced = crate::helpers::spawn_app_on(&database_url, &[("WEBHOOKD_ADMIN_TOKEN", "a-new-admin-token-0123456789")]).await;
    let link = link.replace(&old_address, &replaced.address);
    assert_eq!(replaced.http.get(&link).send().await.unwrap().status(), 403, "a link made with the old token is refused");
}

#[tokio::test]
async fn a_nul_character_in_a_filter_is_a_400_not_a_500() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = log_in(&client, &app).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = client.get(app.url("/ui/deliveries?event_type=%00")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains("NUL"), "the page says what was wrong");
}

#[tokio::test]
async fn the_delivery_list_filtered_on_a_waiting_status_pages_through_the_queue() {
    let app = spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let receiver = Receiver::answering(200).await;
    let paused = app.create_subscription(&receiver.url, json!({})).await;
    let older = app.ingest(paused, "{}").await;
    assert_eq!(app.call("PATCH", &format!("/subscriptions/{paused}"), Some(json!({ "is_active": false }))).await.status, 200);
    let active = app.create_subscription(&receiver.url, json!({})).await;
    let newer = app.ingest(active, "{}").await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = log_in(&client, &app).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = |query: String| {
        let request = client.get(app.url(&format!("/ui/deliveries?{query}"))).header("cookie", cookie.clone());
        async move { request.send().await.unwrap().text().await.unwrap() }
    };

    let queued = page("status=queued".into()).await;
    assert!(queued.contains(&newer.to_string()) && queued.contains(&older.to_string()), "due and parked alike: {queued}");
    let after_newer = page(format!("status=queued&before={newer}")).await;
    assert!(!after_newer.contains(&newer.to_string()) && after_newer.contains(&older.to_string()), "{after_newer}");
    let of_paused = page(format!("status=queued&subscription_id={paused}")).await;
    assert!(!of_paused.contains(&newer.to_string()) && of_paused.contains(&older.to_string()), "{of_paused}");
    let retrying = page("status=retrying".into()).await;
    assert!(!retrying.contains(&newer.to_string()) && !retrying.contains(&older.to_string()), "{retrying}");
}

/// A filter no index serves (an event type over every subscription) looks at a window of
/// recent deliveries per page, and says how to search further back, instead of reading the
/// whole history for one page.
#[tokio::test]
async fn a_rare_event_type_is_searched_a_window_at_a_time() {
    let app = spawn_app_with(&[("WEBHOOKD_WORKER_CONCURRENCY", "0")]).await;
    let subscription = uuid::Uuid::now_v7();
    // One old `rare.event`, then more than a window of other deliveries after it.
    sqlx::query(
        "INSERT INTO deliveries (id, subscription_id, event_type, status, attempt_count, created_at, completed_at)
         SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, $1,
                CASE WHEN n = 1 THEN 'rare.event' ELSE 'order.paid' END, 'succeeded', 1, now(), now()
         FROM generate_series(1, $2) AS n",
    )
    .bind(subscription)
    .bind(webhookd::db::deliveries::SEARCH_WINDOW + 10)
    .execute(&app.pool)
    .await
    .unwrap();
    let rare = "00000000-0000-7000-8000-000000000001";
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = log_in(&client, &app).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = |path: String| {
        let request = client.get(app.url(&path)).header("cookie", cookie.clone());
        async move { request.send().await.unwrap().text().await.unwrap() }
    };

    let first = page("/ui/deliveries?event_type=rare.event".into()).await;
    assert!(!first.contains(rare), "the first window holds only the newest deliveries");
    assert!(first.contains("No more matches among the 100000 deliveries searched"), "{first}");
    let further = first.split("href=\"").find(|s| s.starts_with("/ui/deliveries?event_type=rare.event&amp;before=")).expect("a link to search on");
    let further = further.split('"').next().unwrap().replace("&amp;", "&");
    let second = page(further).await;
    assert!(second.contains(rare), "the next window finds it: {second}");
    assert!(!second.contains("No more matches"), "the history ends within this window: {second}");
    // With a subscription the list follows its index: no window.
    let of_subscription = page(format!("/ui/deliveries?event_type=rare.event&subscription_id={subscription}")).await;
    assert!(of_subscription.contains(rare));
}

#[tokio::test]
async fn a_dashboard_edit_that_keeps_the_target_does_not_check_it_again() {
    let app = spawn_app_with(&[("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let subscription = app.create_subscription("https://93.184.216.34/hook", json!({})).await;
    // The host now leads somewhere private (as DNS can change after the check).
    sqlx::query("UPDATE subscriptions SET target_url = 'http://localhost:9/x' WHERE id = $1").bind(subscription).execute(&app.pool).await.unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = log_in(&client, &app).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let edit = app.url(&format!("/ui/subscriptions/{subscription}/edit"));
    let headers = [("cookie", cookie.as_str()), ("origin", app.address.as_str())];
    let renamed = post_form(&app, &edit, &headers, "name=renamed&target_url=http%3A%2F%2Flocalhost%3A9%2Fx&event_types=").await;
    assert!(renamed.text().await.unwrap().contains("Changes saved."), "the edit went through");
    assert_eq!(app.get(&format!("/subscriptions/{subscription}")).await.body["name"], "renamed");
    let moved = post_form(&app, &edit, &headers, "name=renamed&target_url=http%3A%2F%2F10.0.0.8%2Fx&event_types=").await;
    assert_eq!(moved.status(), 400, "a new target is still checked");
}

#[tokio::test]
async fn the_name_search_is_served_by_its_index() {
    let app = spawn_app().await;
    let mut connection = app.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off").execute(&mut *connection).await.unwrap();
    let query = include_str!("../../sql/subscriptions/search_subscriptions.sql").replace("$1", "'acme:*'").replace("$2::text", "NULL::text")
        .replace("$2", "NULL").replace("$3::uuid", "NULL::uuid").replace("$3", "NULL").replace("$4", "51");
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {query}"))).fetch_all(&mut *connection).await.unwrap();
    assert!(plan.iter().any(|line| line.contains("subscriptions_name_search_idx")), "{plan:#?}");
}

#[tokio::test]
async fn the_session_cookie_is_secure_when_configured() {
    let app = spawn_app_with(&[("WEBHOOKD_UI_SECURE_COOKIES", "true")]).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = log_in(&client, &app).await;
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; HttpOnly; SameSite=Strict; Secure"), "{cookie}");
}
