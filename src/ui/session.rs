//! Logging in to the dashboard with the admin token, and the session that follows.
//!
//! A session is a row (`ui_sessions`, see migration 30 for why) named by 32 random bytes
//! carried in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`, `Secure` when
//! configured or when the public URL is https. It lasts 12 hours; "Log out" deletes the row,
//! so the cookie is dead everywhere at once. Each row also holds a fingerprint of the admin
//! token it was opened with (keyed with the shared random key, so the table is no oracle
//! for the token): replacing a leaked admin token ends every session.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use poem::http::StatusCode;
use poem::web::{Data, Form};
use poem::{handler, Request, Response};
use sha2::{Digest, Sha256};

use super::guard::check_same_origin;
use super::{html, see_other, views, UiContext, UiError};
use crate::api::tokens_match;
use crate::db::ui_sessions;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "webhookd_session";
/// How long a session lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Ok if the request carries a live session.
pub(crate) async fn require_operator(context: &UiContext, request: &Request) -> Result<(), UiError> {
    let Some(token) = session_token(request) else { return Err(UiError::Login) };
    let fingerprint = context.api.portal_links.signer().await?.admin_fingerprint();
    if ui_sessions::is_live(&context.api.pool, &hash(&token), &fingerprint).await? {
        Ok(())
    } else {
        Err(UiError::Login)
    }
}

/// The login form's fields.
#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    /// The dashboard page to return to.
    #[serde(default)]
    next: String,
}

/// `POST /ui/login`: the admin token, compared in constant time, starts a session.
#[handler]
pub(crate) async fn login(request: &Request, context: Data<&UiContext>, form: Form<LoginForm>) -> Response {
    if let Err(error) = check_same_origin(request, &context.api.settings) {
        return super::operator::error_page(request, &context, error);
    }
    let next = safe_next(&form.next);
    if !tokens_match(context.admin_token.expose(), &form.token) {
        tracing::warn!("dashboard login with a wrong token");
        return html(StatusCode::UNAUTHORIZED, views::login_page(&context.css_path, next, Some("That token is not the admin token.")));
    }
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        return super::operator::error_page(request, &context, UiError::Forbidden("no randomness available".into()));
    }
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let pool = &context.api.pool;
    let started = async {
        let fingerprint = context.api.portal_links.signer().await?.admin_fingerprint();
        ui_sessions::delete_expired(pool).await?;
        ui_sessions::insert(pool, &hash(&token), LIFETIME.as_secs_f64(), &fingerprint).await
    };
    if let Err(error) = started.await {
        return super::operator::error_page(request, &context, error.into());
    }
    tracing::info!("dashboard login");
    let mut response = see_other(next);
    response.headers_mut().append("set-cookie", cookie(&token, LIFETIME.as_secs(), context.secure_cookies()));
    response
}

/// `POST /ui/logout`: ends the session (the row, and the cookie).
#[handler]
pub(crate) async fn logout(request: &Request, context: Data<&UiContext>) -> Response {
    if let Err(error) = check_same_origin(request, &context.api.settings) {
        return super::operator::error_page(request, &context, error);
    }
    if let Some(token) = session_token(request)
        && let Err(error) = ui_sessions::delete(&context.api.pool, &hash(&token)).await
    {
        return super::operator::error_page(request, &context, error.into());
    }
    let mut response = see_other("/ui");
    response.headers_mut().append("set-cookie", cookie("", 0, context.secure_cookies()));
    response
}

/// The `Set-Cookie` value for `token`, living `max_age` seconds (0 deletes it).
fn cookie(token: &str, max_age: u64, secure: bool) -> poem::http::HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!("{COOKIE}={token}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // The token is base64url: always a valid header value.
    poem::http::HeaderValue::from_str(&value).unwrap_or_else(|_| poem::http::HeaderValue::from_static(""))
}

/// The session token in the request's cookies, if any.
fn session_token(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// What is stored of a token.
fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Where to go after logging in: a dashboard path only, never another site.
pub(crate) fn safe_next(next: &str) -> &str {
    let is_dashboard = (next == "/ui" || next.starts_with("/ui/") || next.starts_with("/ui?"))
        && !next.contains("//")
        && !next.contains('\\');
    if is_dashboard { next } else { "/ui" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dashboard_paths_are_returned_to() {
        assert_eq!(safe_next("/ui/deliveries?status=failed"), "/ui/deliveries?status=failed");
        assert_eq!(safe_next("https://evil.example/ui"), "/ui");
        assert_eq!(safe_next("//evil.example"), "/ui");
        assert_eq!(safe_next("/ui//evil.example"), "/ui");
        assert_eq!(safe_next("/uix"), "/ui");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_dashboard() {
        let value = cookie("abc", 43200, true);
        assert_eq!(value.to_str().unwrap(), "webhookd_session=abc; Path=/ui; Max-Age=43200; HttpOnly; SameSite=Strict; Secure");
    }
}
