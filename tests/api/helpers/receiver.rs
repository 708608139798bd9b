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
