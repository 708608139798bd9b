//! Secrets and how they are kept.
//!
//! - [`SecretValue`]: a subscription secret in memory. `Debug` never shows it (secrecy).
//! - [`Keyring`]: encryption at rest. With `WEBHOOKD_ENCRYPTION_KEY` set, subscription
//!   secrets are stored as `enc:v1:<key id>:<base64 of nonce and ciphertext>`
//!   (XChaCha20-Poly1305, a random 192-bit nonce per value), so a database dump shows none.
//!   The key id (4 bytes of the key's SHA-256) tells which key sealed a value: a start with
//!   the wrong key, or without one, is refused instead of signing with garbage.
//! - [`CacheSeal`]: entries in the shared Redis cache are encrypted and authenticated with a
//!   key every instance derives from what they already share, bound to their Redis key, so
//!   Redis never holds a readable secret and a modified or moved entry is never trusted.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::SubscriptionId;

/// Prefix of a secret encrypted at rest.
const SEALED_PREFIX: &str = "enc:v1:";
/// Bytes of a random XChaCha20 nonce.
const NONCE_BYTES: usize = 24;
/// Associated data of secrets at rest, followed by the owning subscription's id: a value
/// sealed for another purpose, or copied to another subscription's row, does not open.
const AT_REST_CONTEXT: &[u8] = b"webhookd subscription secret v1:";

fn at_rest_aad(owner: SubscriptionId) -> Vec<u8> {
    [AT_REST_CONTEXT, owner.as_uuid().as_bytes().as_slice()].concat()
}

/// A subscription secret: shown only through [`SecretValue::expose`], never by `Debug`.
#[derive(Clone, Debug)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl sqlx::Type<sqlx::Postgres> for SecretValue {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for SecretValue {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self::new(<String as sqlx::Decode<sqlx::Postgres>>::decode(value)?))
    }
}

/// Serialised only into sealed Redis entries (see [`CacheSeal`]).
impl serde::Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// A value could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("a secret is encrypted at rest but WEBHOOKD_ENCRYPTION_KEY is not set")]
    NoKey,
    #[error("a secret was encrypted with key {0}, which is neither WEBHOOKD_ENCRYPTION_KEY nor WEBHOOKD_PREVIOUS_ENCRYPTION_KEY")]
    UnknownKey(String),
    #[error("an encrypted secret is corrupt (it does not decrypt with its key)")]
    Corrupt,
}

struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| "must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!("must be 32 bytes in base64, not {} bytes (e.g. `openssl rand -base64 32`)", bytes.len()));
        }
        let digest = Sha256::digest(&bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { id, cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)) })
    }
}

/// The keys for secrets at rest: the current one seals, the previous one (during a key
/// rotation) only opens. `Debug` shows the key ids only.
pub struct Keyring {
    current: SealingKey,
    previous: Option<SealingKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Keyring {
    /// Errors name nothing: the caller knows which variable it read.
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            current: SealingKey::from_base64(current)?,
            previous: previous.map(SealingKey::from_base64).transpose()?,
        })
    }

    /// The id of the current key, as written into sealed values.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext`, a secret of subscription `owner`, with the current key.
    #[expect(clippy::expect_used, reason = "XChaCha20-Poly1305 encrypts any length that fits in memory")]
    pub fn seal(&self, owner: SubscriptionId, plaintext: &str) -> String {
        let nonce = random_nonce();
        let aad = at_rest_aad(owner);
        let payload = Payload { msg: plaintext.as_bytes(), aad: &aad };
        let ciphertext = self.current.cipher.encrypt(XNonce::from_slice(&nonce), payload).expect("XChaCha20-Poly1305 encrypts any length");
        format!("{SEALED_PREFIX}{}:{}", self.current.id, BASE64.encode([nonce.as_slice(), &ciphertext].concat()))
    }

    /// Decrypts a value written by [`Keyring::seal`] for `owner`, with the current or previous key.
    pub fn open(&self, owner: SubscriptionId, stored: &str) -> Result<String, OpenError> {
        let (key_id, encoded) = split_sealed(stored).ok_or(OpenError::Corrupt)?;
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_owned()))?;
        let bytes = BASE64.decode(encoded).map_err(|_| OpenError::Corrupt)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plaintext = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: &at_rest_aad(owner) })
            .map_err(|_| OpenError::Corrupt)?;
        String::from_utf8(plaintext).map_err(|_| OpenError::Corrupt)
    }

    /// Whether a stored value should be written again: in plaintext, or sealed with a key
    /// other than the current one.
    pub fn needs_sealing(&self, stored: &str) -> bool {
        split_sealed(stored).is_none_or(|(key_id, _)| key_id != self.current.id)
    }
}

/// Whether a stored secret is encrypted.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The plaintext of a stored secret of subscription `owner`: opened with `keyring` when
/// sealed, as is otherwise.
pub fn reveal(owner: SubscriptionId, stored: &str, keyring: Option<&Keyring>) -> Result<String, OpenError> {
    if !is_sealed(stored) {
        return Ok(stored.to_owned());
    }
    keyring.ok_or(OpenError::NoKey)?.open(owner, stored)
}

fn split_sealed(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(SEALED_PREFIX)?.split_once(':')
}

#[expect(clippy::expect_used, reason = "without the OS random source nothing can be sealed safely")]
fn random_nonce() -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).expect("the operating system provides random bytes");
    nonce
}

/// Encrypts and authenticates entries of the shared Redis cache.
pub struct CacheSeal {
    cipher: XChaCha20Poly1305,
}

impl CacheSeal {
    /// A key derived from `shared` (the encryption key's bytes when set, else the admin
    /// token): every instance that shares it derives the same key, and the derivation keeps
    /// this key apart from any other use of `shared`.
    #[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
    pub fn derive(shared: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(shared).expect("HMAC accepts keys of any length");
        mac.update(b"webhookd redis cache entries v1");
        let key = mac.finalize().into_bytes();
        Self { cipher: XChaCha20Poly1305::new(&key) }
    }

    /// Seals `plaintext` for the Redis key `name` (an entry moved to another key does not open).
    #[expect(clippy::expect_used, reason = "XChaCha20-Poly1305 encrypts any length that fits in memory")]
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = random_nonce();
        let payload = Payload { msg: plaintext, aad: name.as_bytes() };
        let ciphertext = self.cipher.encrypt(XNonce::from_slice(&nonce), payload).expect("XChaCha20-Poly1305 encrypts any length");
        [nonce.as_slice(), &ciphertext].concat()
    }

    /// The plaintext of an entry sealed for `name`, or `None` if it was modified, moved or
    /// sealed with another key.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: name.as_bytes() }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const OTHER: &str = "HxYdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn owner() -> SubscriptionId {
        Uuid::from_u128(1).into()
    }

    #[test]
    fn secrets_at_rest_round_trip_and_say_which_key_sealed_them() {
        let keyring = Keyring::new(KEY, None).unwrap();
        let sealed = keyring.seal(owner(), "whsec_c2VjcmV0");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", keyring.key_id())));
        assert!(!sealed.contains("c2VjcmV0"));
        assert_ne!(sealed, keyring.seal(owner(), "whsec_c2VjcmV0"), "a fresh nonce each time");
        assert_eq!(keyring.open(owner(), &sealed).unwrap(), "whsec_c2VjcmV0");
        assert!(matches!(keyring.open(Uuid::from_u128(2).into(), &sealed), Err(OpenError::Corrupt)), "copied to another subscription");
        assert!(!keyring.needs_sealing(&sealed));
        assert!(keyring.needs_sealing("plain-secret"));

        let other = Keyring::new(OTHER, None).unwrap();
        assert!(matches!(other.open(owner(), &sealed), Err(OpenError::UnknownKey(_))));
        assert!(matches!(reveal(owner(), &sealed, None), Err(OpenError::NoKey)));
        assert_eq!(reveal(owner(), "plain", None).unwrap(), "plain");

        // After a key rotation the previous key still opens, and the value wants resealing.
        let rotated = Keyring::new(OTHER, Some(KEY)).unwrap();
        assert_eq!(rotated.open(owner(), &sealed).unwrap(), "whsec_c2VjcmV0");
        assert!(rotated.needs_sealing(&sealed));
    }

    #[test]
    fn a_tampered_secret_does_not_open() {
        let keyring = Keyring::new(KEY, None).unwrap();
        let sealed = keyring.seal(owner(), "a-secret-value");
        let mut bytes = BASE64.decode(sealed.rsplit(':').next().unwrap()).unwrap();
        bytes[30] ^= 1;
        let tampered = format!("enc:v1:{}:{}", keyring.key_id(), BASE64.encode(bytes));
        assert!(matches!(keyring.open(owner(), &tampered), Err(OpenError::Corrupt)));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Keyring::new("c2hvcnQ=", None).unwrap_err().contains("32 bytes"));
        assert!(Keyring::new("not base64!", None).is_err());
    }

    #[test]
    fn cache_entries_open_only_unmodified_under_their_own_name_and_key() {
        let seal = CacheSeal::derive(b"shared by every instance");
        let sealed = seal.seal("webhookd:subscription:1", b"{\"target_url\":\"https://a\"}");
        assert_eq!(seal.open("webhookd:subscription:1", &sealed).unwrap(), b"{\"target_url\":\"https://a\"}");
        assert!(seal.open("webhookd:subscription:2", &sealed).is_none(), "moved to another id");
        let mut modified = sealed.clone();
        *modified.last_mut().unwrap() ^= 1;
        assert!(seal.open("webhookd:subscription:1", &modified).is_none());
        assert!(CacheSeal::derive(b"another key").open("webhookd:subscription:1", &sealed).is_none());
    }

    #[test]
    fn secret_values_do_not_print() {
        assert!(!format!("{:?}", SecretValue::new("hunter2-secret")).contains("hunter2"));
    }
}
