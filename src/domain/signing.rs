//! Webhook signatures, both ways.
//!
//! Outbound (receivers verify us): Standard Webhooks, `webhook-signature: v1,<base64 of
//! HMAC-SHA256("{id}.{timestamp}.{body}")>`, keyed with the decoded bytes of a `whsec_`
//! secret (as the official libraries expect) or else the secret's UTF-8 bytes; plus GitHub's
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` keyed with the secret's bytes.
//!
//! Inbound (producers prove who they are): Standard Webhooks over `{id}.{timestamp}.{body}`
//! (recommended: the timestamp bounds replays), or the GitHub scheme over the exact body.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of secrets in the Standard Webhooks format.
pub const WHSEC_PREFIX: &str = "whsec_";

#[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The key Standard Webhooks signatures use for `secret`.
pub fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(WHSEC_PREFIX)
        .and_then(|encoded| BASE64.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// One `v1,<base64>` signature of a delivery attempt.
pub fn standard_webhooks_signature(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = standard_webhooks_key(secret);
    let timestamp = timestamp.to_string();
    let digest = hmac(&key, &[message_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(digest))
}

/// Checks a `webhook-signature` header (space-separated `v1,<base64>` entries; other
/// versions are ignored) against `{id}.{timestamp}.{body}` in constant time.
pub fn verify_standard_webhooks_signature(secret: &str, message_id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let key = standard_webhooks_key(secret);
    let expected = hmac(&key, &[message_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .any(|given| given.len() == expected.len() && bool::from(given.as_slice().ct_eq(&expected)))
}

/// The `X-Hub-Signature-256` value for `body`: `sha256=<lower-case hex>`.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    let digest = hmac(secret.as_bytes(), &[body]);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Checks an `X-Hub-Signature-256` header against `body` in constant time. Hex digits may
/// be upper- or lower-case.
pub fn verify_hub_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=").and_then(decode_hex) else {
        return false;
    };
    let expected = hmac(secret.as_bytes(), &[body]);
    given.len() == expected.len() && bool::from(given.as_slice().ct_eq(&expected))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new `whsec_` secret: 32 random bytes, base64.
#[expect(clippy::expect_used, reason = "without the OS random source no secret can be made")]
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    format!("{WHSEC_PREFIX}{}", BASE64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signatures_verify_among_several_and_reject_tampering() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let good = standard_webhooks_signature(secret, "msg_1", 1_700_000_000, b"{}");
        let header = format!("v1,bm90LXRoaXMtb25l v1a,ignored {good}");
        assert!(verify_standard_webhooks_signature(secret, "msg_1", "1700000000", b"{}", &header));
        assert!(!verify_standard_webhooks_signature(secret, "msg_2", "1700000000", b"{}", &header), "another id");
        assert!(!verify_standard_webhooks_signature(secret, "msg_1", "1700000001", b"{}", &header), "another time");
        assert!(!verify_standard_webhooks_signature(secret, "msg_1", "1700000000", b"{ }", &header), "another body");
        assert!(!verify_standard_webhooks_signature("whsec_b3RoZXI=", "msg_1", "1700000000", b"{}", &header));
        assert!(!verify_standard_webhooks_signature(secret, "msg_1", "1700000000", b"{}", "v1,!!!"));
    }

    #[test]
    fn standard_webhooks_reference_vector_matches() {
        // The example from the Standard Webhooks specification's reference libraries.
        let signature = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_without_the_prefix_are_used_as_bytes() {
        assert_eq!(standard_webhooks_key("plain-secret"), b"plain-secret");
        assert_eq!(standard_webhooks_key("whsec_not base64!"), b"whsec_not base64!");
    }

    #[test]
    fn hub_signatures_verify_in_either_case_and_reject_tampering() {
        let header = hub_signature("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(header, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert!(verify_hub_signature("It's a Secret to Everybody", b"Hello, World!", &header));
        assert!(verify_hub_signature("It's a Secret to Everybody", b"Hello, World!", &header.to_uppercase().replace("SHA256=", "sha256=")));
        assert!(!verify_hub_signature("It's a Secret to Everybody", b"Hello, World?", &header));
        assert!(!verify_hub_signature("wrong", b"Hello, World!", &header));
        assert!(!verify_hub_signature("It's a Secret to Everybody", b"Hello, World!", "sha256=zz"));
        assert!(!verify_hub_signature("It's a Secret to Everybody", b"Hello, World!", ""));
    }

    #[test]
    fn generated_secrets_decode_to_32_bytes() {
        let secret = generate_secret();
        assert_eq!(standard_webhooks_key(&secret).len(), 32);
        assert_ne!(secret, generate_secret());
    }
}
