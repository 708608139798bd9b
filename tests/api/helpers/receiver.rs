//! Real HTTP receivers on 127.0.0.1 that record what they get and answer as scripted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, web::Data, Body, EndpointExt, Request, Response, Route, Server};
use tokio_util::sync::CancellationToken;

/// What a receiver does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Never answers (until the client gives up).
    Hang,
    /// Answers with this status after a delay.
    Delay(Duration, u16),
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: poem::http::HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Option<Reply>>,
    received: Mutex<Vec<Received>>,
}

/// A real HTTP server on 127.0.0.1 that records what it gets and answers as scripted.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
    _stop: CancellationToken,
}

impl Receiver {
    /// Answers `script` in order, then `otherwise` for every later request.
    pub async fn start(script: Vec<Reply>, otherwise: Reply) -> Self {
        let state = Arc::new(ReceiverState {
            script: Mutex::new(script.into()),
            otherwise: Mutex::new(Some(otherwise)),
            received: Mutex::default(),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().map(SocketAddr::port).unwrap();
        let stop = CancellationToken::new();
        let app = Route::new().at("/*path", poem::post(receive)).data(state.clone());
        let server = Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(app, stop.clone().cancelled_owned(), Some(Duration::ZERO));
        tokio::spawn(server);
        Self { url: format!("http://127.0.0.1:{port}/hook"), state, _stop: stop }
    }

    pub async fn answering(status: u16) -> Self {
        Self::start(vec![], Reply::Status(status)).await
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived (panics after `limit`); returns them all.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(Instant::now() < deadline, "{} of {count} requests received after {limit:?}", received.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[handler]
async fn receive(request: &Request, body: Body, state: Data<&Arc<ReceiverState>>) -> Response {
    let at = Instant::now();
    let body = body.into_vec().await.unwrap_or_default();
    state.received.lock().unwrap().push(Received { headers: request.headers().clone(), body, at });
    let reply = {
        let next = state.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| state.otherwise.lock().unwrap().clone().unwrap())
    };
    match reply {
        Reply::Status(code) => Response::builder()
            .status(poem::http::StatusCode::from_u16(code).unwrap())
            .body(format!("answer {code}")),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::builder().body("late")
        }
        Reply::Delay(wait, code) => {
            tokio::time::sleep(wait).await;
            Response::builder().status(poem::http::StatusCode::from_u16(code).unwrap()).body("slow")
        }
    }
}

/// Runs the official Standard Webhooks Python library (installed by .ci/run) on a request.
pub fn standard_webhooks_verifies(secret: &str, request: &Received) -> Result<(), String> {
    use base64::Engine;
    use std::io::Write;
    let headers: serde_json::Map<String, serde_json::Value> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|name| (name.to_string(), serde_json::Value::String(request.headers[*name].to_str().unwrap().to_owned())))
        .collect();
    let input = serde_json::json!({"secret": secret, "body": base64::engine::general_purpose::STANDARD.encode(&request.body), "headers": headers});
    let script = "import sys, json, base64\n\
                  from standardwebhooks.webhooks import Webhook\n\
                  d = json.load(sys.stdin)\n\
                  Webhook(d['secret']).verify(base64.b64decode(d['body']), d['headers'])\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (.ci/run installs standardwebhooks)");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}
