//! The receiver: the customers' endpoints, in a process of their own (this program started
//! with the argument [`ARGUMENT`]), as in a deployment and as issue 17 measures: its CPU is
//! not the load generator's, and every request crosses from one process to another. It
//! records what it receives and answers the benchmark's questions on `/control/*`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, EndpointExt, IntoResponse, Request, Route, Server};

/// The first argument that makes this program the receiver.
pub const ARGUMENT: &str = "receiver";

/// What arrived: a count, the bytes, and (while tracking) each webhook's arrival time.
#[derive(Default)]
struct Receipts {
    count: AtomicU64,
    /// Bytes of every request received (see `request_bytes`): the egress of the attempts.
    bytes: AtomicU64,
    track: AtomicBool,
    /// Arrival times by webhook-id. Wall-clock time, which both processes read alike, so
    /// that the load generator can subtract its own send times.
    at: Mutex<HashMap<String, SystemTime>>,
    /// Webhook-ids `fail_once` has already refused once.
    refused: Mutex<HashSet<String>>,
}

/// Runs the receiver until its stdin closes (the benchmark ended, however it ended) or it
/// is killed. Prints its port on the first line of stdout, and nothing else.
pub fn serve() -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let port = acceptor.local_addr()[0].as_socket_addr().map(|address| address.port()).ok_or_else(|| anyhow::anyhow!("no local address"))?;
        println!("{port}");
        let app = Route::new()
            .at("/hang", poem::post(hang_forever))
            .at("/fail-once", poem::post(fail_once))
            .at("/control/stats", poem::get(stats))
            .at("/control/track", poem::put(track))
            .at("/control/arrivals", poem::get(list_arrivals).delete(forget_arrivals))
            .at("/*path", poem::post(receive))
            .data(Arc::new(Receipts::default()));
        Server::new_with_acceptor(acceptor).run(app).await?;
        Ok(())
    })
}

#[handler]
fn receive(request: &Request, receipts: Data<&Arc<Receipts>>) -> &'static str {
    receipts.count.fetch_add(1, Ordering::Relaxed);
    receipts.bytes.fetch_add(request_bytes(request), Ordering::Relaxed);
    if receipts.track.load(Ordering::Relaxed)
        && let Some(id) = request.header("webhook-id")
    {
        receipts.at.lock().unwrap().insert(id.to_owned(), SystemTime::now());
    }
    "ok"
}

/// An endpoint that never answers (until the service's delivery timeout).
#[handler]
async fn hang_forever() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    "late"
}

/// An endpoint that refuses each webhook's first attempt (503) and takes the second, so
/// that every webhook costs exactly two attempts: the cost of a retry, measured.
#[handler]
fn fail_once(request: &Request, receipts: Data<&Arc<Receipts>>) -> poem::Response {
    receipts.bytes.fetch_add(request_bytes(request), Ordering::Relaxed);
    let id = request.header("webhook-id").unwrap_or_default().to_owned();
    if receipts.refused.lock().is_ok_and(|mut refused| refused.insert(id)) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    receipts.count.fetch_add(1, Ordering::Relaxed);
    "ok".into_response()
}

/// Bytes of an HTTP/1.1 request as sent (request line, headers, blank line, body), without
/// TCP/IP or TLS framing: what one attempt sends out of the network.
fn request_bytes(request: &Request) -> u64 {
    let line = format!("{} {} HTTP/1.1\r\n", request.method(), request.uri()).len();
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + 2 + value.len() + 2).sum();
    let body = request.header("content-length").and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    (line + headers + 2 + body) as u64
}

/// `count bytes arrivals-recorded`
#[handler]
fn stats(receipts: Data<&Arc<Receipts>>) -> String {
    let recorded = receipts.at.lock().unwrap().len();
    format!("{} {} {recorded}", receipts.count.load(Ordering::Relaxed), receipts.bytes.load(Ordering::Relaxed))
}

/// Body `on` or `off`: whether to record arrival times.
#[handler]
fn track(body: String, receipts: Data<&Arc<Receipts>>) {
    receipts.track.store(body == "on", Ordering::Relaxed);
}

/// One line per recorded arrival: `webhook-id microseconds-since-the-epoch`.
#[handler]
fn list_arrivals(receipts: Data<&Arc<Receipts>>) -> String {
    let at = receipts.at.lock().unwrap();
    at.iter().map(|(id, time)| format!("{id} {}\n", micros_since_epoch(*time))).collect()
}

#[handler]
fn forget_arrivals(receipts: Data<&Arc<Receipts>>) {
    receipts.at.lock().unwrap().clear();
}

fn micros_since_epoch(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros()
}

/// The benchmark's handle on the receiver process, which it stops when dropped.
pub struct Receiver {
    process: Child,
    /// Kept open: the receiver must never write to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// Where the service delivers and where any path answers 200, except `/hang` (never
    /// answers) and `/fail-once` (503 to each webhook's first attempt), see [`Self::url_for`].
    pub url: String,
    base: String,
    client: reqwest::Client,
}

impl Receiver {
    /// Starts the receiver process (blocking until it listens). Its stdin is a pipe that
    /// only closes when this process ends, which ends the receiver too.
    pub fn start() -> anyhow::Result<Self> {
        let mut process = Command::new(std::env::current_exe()?).arg(ARGUMENT).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        let port = stdout.read_line(&mut line).map_err(anyhow::Error::from).and_then(|_| Ok(line.trim().parse::<u16>()?));
        let port = match port {
            Ok(port) => port,
            Err(error) => {
                let _ = process.kill();
                let _ = process.wait();
                anyhow::bail!("the receiver did not start (it said {line:?}): {error}");
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        // A stuck receiver fails the benchmark instead of hanging it.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { process, _stdout: stdout, url: format!("{base}/hook"), base, client })
    }

    /// The URL of one of the receiver's endpoints, `path` such as `/hang`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// [webhooks counted as received, bytes received, arrival times recorded]
    async fn stats(&self) -> anyhow::Result<[u64; 3]> {
        let text = self.client.get(format!("{}/control/stats", self.base)).send().await?.error_for_status()?.text().await?;
        let numbers: Vec<u64> = text.split(' ').map(str::parse).collect::<Result<_, _>>()?;
        numbers.try_into().map_err(|_| anyhow::anyhow!("receiver stats: {text}"))
    }

    /// Webhooks received (a refused first attempt does not count).
    pub async fn count(&self) -> anyhow::Result<u64> {
        Ok(self.stats().await?[0])
    }

    /// Bytes of every request received.
    pub async fn bytes(&self) -> anyhow::Result<u64> {
        Ok(self.stats().await?[1])
    }

    /// How many arrival times have been recorded.
    pub async fn arrivals_recorded(&self) -> anyhow::Result<u64> {
        Ok(self.stats().await?[2])
    }

    /// Starts or stops recording arrival times.
    pub async fn track(&self, on: bool) -> anyhow::Result<()> {
        let body = if on { "on" } else { "off" };
        self.client.put(format!("{}/control/track", self.base)).body(body).send().await?.error_for_status()?;
        Ok(())
    }

    pub async fn forget_arrivals(&self) -> anyhow::Result<()> {
        self.client.delete(format!("{}/control/arrivals", self.base)).send().await?.error_for_status()?;
        Ok(())
    }

    /// Arrival times recorded so far, by webhook-id.
    pub async fn arrivals(&self) -> anyhow::Result<HashMap<String, SystemTime>> {
        let text = self.client.get(format!("{}/control/arrivals", self.base)).send().await?.error_for_status()?.text().await?;
        let mut arrivals = HashMap::new();
        for line in text.lines() {
            let (id, micros) = line.rsplit_once(' ').ok_or_else(|| anyhow::anyhow!("receiver arrivals: {line}"))?;
            let micros: u64 = micros.parse()?;
            arrivals.insert(id.to_owned(), SystemTime::UNIX_EPOCH + Duration::from_micros(micros));
        }
        Ok(arrivals)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
