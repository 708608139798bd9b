//! Portal links: bearer URLs that open one subscription's portal, signed by the server so
//! that checking one needs no row of its own (only the subscription's revocation instant).
//!
//! A token is base64url of `version (1) | subscription id (16) | issued at (8, µs since the
//! epoch) | expires at (8, µs) | HMAC-SHA256 of the admin token's fingerprint and the
//! preceding 33 bytes (32)` (version 2; version 1, without the fingerprint, is still
//! accepted until its links expire). The key is random, shared by the instances through
//! the database (`ui_keys`, migration 31), never derived from the admin token: a link is handed to customers, and its signature must not
//! let them test guesses of the admin token offline. A subscription's links are revoked by
//! moving its `portal_links_valid_after` past their issue time, and all links at once by
//! replacing the admin token: each signature also covers the token's fingerprint (below),
//! which a customer cannot compute either.
//!
//! The same key fingerprints the admin token in each dashboard session (see `session.rs`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::config::Secret;
use crate::db::ui_keys;
use crate::domain::signing::hmac;
use crate::domain::SubscriptionId;

/// How long a link lasts when the request does not say.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest lifetime accepted: a link is a bearer credential.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Links issued now: the tag also covers the admin token's fingerprint.
const VERSION: u8 = 2;
/// Links issued before that (until December 2026), accepted until they expire (30 days at
/// most): a replaced admin token does not revoke them.
const VERSION_WITHOUT_ADMIN: u8 = 1;
const SIGNED_LEN: usize = 1 + 16 + 8 + 8;
const TOKEN_LEN: usize = SIGNED_LEN + 32;

/// The shared key, read (or made) on first use: the database may be down at start.
pub struct PortalLinks {
    pool: PgPool,
    admin_token: Secret,
    /// The key, and the admin token's fingerprint under it (both fixed for the process).
    keys: OnceCell<([u8; 32], [u8; 32])>,
}

/// Signs and checks portal links with the shared key, for the current admin token.
pub struct Signer<'a> {
    key: &'a [u8; 32],
    /// The admin token's fingerprint ([`Signer::admin_fingerprint`]).
    admin: [u8; 32],
}

/// A link just issued.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    pub token: String,
    pub expires_at: OffsetDateTime,
}

/// What a valid signature vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkClaims {
    pub subscription_id: SubscriptionId,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link has expired: ask for a new one")]
    Expired,
    #[error("this link was revoked: ask for a new one")]
    Revoked,
}

/// The name of the key in `ui_keys`.
const KEY_NAME: &str = "portal_links_v1";

impl PortalLinks {
    pub fn new(pool: PgPool, admin_token: Secret) -> Self {
        Self { pool, admin_token, keys: OnceCell::new() }
    }

    /// The signer, with the shared key (made now, from the OS's random source, if no
    /// instance has made it yet).
    pub async fn signer(&self) -> sqlx::Result<Signer<'_>> {
        let (key, admin) = self
            .keys
            .get_or_try_init(|| async {
                let mut candidate = [0u8; 32];
                getrandom::fill(&mut candidate).map_err(|e| sqlx::Error::Protocol(format!("no randomness for the portal key: {e}")))?;
                let stored = ui_keys::get_or_create(&self.pool, KEY_NAME, &candidate).await?;
                let key = <[u8; 32]>::try_from(stored.as_slice())
                    .map_err(|_| sqlx::Error::Protocol("the stored portal key is not 32 bytes".into()))?;
                Ok::<_, sqlx::Error>((key, fingerprint(&key, self.admin_token.expose())))
            })
            .await?;
        Ok(Signer { key, admin: *admin })
    }
}

impl Signer<'_> {
    /// The admin token's fingerprint under the shared key (computed once per process):
    /// stored with each dashboard session, so that sessions opened with a replaced token
    /// are no longer live.
    pub fn admin_fingerprint(&self) -> [u8; 32] {
        self.admin
    }

    /// The signature of a new link's fields, valid only while the admin token is the same.
    fn tag(&self, signed: &[u8]) -> [u8; 32] {
        hmac(self.key, &[b"webhookd portal links v1", &self.admin, signed])
    }

    /// The signature a link's fields should carry, by its version (the first byte).
    fn expected_tag(&self, signed: &[u8]) -> Option<[u8; 32]> {
        match signed.first() {
            Some(&VERSION) => Some(self.tag(signed)),
            Some(&VERSION_WITHOUT_ADMIN) => Some(hmac(self.key, &[b"webhookd portal links v1", signed])),
            _ => None,
        }
    }

    /// Issues a link for `subscription_id` valid from `now` for `lifetime`.
    pub fn issue(&self, subscription_id: SubscriptionId, now: OffsetDateTime, lifetime: Duration) -> IssuedLink {
        let expires_at = now + lifetime;
        let mut bytes = Vec::with_capacity(TOKEN_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(subscription_id.as_uuid().as_bytes());
        bytes.extend_from_slice(&micros(now).to_be_bytes());
        bytes.extend_from_slice(&micros(expires_at).to_be_bytes());
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        IssuedLink { token: URL_SAFE_NO_PAD.encode(bytes), expires_at }
    }

    /// Checks a token's signature and expiry at `now` (revocation needs the database:
    /// see [`LinkClaims::revoked_by`]).
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<LinkClaims, LinkError> {
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| LinkError::Invalid)?;
        if bytes.len() != TOKEN_LEN {
            return Err(LinkError::Invalid);
        }
        let (signed, tag) = bytes.split_at(SIGNED_LEN);
        let expected = self.expected_tag(signed).ok_or(LinkError::Invalid)?;
        if !bool::from(expected.ct_eq(tag)) {
            return Err(LinkError::Invalid);
        }
        let field = |range: std::ops::Range<usize>| -> [u8; 8] {
            let mut out = [0; 8];
            out.copy_from_slice(&signed[range]);
            out
        };
        let mut id = [0; 16];
        id.copy_from_slice(&signed[1..17]);
        let claims = LinkClaims {
            subscription_id: uuid::Uuid::from_bytes(id).into(),
            issued_at: from_micros(i64::from_be_bytes(field(17..25)))?,
            expires_at: from_micros(i64::from_be_bytes(field(25..33)))?,
        };
        if now >= claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }

}

impl LinkClaims {
    /// Whether a revocation at `valid_after` covers this link (issued at or before it).
    pub fn revoked_by(&self, valid_after: Option<OffsetDateTime>) -> bool {
        valid_after.is_some_and(|after| self.issued_at <= after)
    }
}

/// Parses a lifetime such as `24h` or `7d`: 1 second to 30 days.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(text).map_err(|e| format!("expires_in `{text}` is not a duration like 24h: {e}"))?;
    if lifetime < Duration::from_secs(1) || lifetime > MAX_LIFETIME {
        return Err("expires_in must be between 1s and 30d".into());
    }
    Ok(lifetime)
}

fn fingerprint(key: &[u8; 32], admin_token: &str) -> [u8; 32] {
    hmac(key, &[b"webhookd admin token v1", admin_token.as_bytes()])
}

fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(value: i64) -> Result<OffsetDateTime, LinkError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(value) * 1_000).map_err(|_| LinkError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<'a> Signer<'a> {
        fn new(key: &'a [u8; 32], admin_token: &str) -> Self {
            Self { key, admin: fingerprint(key, admin_token) }
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_link_is_valid_for_its_subscription_until_it_expires() {
        let links = Signer::new(&[1; 32], "admin-token-0123456789");
        let id = SubscriptionId::new();
        let link = links.issue(id, at(0), Duration::from_secs(60));
        let claims = links.verify(&link.token, at(59)).unwrap();
        assert_eq!(claims.subscription_id, id);
        assert_eq!(claims.expires_at, at(60));
        assert_eq!(links.verify(&link.token, at(60)), Err(LinkError::Expired));
    }

    #[test]
    fn a_tampered_link_or_another_servers_link_is_invalid() {
        let links = Signer::new(&[1; 32], "admin-token-0123456789");
        let link = links.issue(SubscriptionId::new(), at(0), Duration::from_secs(60));
        let mut bytes = URL_SAFE_NO_PAD.decode(&link.token).unwrap();
        bytes[5] ^= 1; // another subscription id
        assert_eq!(links.verify(&URL_SAFE_NO_PAD.encode(&bytes), at(1)), Err(LinkError::Invalid));
        let other = Signer::new(&[2; 32], "admin-token-0123456789");
        assert_eq!(other.verify(&link.token, at(1)), Err(LinkError::Invalid));
        let new_admin_token = Signer::new(&[1; 32], "replaced-token-0123456789");
        assert_eq!(new_admin_token.verify(&link.token, at(1)), Err(LinkError::Invalid), "a replaced admin token revokes every link");
        assert_eq!(links.verify("not a token", at(1)), Err(LinkError::Invalid));
        assert_eq!(links.verify(&link.token[..40], at(1)), Err(LinkError::Invalid));
    }

    #[test]
    fn a_link_issued_before_version_2_is_accepted_whatever_the_admin_token() {
        let links = Signer::new(&[1; 32], "admin-token-0123456789");
        let id = SubscriptionId::new();
        let mut bytes = vec![VERSION_WITHOUT_ADMIN];
        bytes.extend_from_slice(id.as_uuid().as_bytes());
        bytes.extend_from_slice(&micros(at(0)).to_be_bytes());
        bytes.extend_from_slice(&micros(at(60)).to_be_bytes());
        bytes.extend_from_slice(&hmac(&[1; 32], &[b"webhookd portal links v1", &bytes]));
        let old = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(links.verify(&old, at(1)).map(|c| c.subscription_id), Ok(id));
        assert!(Signer::new(&[1; 32], "replaced-token-0123456789").verify(&old, at(1)).is_ok());
    }

    #[test]
    fn a_revocation_covers_links_issued_until_then() {
        let links = Signer::new(&[1; 32], "admin-token-0123456789");
        let link = links.issue(SubscriptionId::new(), at(10), Duration::from_secs(600));
        let claims = links.verify(&link.token, at(11)).unwrap();
        assert!(!claims.revoked_by(None));
        assert!(claims.revoked_by(Some(at(10))));
        assert!(!claims.revoked_by(Some(at(9))));
    }

    #[test]
    fn the_admin_fingerprint_depends_on_the_token_and_the_key() {
        let of = |key: &[u8; 32], token: &str| Signer::new(key, token).admin_fingerprint();
        assert_eq!(of(&[1; 32], "token-a-0123456789"), of(&[1; 32], "token-a-0123456789"));
        assert_ne!(of(&[1; 32], "token-a-0123456789"), of(&[1; 32], "token-b-0123456789"));
        assert_ne!(of(&[1; 32], "token-a-0123456789"), of(&[2; 32], "token-a-0123456789"));
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(parse_lifetime("24h").unwrap(), DEFAULT_LIFETIME);
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("31d").is_err());
        assert!(parse_lifetime("soon").is_err());
    }
}
