//! `webhookd healthcheck`: asks a running service for `/health` and exits 0 on a 200, so a
//! container's `HEALTHCHECK` needs no curl in the image. One plain HTTP/1.1 request with
//! short timeouts; the service listens without TLS.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Probes `url`, or `/health` on the address the service listens on.
pub fn run(url: Option<&str>, listen: SocketAddr) -> ExitCode {
    let target = match url {
        Some(url) => url.to_owned(),
        None => format!("http://{}/health", reachable(listen)),
    };
    match probe(&target) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("webhookd healthcheck: {target} answered {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("webhookd healthcheck: {target}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Where to reach a service listening on `listen`: a wildcard address means loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The HTTP status `url` answers a GET with.
fn probe(url: &str) -> Result<u16, String> {
    let url = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if url.scheme() != "http" {
        return Err("only http:// URLs can be probed".into());
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let address = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host has no address")?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", &url[url::Position::BeforePath..]);
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head).map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "the answer is not HTTP".to_owned())
}
