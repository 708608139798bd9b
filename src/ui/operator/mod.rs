//! The dashboard's pages, for operators logged in with the admin token. Each page is a
//! plain GET URL (filters in the query string, so it can be bookmarked); each change is a
//! POST checked by `guard::check_same_origin` before the session, then redirected to a GET.
//!
//! What each page reads (see also the README's "Dashboard" section):
//! - overview: `finished_per_minute` (last hour of `deliveries_finished_idx`), `queue_depth`
//!   (the rows of the partial indexes of unfinished deliveries), `list_troubled` (≤ 50 subscriptions); cached 5 s.
//! - subscriptions: one page (≤ 50) by primary key, or by the name search index.
//! - a subscription: its row, ≤ 20 deliveries and ≤ 100 attempts through their
//!   subscription indexes.
//! - deliveries: ≤ 50 rows walking the primary key backwards (see `list_deliveries.sql`).
//! - a delivery: its row, its body, its attempts (`attempts_delivery_idx`), its subscription.

mod deliveries;
mod overview;
mod subscriptions;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::{get, post, Request, Response, Route};
use serde::Deserialize;

use super::session;
use super::views::{self, Nav, Section};
use super::{api_error_parts, html, UiContext, UiError};

pub(crate) use deliveries::{delivery_sections, load_delivery, DeliveryDetail};
pub(crate) use overview::Overview;
pub(crate) use subscriptions::{load_subscription, secret_shown_once, send_test_event, subscription_sections, ActionForm};

/// Rows per list page.
const PAGE: i64 = 50;

pub(super) fn routes() -> Route {
    Route::new()
        .at("/", get(overview::overview))
        .at("/login", post(session::login))
        .at("/logout", post(session::logout))
        .at("/subscriptions", get(subscriptions::subscriptions_page).post(subscriptions::create_subscription))
        .at("/subscriptions/:id", get(subscriptions::subscription_page))
        .at("/subscriptions/:id/:action", post(subscriptions::subscription_action))
        .at("/deliveries", get(deliveries::deliveries_page))
        .at("/deliveries/:id", get(deliveries::delivery_page))
        .at("/deliveries/:id/retry", post(deliveries::retry_delivery))
}

/// The page for an error: the login form when not logged in, else a message.
pub(super) fn error_page(request: &Request, context: &UiContext, error: UiError) -> Response {
    let css = &context.css_path;
    match error {
        UiError::Login => {
            // The original URI: routing under /ui strips the prefix from `uri()`.
            let next = request.original_uri().path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
            let next = if request.method() == poem::http::Method::GET { session::safe_next(next) } else { "/ui" };
            html(StatusCode::OK, views::login_page(css, next, None))
        }
        UiError::Forbidden(message) => html(StatusCode::FORBIDDEN, views::message_page(css, Nav::None, "Forbidden", &message)),
        UiError::NotFound(what) => html(StatusCode::NOT_FOUND, views::message_page(css, Nav::Operator(Section::Overview), "Not found", what)),
        UiError::Api(error) => {
            let (status, message) = api_error_parts(&error);
            html(status, views::message_page(css, Nav::Operator(Section::Overview), "That did not work", &message))
        }
    }
}

fn respond(request: &Request, context: &UiContext, result: Result<Response, UiError>) -> Response {
    result.unwrap_or_else(|error| error_page(request, context, error))
}

fn parse_id<Id: std::str::FromStr>(text: &str, what: &'static str) -> Result<Id, UiError> {
    text.parse().map_err(|_| UiError::NotFound(what))
}

/// Messages shown after a change; the query string names one, so no text is reflected.
fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "created" => "Subscription created.",
        "saved" => "Changes saved.",
        "paused" => "Subscription paused: its deliveries wait until it is resumed.",
        "resumed" => "Subscription resumed.",
        "deleted" => "Subscription deleted.",
        "test-sent" => "Test event queued: it appears below in a moment.",
        "retried" => "Delivery re-queued: it will be attempted shortly.",
        "revoked" => "Every portal link issued so far is revoked.",
        "target" => "Target URL changed.",
        _ => return None,
    })
}

fn flash(code: Option<&str>) -> Markup {
    html! { @if let Some(message) = done_message(code) { p.flash role="status" { (message) } } }
}


/// `?done=<code>` after a change.
#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}
