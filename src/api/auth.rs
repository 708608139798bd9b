//! Bearer-token authentication of API clients, compared in constant time.

use std::sync::Arc;

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// The admin token, put in each request's data in front of the routes (front.rs); shared,
/// so that no request copies the secret.
#[derive(Clone)]
pub struct AdminToken(pub Arc<Secret>);

/// `Authorization: Bearer <admin token>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_admin_token")]
pub struct AdminAuth(());

async fn check_admin_token(request: &Request, bearer: Bearer) -> Option<()> {
    let expected = request.data::<AdminToken>()?;
    tokens_match(expected.0.expose(), &bearer.token).then_some(())
}

/// Compares without revealing, through timing, how much of the token was right.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(tokens_match("s3cret-token-123", "s3cret-token-123"));
        assert!(!tokens_match("s3cret-token-123", "s3cret-token-12"));
        assert!(!tokens_match("s3cret-token-123", ""));
    }
}
