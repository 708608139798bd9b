//! A TCP proxy in front of PostgreSQL whose open connections can go silent at once: what a
//! client sees when the database host vanishes (a failover, a dropped NAT mapping). After
//! `vanish`, every connection open until then forwards nothing more and is never closed
//! (no FIN, no RST: the client's reads wait and its writes are taken in), while new
//! connections are forwarded again, as to the new primary behind the same address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub struct VanishingProxy {
    pub address: SocketAddr,
    /// Connections numbered below this one are silent.
    silent_below: Arc<AtomicU64>,
    next_connection: Arc<AtomicU64>,
    /// The accept loop and every connection's pumps, ended when the proxy is dropped.
    _tasks: JoinSet<()>,
}

impl VanishingProxy {
    /// Listens on 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let silent_below = Arc::new(AtomicU64::new(0));
        let next_connection = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let (silent, next) = (silent_below.clone(), next_connection.clone());
        tasks.spawn(async move {
            let mut pumps = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let number = next.fetch_add(1, Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.spawn(pump(client_read, server_write, number, silent.clone()));
                pumps.spawn(pump(server_read, client_write, number, silent.clone()));
            }
        });
        Self { address, silent_below, next_connection, _tasks: tasks }
    }

    /// Every connection open now goes silent for good; later ones work.
    pub fn vanish(&self) {
        self.silent_below.store(self.next_connection.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Forwards `from` to `to` until either side closes, or, once connection `number` is
/// silent, holds both halves open and forwards nothing.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, number: u64, silent_below: Arc<AtomicU64>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await;
        if number < silent_below.load(Ordering::SeqCst) {
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
