//! The operator dashboard at `/ui` and the subscriber portal at `/portal/{link}`: HTML
//! rendered by the server (maud, checked at compile time, escaping by default) over the
//! same domain types and `db/` functions as the API. No JavaScript: every page is a plain
//! GET URL and every change a form POST, checked against cross-site requests.
//!
//! - [`session`]: logging in with the admin token, sessions as rows, the cookie.
//! - [`guard`]: cross-site request refusal and the security headers.
//! - [`operator`]: the dashboard's pages; [`portal`]: the portal's.
//! - [`views`]: the layout and the parts both share; [`chart`]: the SVG chart.
//! - [`portal_link`]: signing and checking portal links.

mod chart;
mod guard;
mod operator;
mod portal;
pub mod portal_link;
mod session;
mod views;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, Request, Response};
use sha2::{Digest, Sha256};

use crate::api::ApiContext;
use crate::config::{Secret, Settings};
use crate::error::ApiError;

/// The stylesheet, compiled into the binary.
const CSS: &str = include_str!("static/app.css");

/// What every dashboard and portal handler may use.
#[derive(Clone)]
pub(crate) struct UiContext {
    api: ApiContext,
    admin_token: Secret,
    /// The overview's figures, computed at most every few seconds however often it is viewed.
    overview: moka::future::Cache<(), Arc<operator::Overview>>,
    /// `/ui/static/app-<hash>.css`: a new name for every new stylesheet, so it can be cached forever.
    css_path: Arc<str>,
}

impl UiContext {
    fn secure_cookies(&self) -> bool {
        let settings = &self.api.settings.http;
        settings.secure_cookies || settings.public_url.as_ref().is_some_and(|url| url.scheme() == "https")
    }
}

/// The dashboard's routes (under `/ui`) and the portal's (under `/portal`).
pub fn routes(context: ApiContext, admin_token: Secret) -> (impl Endpoint<Output = Response>, impl Endpoint<Output = Response>) {
    let hash = Sha256::digest(CSS.as_bytes());
    let css_path: Arc<str> = format!("/ui/static/app-{:02x}{:02x}{:02x}{:02x}.css", hash[0], hash[1], hash[2], hash[3]).into();
    let ui = UiContext {
        api: context,
        admin_token,
        overview: moka::future::Cache::builder()
            .name("dashboard overview")
            .max_capacity(1)
            .time_to_live(std::time::Duration::from_secs(5))
            .build(),
        css_path,
    };
    let dashboard = operator::routes()
        .at("/static/:name", poem::get(stylesheet))
        .with(guard::security_headers())
        .data(ui.clone());
    let portal = portal::routes().with(guard::security_headers()).data(ui);
    (dashboard, portal)
}

/// The URL of a portal link: under `WEBHOOKD_PUBLIC_URL`, else the origin the request came to.
pub fn portal_url(settings: &Settings, request: &Request, token: &str) -> String {
    let base = match &settings.http.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{}", request.header("host").unwrap_or("localhost")),
    };
    format!("{base}/portal/{token}")
}

/// Serves the stylesheet under its content-hashed name, cached for a year.
#[poem::handler]
async fn stylesheet(name: poem::web::Path<String>, context: poem::web::Data<&UiContext>) -> Response {
    if !context.css_path.ends_with(&format!("/{}", name.0)) {
        return Response::builder().status(StatusCode::NOT_FOUND).body("no such file");
    }
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header("cache-control", "public, max-age=31536000, immutable")
        .body(CSS)
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum UiError {
    /// Not logged in: the login form is shown instead.
    Login,
    /// A cross-site POST, or a link that does not open this.
    Forbidden(String),
    NotFound(&'static str),
    /// An API operation refused (validation, state) or failed (database): its message.
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<sqlx::Error> for UiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Api(ApiError::from(error))
    }
}

/// An API error's status and message, for showing on a page.
pub(crate) fn api_error_parts(error: &ApiError) -> (StatusCode, String) {
    let (status, body) = match error {
        ApiError::BadRequest(b) => (StatusCode::BAD_REQUEST, b),
        ApiError::Unauthorized(b) => (StatusCode::UNAUTHORIZED, b),
        ApiError::NotFound(b) => (StatusCode::NOT_FOUND, b),
        ApiError::RequestTimeout(b) => (StatusCode::REQUEST_TIMEOUT, b),
        ApiError::Conflict(b) => (StatusCode::CONFLICT, b),
        ApiError::PayloadTooLarge(b) => (StatusCode::PAYLOAD_TOO_LARGE, b),
        ApiError::Internal(b) => (StatusCode::INTERNAL_SERVER_ERROR, b),
        ApiError::Unavailable(b) => (StatusCode::SERVICE_UNAVAILABLE, b),
    };
    (status, body.0.message.clone())
}

/// An HTML page that is never cached (pages show secrets once, and portal links).
pub(crate) fn html(status: StatusCode, markup: maud::Markup) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(markup.into_string())
}

/// After a successful POST: go to `location` with GET (so a reload does not post again).
pub(crate) fn see_other(location: &str) -> Response {
    Response::builder().status(StatusCode::SEE_OTHER).header("location", location).finish()
}
