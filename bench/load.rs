//! The load generator: `CONNECTIONS` keep-alive HTTP/1.1 connections, each sending one
//! request built once, reading its whole answer and sending it again, as pgbench's clients
//! send one prepared INSERT over and over. One request is in flight per connection (no
//! pipelining), as with any HTTP client.
//!
//! Why not reqwest: on these 2 cores the load generator shares the CPU with webhookd and
//! PostgreSQL, and reqwest's work per request (a URL parsed, a header map and a response
//! object built, a pool checked out) cost about as much CPU as webhookd's own handling of
//! the request. pgbench, the reference of the ingest ratio, is a C client that does next to
//! nothing per commit. The ratio then compared the generators as much as the servers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::CONNECTIONS;

/// One kind of request the generator sends: where to, and its bytes on the wire (the URL's
/// path only: no benchmark URL has a query).
struct Target {
    address: SocketAddr,
    request: Arc<[u8]>,
}

impl Target {
    /// A POST of `body` as JSON to `url` (`http://host:port/path`), with `token` as its
    /// bearer token if given.
    fn post(url: &str, token: Option<&str>, body: &[u8]) -> anyhow::Result<Self> {
        let url = url::Url::parse(url)?;
        let address = url.socket_addrs(|| None)?.into_iter().next().ok_or_else(|| anyhow::anyhow!("{url}: no address"))?;
        let mut head = format!("POST {} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", url.path(), body.len());
        if let Some(token) = token {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        let request = [head.as_bytes(), body].concat().into();
        Ok(Self { address, request })
    }
}

/// `CONNECTIONS` connections POSTing the benchmark's payload as fast as they can for
/// `duration`, spread over `urls` in turn (one service per URL); returns how many got a 2xx
/// answer.
pub async fn post_for(urls: &[String], token: Option<&str>, duration: Duration) -> u64 {
    let body = crate::payload();
    let targets: Vec<Arc<Target>> = urls.iter().map(|url| Arc::new(Target::post(url, token, body.as_bytes()).expect("a benchmark URL"))).collect();
    let succeeded = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let (target, succeeded) = (targets[connection % targets.len()].clone(), succeeded.clone());
            tokio::spawn(async move { send_until(&target, deadline, &succeeded).await })
        })
        .collect();
    for connection in connections {
        if let Ok(Err(error)) = connection.await {
            eprintln!("load generator: a connection ended early: {error}");
        }
    }
    succeeded.load(Ordering::Relaxed)
}

/// Sends `target`'s request on one connection until `deadline`, reconnecting whenever the
/// server closes or resets it, and counts the 2xx answers in `succeeded`. A refused
/// connection or an answer it cannot read ends it early.
async fn send_until(target: &Target, deadline: Instant, succeeded: &AtomicU64) -> io::Result<()> {
    let mut buffer = Vec::with_capacity(4096);
    while Instant::now() < deadline {
        let mut stream = TcpStream::connect(target.address).await?;
        stream.set_nodelay(true)?;
        match send_on(&mut stream, target, deadline, succeeded, &mut buffer).await {
            // A malformed answer would come again on the next connection.
            Err(error) if error.kind() == io::ErrorKind::InvalidData => return Err(error),
            // Closed or reset: as any client would, open another connection.
            Ok(()) | Err(_) => {}
        }
    }
    Ok(())
}

/// Sends `target`'s request on `stream` until `deadline` or until the server closes it.
async fn send_on(stream: &mut TcpStream, target: &Target, deadline: Instant, succeeded: &AtomicU64, buffer: &mut Vec<u8>) -> io::Result<()> {
    while Instant::now() < deadline {
        stream.write_all(&target.request).await?;
        let Some(answer) = read_answer(stream, buffer).await? else { return Ok(()) };
        if (200..300).contains(&answer.status) {
            succeeded.fetch_add(1, Ordering::Relaxed);
        }
        if answer.closes {
            return Ok(());
        }
    }
    Ok(())
}

/// What the generator needs of an answer.
struct Answer {
    status: u16,
    /// The server said `connection: close`.
    closes: bool,
}

/// Reads one whole answer (head and a `content-length` body) from `stream`; `None` if the
/// server closed the connection first.
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Option<Answer>> {
    buffer.clear();
    loop {
        if let Some((answer, length)) = parse_head(buffer)? {
            while buffer.len() < length {
                if read_more(stream, buffer).await? == 0 {
                    return Ok(None);
                }
            }
            return Ok(Some(answer));
        }
        if read_more(stream, buffer).await? == 0 {
            return Ok(None);
        }
    }
}

/// The answer and its whole length in bytes, once `buffer` holds all of its head.
fn parse_head(buffer: &[u8]) -> io::Result<Option<(Answer, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_length = match response.parse(buffer).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))? {
        httparse::Status::Complete(length) => length,
        httparse::Status::Partial => return Ok(None),
    };
    let header = |name: &str| response.headers.iter().find(|header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value);
    // Every server here answers with a content-length: a chunked answer is a surprise.
    let body_length: usize = header("content-length")
        .and_then(|value| std::str::from_utf8(value).ok()?.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "an answer without content-length"))?;
    let closes = header("connection").is_some_and(|value| value.eq_ignore_ascii_case(b"close"));
    let status = response.code.unwrap_or(0);
    Ok(Some((Answer { status, closes }, head_length + body_length)))
}

/// Appends what the socket has to `buffer`; 0 when the server closed the connection.
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    buffer.reserve(4096);
    stream.read_buf(buffer).await
}

/// [`post_for`] with reqwest, the client webhookd delivers with, in place of the load
/// generator's own connections: for the delivery ceiling (`raw_http_rate`), and to compare
/// with the load generators of the benchmark before its twenty-fourth session.
pub async fn reqwest_post_for(client: &reqwest::Client, url: &str, token: Option<&str>, duration: Duration) -> u64 {
    let succeeded = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let body = bytes::Bytes::from(crate::payload());
    let connections: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, body, succeeded) = (client.clone(), url.to_owned(), body.clone(), succeeded.clone());
            let token = token.map(str::to_owned);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut request = client.post(&url).header("content-type", "application/json").body(body.clone());
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    if let Ok(response) = request.send().await {
                        if response.status().is_success() {
                            succeeded.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = response.bytes().await;
                    }
                }
            })
        })
        .collect();
    for connection in connections {
        let _ = connection.await;
    }
    succeeded.load(Ordering::Relaxed)
}
