//! The guard against server-side request forgery: webhook targets may not reach
//! non-public addresses unless `WEBHOOKD_ALLOW_PRIVATE_TARGETS=true`. Checked when a
//! subscription is written, and again on the addresses actually dialled for every attempt
//! (the resolver below), so a DNS answer that changes later cannot get around it.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::address::is_public;
use crate::domain::target_url::TargetUrl;

/// Error text of an attempt refused by the guard.
pub const BLOCKED_ADDRESS: &str = "blocked_address";

/// The resolver's refusal, recognised by type when the connection fails.
#[derive(Debug, thiserror::Error)]
#[error("blocked_address")]
pub struct BlockedAddress;

/// Refuses a target that is, or resolves to, a non-public address. A name that does not
/// resolve now is accepted: it is checked again when each attempt connects.
pub async fn check_target(target: &TargetUrl) -> Result<(), String> {
    let refusal = |ip: IpAddr| {
        format!(
            "target_url reaches {ip}, a loopback, private, link-local or otherwise non-public \
             address; set WEBHOOKD_ALLOW_PRIVATE_TARGETS=true to allow such targets"
        )
    };
    if let Some(ip) = target.ip_literal() {
        return if is_public(ip) { Ok(()) } else { Err(refusal(ip)) };
    }
    let (host, port) = target.host_and_port();
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let Ok(Ok(addresses)) = tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await else {
        return Ok(());
    };
    for address in addresses {
        if !is_public(address.ip()) {
            return Err(refusal(address.ip()));
        }
    }
    Ok(())
}

/// A resolver for the delivery client that drops non-public addresses; with none left the
/// connection fails with [`BLOCKED_ADDRESS`].
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(BlockedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addresses: Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}
