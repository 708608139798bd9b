//! The HTTP server facing the internet: slow clients are cut off without costing anyone
//! else, connections beyond the cap wait instead of being refused, and a burst of 1,024
//! producers is served and delivered in full.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, wait_all_finished, Receiver, Service};

/// Reads until the server closes the connection; returns what it sent and how long that took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, started.elapsed()),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

fn host_port(address: &str) -> String {
    address.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn clients_trickling_headers_do_not_delay_anyone_else_and_are_closed_after_the_header_timeout() {
    webhookd::http_server::raise_open_files_limit();
    let app = spawn_app_with(&[("WEBHOOKD_HTTP_HEADER_TIMEOUT", "2s")]).await;
    let target = host_port(&app.address);

    // 500 clients each send their request line a byte at a time, never finishing it.
    let mut slow = Vec::new();
    for _ in 0..500 {
        let target = target.clone();
        slow.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&target).await.unwrap();
            let opened = Instant::now();
            let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            let mut buffer = [0u8; 64];
            for byte in request.iter().chain(std::iter::repeat(&b'a')) {
                if stream.write_all(&[*byte]).await.is_err() {
                    break; // closed by the server
                }
                match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => panic!("a request without complete headers was answered"),
                    Err(_) => {}
                }
                assert!(opened.elapsed() < Duration::from_secs(15), "a trickling client was never cut off");
            }
            opened.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile everyone else is served at once.
    for _ in 0..5 {
        let asked = Instant::now();
        let answer = app.http.get(app.url("/health")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(asked.elapsed() < Duration::from_secs(1), "/health took {:?} beside the slow clients", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for client in slow {
        let lasted = client.await.unwrap();
        assert!(lasted >= Duration::from_millis(1500), "closed before the header timeout: {lasted:?}");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(&[("WEBHOOKD_HTTP_HEADER_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(host_port(&app.address)).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (_, idle) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(idle >= Duration::from_millis(800), "closed after {idle:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let app = spawn_app_with(&[("WEBHOOKD_HTTP_BODY_TIMEOUT", "1s")]).await;
    let receiver = Receiver::answering(200).await;
    let subscription = app.create_subscription(&receiver.url, serde_json::json!({})).await;
    let mut stream = TcpStream::connect(host_port(&app.address)).await.unwrap();
    let head = format!(
        "POST /ingest/{subscription} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"partial\":",
        crate::helpers::ADMIN_TOKEN
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"request_timeout""#), "{answer}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0, "nothing stored from a body that never arrived");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_are_served_when_one_closes() {
    let app = spawn_app_with(&[("WEBHOOKD_MAX_CONNECTIONS", "2")]).await;
    let target = host_port(&app.address);
    let holders = [TcpStream::connect(&target).await.unwrap(), TcpStream::connect(&target).await.unwrap()];
    // Both places taken: a third client is accepted by the kernel but not yet served.
    let mut third = TcpStream::connect(&target).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 12];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buffer)).await;
    assert!(early.is_err(), "served beyond the cap");
    drop(holders);
    let (answer, _) = read_until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn a_burst_of_1024_concurrent_ingests_all_get_202_and_are_all_delivered() {
    webhookd::http_server::raise_open_files_limit();
    let database_url = crate::helpers::fresh_database().await;
    let service = Service::start(&database_url, &[("WEBHOOKD_LOG_FORMAT", "json"), ("RUST_LOG", "warn")]).await;
    let receiver = Receiver::answering(200).await;
    // One connection per producer, all opened at the same moment.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let subscription = service.create_subscription(&client, &receiver.url).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(1024));
    let mut producers = Vec::new();
    for n in 0..1024 {
        let (client, base, start) = (client.clone(), service.base.clone(), start.clone());
        producers.push(tokio::spawn(async move {
            start.wait().await;
            crate::helpers::ingest_once(&client, &base, subscription, format!(r#"{{"n":{n}}}"#)).await
        }));
    }
    let mut accepted = 0;
    for producer in producers {
        let (status, id) = producer.await.unwrap();
        assert_eq!(status, 202, "every producer gets its 202; logs:\n{}", service.logs());
        assert!(id.is_some());
        accepted += 1;
    }
    assert_eq!(accepted, 1024);
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    wait_all_finished(&pool, Duration::from_secs(60)).await;
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'succeeded'").fetch_one(&pool).await.unwrap();
    assert_eq!(delivered, 1024);
    let mut bodies: Vec<Vec<u8>> = receiver.received().into_iter().map(|r| r.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 1024, "each webhook reached the receiver");
}

#[tokio::test]
async fn oversized_api_bodies_are_refused_with_413_while_being_read() {
    let app = spawn_app_with(&[("WEBHOOKD_MAX_PAYLOAD", "1KiB")]).await;
    let post = |path: &str| app.http.post(app.url(path)).bearer_auth(crate::helpers::ADMIN_TOKEN).header("content-type", "application/json");

    // 20 MiB declared up front: refused on its Content-Length, not parsed as a bad name.
    let huge = format!(r#"{{"target_url":"http://127.0.0.1:9/x","name":"{}"}}"#, "n".repeat(20 * 1024 * 1024));
    let answer = crate::helpers::read_answer(post("/subscriptions").body(huge).send().await.unwrap()).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (413, Some("payload_too_large")), "{:?}", answer.body);

    // The same without a Content-Length (chunked): refused once 64 KiB have arrived.
    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 16 * 1024])));
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let answer = crate::helpers::read_answer(post("/subscriptions").body(streamed).send().await.unwrap()).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (413, Some("payload_too_large")), "{:?}", answer.body);
    let answer = crate::helpers::read_answer(post("/tools/signature-generator").body(vec![b' '; 100 * 1024]).send().await.unwrap()).await;
    assert_eq!(answer.status, 413);

    // Event payloads are held to WEBHOOKD_MAX_PAYLOAD (1 KiB here).
    let too_big = serde_json::json!({"event_type": "order.created", "payload": {"blob": "x".repeat(2048)}});
    let answer = crate::helpers::read_answer(post("/events").body(too_big.to_string()).send().await.unwrap()).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (413, Some("payload_too_large")), "{:?}", answer.body);
    let fits = serde_json::json!({"event_type": "order.created", "payload": {"blob": "x".repeat(512)}});
    let answer = crate::helpers::read_answer(post("/events").body(fits.to_string()).send().await.unwrap()).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM subscriptions").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_answers_is_disconnected() {
    let app = spawn_app_with(&[("WEBHOOKD_HTTP_BODY_TIMEOUT", "1s")]).await;
    let mut stream = TcpStream::connect(host_port(&app.address)).await.unwrap();
    // Far more answers than the socket buffers hold, and none of them read.
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(300);
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::time::timeout(Duration::from_secs(5), writer.write_all(&request)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Reading now drains what was buffered, then finds the connection closed.
    let started = Instant::now();
    let mut total = 0usize;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the connection stayed open after {:?} ({total} bytes read)", started.elapsed()),
        }
    }
    let document = app.http.get(app.url("/openapi.json")).send().await.unwrap().bytes().await.unwrap().len();
    assert!(total < document * 300, "the server gave up before sending every answer ({total} bytes)");
}
