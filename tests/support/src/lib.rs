//! The parts of a test harness that the integration tests (`tests/api`) and the benchmark
//! (`bench/`) share: a free port, waiting for a service to be healthy, and creating a
//! subscription through the API. Everything here talks HTTP to a running webhookd, so this
//! crate does not depend on webhookd itself.

use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"));
    listener.local_addr().map(|address| address.port()).unwrap_or_else(|error| panic!("no local address: {error}"))
}

/// Why a service did not become healthy.
#[derive(Debug)]
pub enum NotHealthy {
    /// `still_running` said the process is gone.
    Exited(String),
    /// `/health` did not answer 200 within the limit.
    TimedOut(Duration),
}

impl std::fmt::Display for NotHealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(how) => write!(f, "webhookd exited early ({how})"),
            Self::TimedOut(limit) => write!(f, "webhookd not healthy in {limit:?}"),
        }
    }
}

impl std::error::Error for NotHealthy {}

/// Polls `{base}/health` every 25 ms until it answers 200, for at most `limit`.
/// `still_running` is asked first each time, so a process that died is reported at once
/// rather than after the whole limit (it returns how it ended when it has).
pub async fn wait_healthy(
    client: &reqwest::Client,
    base: &str,
    limit: Duration,
    mut still_running: impl FnMut() -> Result<(), String>,
) -> Result<(), NotHealthy> {
    let deadline = Instant::now() + limit;
    loop {
        still_running().map_err(NotHealthy::Exited)?;
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotHealthy::TimedOut(limit));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Creates a subscription through `POST {base}/subscriptions` with `body` (which must hold
/// at least `target_url`); returns its id, or the status and body of any answer but 201.
pub async fn create_subscription(client: &reqwest::Client, base: &str, admin_token: &str, body: &Value) -> Result<Uuid, String> {
    let response = client
        .post(format!("{base}/subscriptions"))
        .bearer_auth(admin_token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|error| format!("POST /subscriptions: {error}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|error| format!("POST /subscriptions: {error}"))?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let id = answer["id"].as_str().and_then(|id| id.parse().ok());
    match id {
        Some(id) if status == 201 => Ok(id),
        _ => Err(format!("POST /subscriptions answered {status}: {answer}")),
    }
}
