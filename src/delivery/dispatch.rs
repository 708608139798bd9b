//! Sending one attempt: build the request, POST it, read a bounded excerpt of the answer.

use std::error::Error as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::redirect::Policy;
use time::OffsetDateTime;

use super::ssrf::{BlockedAddress, PublicOnlyResolver, BLOCKED_ADDRESS};
use crate::db::deliveries::ClaimedDelivery;
use crate::domain::address::is_public;
use crate::domain::lifecycle::SendOutcome;
use crate::domain::retry::parse_retry_after;
use crate::domain::signing;
use crate::domain::target_url::TargetUrl;

/// Bytes of the response body kept in the attempt log.
pub const EXCERPT_BYTES: usize = 1024;

/// The one HTTP client all deliveries share: keep-alive connections, no redirects, no
/// proxies from the environment, and (by default) only public addresses. HTTP/1.1 only: a
/// webhook is one POST, and over HTTP/2 every subscription on one host would share one
/// connection, whose stream limit (often 128) would queue a healthy subscription's requests
/// behind a slow one's on the same host.
pub fn build_client(timeout: Duration, allow_private_targets: bool) -> reqwest::Result<reqwest::Client> {
    install_tls_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("webhookd/", env!("CARGO_PKG_VERSION")))
        .http1_only()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64);
    if !allow_private_targets {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnlyResolver));
    }
    builder.build()
}

/// reqwest is built without a default TLS crypto provider (aws-lc needs cmake and a long
/// build): use ring. Must run before any reqwest client is built; repeated calls are no-ops.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What happened on the wire.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub started_at: OffsetDateTime,
    pub duration: Duration,
    pub outcome: SendOutcome,
    /// Why it failed, for the attempt log (also set when a 2xx body could not be read).
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

impl AttemptResult {
    /// The receiver's HTTP status, when it answered.
    pub fn status_code(&self) -> Option<u16> {
        match self.outcome {
            SendOutcome::Answered { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// POSTs the delivery's exact body to `target` (or fails the attempt with the reason the
/// stored target no longer parses), signed as `signing` says.
pub async fn send(
    client: &reqwest::Client,
    target: Result<&TargetUrl, &str>,
    delivery: &ClaimedDelivery,
    body: Bytes,
    signing: &Signing<'_>,
    allow_private_targets: bool,
) -> AttemptResult {
    let started_at = OffsetDateTime::now_utc();
    let clock = Instant::now();
    let finish = |outcome, error: Option<String>, response_excerpt| AttemptResult {
        started_at,
        duration: clock.elapsed(),
        outcome,
        error,
        response_excerpt,
    };
    // Parsed when the subscription was cached (a stored URL always parses).
    let target = match target {
        Ok(target) => target,
        Err(error) => return finish(SendOutcome::Failed, Some(error.to_owned()), None),
    };
    // An IP written in the URL is never resolved, so the resolver cannot judge it: do it here.
    if !allow_private_targets && target.ip_literal().is_some_and(|ip| !is_public(ip)) {
        return finish(SendOutcome::Blocked, Some(BLOCKED_ADDRESS.to_owned()), None);
    }
    let request = client
        .post(target.url().clone())
        .headers(delivery_headers(delivery, started_at, &body, signing))
        .body(body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let outcome = if is_blocked(&error) {
                SendOutcome::Blocked
            } else if error.is_timeout() {
                SendOutcome::TimedOut
            } else {
                SendOutcome::Failed
            };
            let text = if outcome == SendOutcome::Blocked { BLOCKED_ADDRESS.to_owned() } else { describe(&error) };
            return finish(outcome, Some(text), None);
        }
    };
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let (excerpt, read_error) = read_excerpt(response).await;
    let error = if status.is_success() {
        read_error
    } else {
        Some(format!("receiver answered HTTP {}", status.as_u16()))
    };
    finish(SendOutcome::Answered { status: status.as_u16(), retry_after }, error, excerpt)
}

/// How to sign a delivery.
pub struct Signing<'a> {
    /// The current secret first, then a previous one still within its rotation overlap.
    pub secrets: Vec<&'a str>,
    /// The subscription opted in to `X-Hub-Signature-256` as well.
    pub github_signature: bool,
}

fn delivery_headers(delivery: &ClaimedDelivery, sent_at: OffsetDateTime, body: &[u8], signing: &Signing<'_>) -> HeaderMap {
    let secrets = &signing.secrets;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let id = delivery.id.to_string();
    let timestamp = sent_at.unix_timestamp();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("webhook-id", value); // a UUID: always a valid value
    }
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    if let Some(current) = secrets.first() {
        let signatures: Vec<String> =
            secrets.iter().map(|secret| signing::standard_webhooks_signature(secret, &id, timestamp, body)).collect();
        // Base64 and hex are always valid header values.
        if let Ok(joined) = HeaderValue::from_str(&signatures.join(" ")) {
            headers.insert("webhook-signature", joined);
        }
        if signing.github_signature
            && let Ok(hub) = HeaderValue::from_str(&signing::hub_signature(current, body))
        {
            headers.insert("x-hub-signature-256", hub);
        }
    }
    headers.insert("x-webhook-attempt", HeaderValue::from(delivery.attempt_count));
    if let Some(event) = delivery.event_type.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert("x-webhook-event", event);
    }
    headers
}

/// Reads at most [`EXCERPT_BYTES`] of the body: a huge or endless response costs no memory.
async fn read_excerpt(mut response: reqwest::Response) -> (Option<String>, Option<String>) {
    let mut excerpt = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = EXCERPT_BYTES - excerpt.len();
                excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if excerpt.len() >= EXCERPT_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => return (text_excerpt(&excerpt), Some(describe(&error))),
        }
    }
    (text_excerpt(&excerpt), None)
}

/// The excerpt as text: invalid UTF-8 replaced, NUL removed (PostgreSQL text refuses it).
fn text_excerpt(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(bytes).replace('\0', ""))
}

fn is_blocked(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<BlockedAddress>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A short, specific description: "timeout", "connection refused", ...
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection error"
    } else if error.is_body() || error.is_decode() {
        "error reading response"
    } else {
        "request error"
    };
    let mut detail = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_valid_text_without_nul() {
        assert_eq!(text_excerpt(b""), None);
        assert_eq!(text_excerpt(b"ok\0!").as_deref(), Some("ok!"));
        assert_eq!(text_excerpt(&[0x66, 0xff]).as_deref(), Some("f\u{fffd}"));
    }
}
