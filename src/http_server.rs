//! The HTTP server: HTTP/1.1 (hyper) in front of the poem routes, with the limits a server
//! facing the internet needs. poem's own server has no header read timeout and no
//! connection cap, so a few hundred clients trickling their headers a byte at a time
//! could hold every connection forever.
//!
//! - Headers must arrive within `header_timeout` of the connection waiting for them. The
//!   wait for the next request on a kept-alive connection counts too, so the same timeout
//!   closes idle keep-alive connections.
//! - A request body must arrive whole within `body_timeout` of the handler reading it (408
//!   otherwise), and a client that stops reading our answers for that long is disconnected
//!   (a slow reader would otherwise hold its place under the cap forever).
//! - At most `max_connections` connections are served at once; beyond that, new ones wait
//!   in the kernel's accept queue (not refused) until one closes.
//!
//! HTTP/2 is not offered: without TLS, clients speak HTTP/1.1, and a proxy in front can
//! speak HTTP/2 to the internet.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Response};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// Connections waiting to be accepted that the kernel keeps (it caps this at somaxconn).
const ACCEPT_BACKLOG: u32 = 4096;
/// Wait after a failed accept (out of file descriptors, say) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// On shutdown, how long open requests may take to finish before their connections close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Default cap on connections; lowered when the file-descriptor limit is smaller.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// What the server allows each client.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// Binds `address` with a deep accept queue, so that bursts of connections wait instead of
/// being refused.
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves `endpoint` on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// requests in progress finish (within a grace period) and returns.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let endpoint = Arc::new(endpoint);
    let local = listener.local_addr().ok();
    let room = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let close_connections = CancellationToken::new();
    metrics.set_max_connections(limits.max_connections);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = room.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            endpoint: endpoint.clone(),
            local: local.unwrap_or(remote),
            remote,
            limits,
            metrics: metrics.clone(),
            _permit: permit,
        };
        connections.spawn(connection.serve(stream, close_connections.clone()));
    }
    drop(listener);
    close_connections.cancel();
    connections.close();
    if tokio::time::timeout(CLOSE_GRACE, connections.wait()).await.is_err() {
        tracing::warn!("some HTTP requests were still running at shutdown; their connections were closed");
    }
}

/// One client connection and what it holds while open.
struct Connection<E> {
    endpoint: Arc<E>,
    local: SocketAddr,
    remote: SocketAddr,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    /// A place under the connection cap, given back when the connection closes.
    _permit: OwnedSemaphorePermit,
}

impl<E: Endpoint<Output = Response> + 'static> Connection<E> {
    async fn serve(self, stream: TcpStream, close: CancellationToken) {
        let _ = stream.set_nodelay(true);
        self.metrics.connection_opened();
        let (endpoint, local, remote, body_timeout) = (self.endpoint.clone(), self.local, self.remote, self.limits.body_timeout);
        let service = hyper::service::service_fn(move |request: poem::http::Request<Incoming>| {
            let endpoint = endpoint.clone();
            async move {
                let addresses = (LocalAddr(Addr::SocketAddr(local)), RemoteAddr(Addr::SocketAddr(remote)));
                let mut request = poem::Request::from((request, addresses.0, addresses.1, poem::http::uri::Scheme::HTTP));
                let body = request.take_body();
                request.set_body(DeadlineBody::wrap(body, body_timeout));
                let response = endpoint.get_response(request).await;
                Ok::<_, Infallible>(poem::http::Response::<BoxBody<Bytes, io::Error>>::from(response))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .serve_connection(TokioIo::new(WriteDeadline::new(stream, self.limits.body_timeout)), service);
        tokio::pin!(connection);
        let finished = tokio::select! {
            finished = connection.as_mut() => finished,
            _ = close.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = finished {
            tracing::debug!(%error, remote = %self.remote, "connection closed with an error");
        }
        self.metrics.connection_closed();
    }
}

/// A connection whose writes fail with `TimedOut` once the client has read nothing for
/// `timeout`: hyper then closes it.
struct WriteDeadline {
    stream: TcpStream,
    timeout: Duration,
    /// Armed when a write first finds the client's window full; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self { stream, timeout, stalled: None }
    }

    /// What a write that made no progress means: wait, or give up after the timeout.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            let message = format!("the client read nothing for {timeout:?} (WEBHOOKD_HTTP_BODY_TIMEOUT)");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)));
        }
        Poll::Pending
    }
}

impl tokio::io::AsyncRead for WriteDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WriteDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(written) => {
                self.stalled = None;
                Poll::Ready(written)
            }
            Poll::Pending => self.stalled(cx),
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(written) => {
                self.stalled = None;
                Poll::Ready(written)
            }
            Poll::Pending => self.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that fails with `TimedOut` when it has not arrived whole within
/// `timeout` of the handler starting to read it.
struct DeadlineBody {
    inner: BoxBody<Bytes, io::Error>,
    /// Set on the first read: a handler that reads late is not charged for its own delay,
    /// and a body that is never read costs no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn wrap(body: poem::Body, timeout: Duration) -> poem::Body {
        let inner: BoxBody<Bytes, io::Error> = body.into();
        if inner.is_end_stream() {
            return poem::Body::from(inner);
        }
        poem::Body::from(Self { inner, deadline: None, timeout }.boxed())
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.deadline.as_mut().is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready()) {
            let message = format!("the request body did not arrive within {:?} (WEBHOOKD_HTTP_BODY_TIMEOUT)", self.timeout);
            return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, message))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit on open files to the hard limit, as servers do (the default soft
/// limit, often 1,024, is below what the connection cap and the delivery client need).
/// Returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The connection cap when none is configured: [`DEFAULT_MAX_CONNECTIONS`], or fewer when
/// the open-files limit would not leave room for the `reserved` descriptors (delivery
/// connections, the database pool, files) besides.
pub fn default_max_connections(open_files: u64, reserved: usize) -> usize {
    let available = (open_files as usize).saturating_sub(reserved);
    available.clamp(64, DEFAULT_MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_the_other_descriptors() {
        assert_eq!(default_max_connections(1_048_576, 600), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(default_max_connections(1024, 600), 424);
        assert_eq!(default_max_connections(256, 600), 64, "a floor, even when the limit is tiny");
    }
}
