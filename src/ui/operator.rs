//! The dashboard's pages, for operators logged in with the admin token. Each page is a
//! plain GET URL (filters in the query string, so it can be bookmarked); each change is a
//! POST checked by [`check_same_origin`] before the session, then redirected to a GET.
//!
//! What each page reads (see also the README's "Dashboard" section):
//! - overview: `finished_per_minute` (last hour of `deliveries_finished_idx`), `queue_depth`
//!   (the rows of `deliveries_due_idx`), `list_troubled` (≤ 50 subscriptions); cached 5 s.
//! - subscriptions: one page (≤ 50) by primary key, or by the name search index.
//! - a subscription: its row, ≤ 20 deliveries and ≤ 100 attempts through their
//!   subscription indexes.
//! - deliveries: ≤ 50 rows walking the primary key backwards (see `list_deliveries.sql`).
//! - a delivery: its row, its body, its attempts (`attempts_delivery_idx`), its subscription.

use std::sync::Arc;

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{get, handler, post, Request, Response, Route};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::guard::check_same_origin;
use super::session::{self, require_operator};
use super::views::{self, Nav, Section};
use super::{api_error_parts, chart, html, see_other, UiContext, UiError};
use crate::api::deliveries::DeliveriesApi;
use crate::api::subscriptions::{fields_of, SubscriptionsApi};
use crate::db::attempts::{self, AttemptRow};
use crate::db::deliveries::{self, DeliveryFilter, DeliveryRow, QueueDepth};
use crate::db::subscriptions::{self, StateFilter, SubscriptionFields, SubscriptionRow, TroubledSubscription};
use crate::domain::lifecycle::DeliveryStatus;
use crate::error::ApiError;

/// Rows per list page.
const PAGE: i64 = 50;
/// Most bytes of a payload shown on a delivery's page.
const PAYLOAD_SHOWN: usize = 256 * 1024;

pub(super) fn routes() -> Route {
    Route::new()
        .at("/", get(overview))
        .at("/login", post(session::login))
        .at("/logout", post(session::logout))
        .at("/subscriptions", get(subscriptions_page).post(create_subscription))
        .at("/subscriptions/:id", get(subscription_page))
        .at("/subscriptions/:id/:action", post(subscription_action))
        .at("/deliveries", get(deliveries_page))
        .at("/deliveries/:id", get(delivery_page))
        .at("/deliveries/:id/retry", post(retry_delivery))
}

/// The page for an error: the login form when not logged in, else a message.
pub(super) fn error_page(request: &Request, context: &UiContext, error: UiError) -> Response {
    let css = &context.css_path;
    match error {
        UiError::Login => {
            let next = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
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

fn parse_id(text: &str, what: &'static str) -> Result<Uuid, UiError> {
    Uuid::parse_str(text).map_err(|_| UiError::NotFound(what))
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

// ----- Overview -------------------------------------------------------------------------

/// The overview's figures.
pub(crate) struct Overview {
    bars: Vec<(i64, i64)>,
    queue: QueueDepth,
    troubled: Vec<TroubledSubscription>,
    computed_at: OffsetDateTime,
}

async fn load_overview(context: &UiContext) -> Result<Arc<Overview>, UiError> {
    let pool = context.api.pool.clone();
    let loaded = context
        .overview
        .try_get_with((), async move {
            let counts = deliveries::finished_per_minute(&pool).await?;
            let queue = deliveries::queue_depth(&pool).await?;
            let troubled = subscriptions::list_troubled(&pool, 50).await?;
            let now = OffsetDateTime::now_utc();
            Ok::<_, sqlx::Error>(Arc::new(Overview { bars: chart::buckets(&counts, now), queue, troubled, computed_at: now }))
        })
        .await;
    loaded.map_err(|error| UiError::Api(ApiError::from_database(&error)))
}

#[handler]
async fn overview(request: &Request, context: Data<&UiContext>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let data = load_overview(&context).await?;
        let succeeded: i64 = data.bars.iter().map(|b| b.0).sum();
        let failed: i64 = data.bars.iter().map(|b| b.1).sum();
        let rate = if succeeded + failed > 0 { format!("{:.1} %", 100.0 * succeeded as f64 / (succeeded + failed) as f64) } else { "–".into() };
        let body = html! {
            h1 { "Overview" }
            div.tiles {
                div.tile { span.tile-label { "Success rate, last hour" } span.tile-value { (rate) } span.muted { (succeeded) " succeeded, " (failed) " failed" } }
                div.tile { span.tile-label { "Queued" } span.tile-value { (data.queue.queued) } a href="/ui/deliveries?status=queued" { "see them" } }
                div.tile { span.tile-label { "Retrying" } span.tile-value { (data.queue.retrying) } a href="/ui/deliveries?status=retrying" { "see them" } }
                div.tile { span.tile-label { "Delivering" } span.tile-value { (data.queue.delivering) } }
                div.tile { span.tile-label { "Oldest due delivery waiting" } span.tile-value { (views::age(data.queue.oldest_due_age_seconds)) } }
            }
            section.card {
                h2 { "Deliveries per minute" }
                p.legend { span.key.ok {} "succeeded " span.key.failed {} "failed" }
                (chart::render(&data.bars))
                p.muted { "As of " (views::time(data.computed_at)) " (refreshed at most every 5 seconds)." }
            }
            section.card {
                h2 { "Failing or disabled subscriptions" }
                @if data.troubled.is_empty() {
                    p.muted { "None: every subscription's last attempt succeeded." }
                } @else {
                    div.scroll { table {
                        thead { tr { th scope="col" { "Subscription" } th scope="col" { "Target" } th scope="col" { "State" } th scope="col" { "Since" } } }
                        tbody { @for s in &data.troubled {
                            tr {
                                td { a href={ "/ui/subscriptions/" (s.id) } { (s.name.as_deref().unwrap_or("(unnamed)")) } }
                                td.clip { (s.target_url) }
                                td { @match s.disabled_reason {
                                    Some(reason) => span.badge.bad { "disabled: " (reason.as_str()) },
                                    None => span.badge.warn { "failing (" (s.failed_in_streak) " attempts)" },
                                } }
                                td { (views::optional_time(s.disabled_at.or(s.failing_since))) }
                            }
                        } }
                    } }
                }
            }
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, "Overview", Nav::Operator(Section::Overview), body)))
    }
    .await;
    respond(request, &context, result)
}

// ----- Subscriptions --------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    state: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

/// The create form's fields (also what it shows again after a refusal).
#[derive(Deserialize, Default, Clone)]
pub(super) struct CreateForm {
    #[serde(default)]
    target_url: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    event_types: String,
    #[serde(default)]
    secret_key: String,
}

#[handler]
async fn subscriptions_page(request: &Request, context: Data<&UiContext>, query: Query<ListQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        list_subscriptions(&context, &query, &CreateForm::default(), None, StatusCode::OK).await
    }
    .await;
    respond(request, &context, result)
}

async fn list_subscriptions(
    context: &UiContext,
    query: &ListQuery,
    form: &CreateForm,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, UiError> {
    let state = query.state.as_deref().and_then(StateFilter::parse);
    let after = query.after.as_deref().and_then(|a| Uuid::parse_str(a).ok());
    let search = query.q.as_deref().unwrap_or("").trim();
    let pool = &context.api.pool;
    let mut rows = match subscriptions::name_query(search) {
        Some(name_query) => subscriptions::search(pool, &name_query, state, after, PAGE + 1).await?,
        None => subscriptions::list_in_state(pool, state, after, PAGE + 1).await?,
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let next = more.then(|| rows.last().map(|r| r.id)).flatten().map(|last| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        if !search.is_empty() {
            url.append_pair("q", search);
        }
        if let Some(state) = state {
            url.append_pair("state", state.as_str());
        }
        url.append_pair("after", &last.to_string());
        format!("/ui/subscriptions?{}", url.finish())
    });
    let selected = |value: &str| state.map(StateFilter::as_str) == Some(value);
    let body = html! {
        h1 { "Subscriptions" }
        (flash(query.done.as_deref()))
        form.filters method="get" action="/ui/subscriptions" role="search" {
            div { label for="q" { "Search by name" } input #q type="search" name="q" value=(search); }
            div { label for="state" { "State" }
                select #state name="state" {
                    option value="" { "All" }
                    option value="active" selected[selected("active")] { "Active" }
                    option value="paused" selected[selected("paused")] { "Paused" }
                    option value="disabled" selected[selected("disabled")] { "Disabled" }
                }
            }
            button type="submit" { "Search" }
        }
        @if rows.is_empty() { p.muted { "No subscriptions match." } } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Target URL" } th scope="col" { "Event types" } th scope="col" { "State" } } }
                tbody { @for row in &rows { tr {
                    td { a href={ "/ui/subscriptions/" (row.id) } { (display_name(row)) } }
                    td.clip { (row.target_url) }
                    td { (event_types_text(&row.event_types)) }
                    td { (state_badge(row)) }
                } } }
            } }
        }
        @if let Some(next) = next { p { a href=(next) { "Next page" } } }
        section.card #create {
            h2 { "New subscription" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form.stack method="post" action="/ui/subscriptions" {
                label for="target_url" { "Target URL" }
                input #target_url type="url" name="target_url" value=(form.target_url) required placeholder="https://example.com/webhooks";
                label for="name" { "Name" }
                input #name type="text" name="name" value=(form.name) maxlength="200";
                label for="event_types" { "Event types (comma-separated; empty: all)" }
                input #event_types type="text" name="event_types" value=(form.event_types) placeholder="order.created, invoice.*";
                label for="secret_key" { "Secret key (optional, 8 to 256 characters)" }
                input #secret_key type="password" name="secret_key" autocomplete="new-password";
                button type="submit" { "Create subscription" }
            }
        }
    };
    Ok(html(status, views::page(&context.css_path, "Subscriptions", Nav::Operator(Section::Subscriptions), body)))
}

#[handler]
async fn create_subscription(request: &Request, context: Data<&UiContext>, form: Form<CreateForm>) -> Response {
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        require_operator(&context, request).await?;
        let form = form.0;
        let fields = SubscriptionFields {
            name: Some(form.name.trim().to_owned()).filter(|n| !n.is_empty()),
            target_url: form.target_url.trim().to_owned(),
            secret_key: Some(form.secret_key.clone()).filter(|s| !s.is_empty()),
            event_types: split_event_types(&form.event_types),
            is_active: true,
            rate_limit: None,
            github_signature: false,
        };
        match SubscriptionsApi::new(context.api.clone()).create_row(fields).await {
            Ok(row) => Ok(see_other(&format!("/ui/subscriptions/{}?done=created", row.id))),
            Err(error) => {
                let (status, message) = api_error_parts(&error);
                list_subscriptions(&context, &ListQuery::default(), &CreateForm { secret_key: String::new(), ..form }, Some(&message), status).await
            }
        }
    }
    .await;
    respond(request, &context, result)
}

fn split_event_types(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

fn display_name(row: &SubscriptionRow) -> &str {
    row.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("(unnamed)")
}

fn event_types_text(types: &[String]) -> String {
    if types.is_empty() { "all".into() } else { types.join(", ") }
}

pub(super) fn state_badge(row: &SubscriptionRow) -> Markup {
    html! {
        @if let Some(reason) = row.disabled_reason { span.badge.bad { "disabled: " (reason.as_str()) } }
        @else if row.is_active { span.badge.ok { "active" } }
        @else { span.badge.muted { "paused" } }
    }
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}

/// Reads a live subscription with its recent deliveries and attempts.
pub(super) async fn load_subscription(context: &UiContext, id: Uuid) -> Result<(SubscriptionRow, Vec<DeliveryRow>, Vec<AttemptRow>), UiError> {
    let pool = &context.api.pool;
    let row = subscriptions::select(pool, id)
        .await?
        .filter(|row| row.deleted_at.is_none())
        .ok_or(UiError::NotFound("There is no subscription with this id (it may have been deleted)."))?;
    let recent = deliveries::list_for_subscription(pool, id, None, 20).await?;
    let attempts = attempts::list_for_subscription(pool, id, 100).await?;
    Ok((row, recent, attempts))
}

/// The parts of a subscription's page that operators and the portal share: details, stats,
/// "Send test event", "Rotate secret", recent deliveries and attempts. `base` is the URL
/// its actions post under; `delivery_link` gives a delivery's page.
pub(super) fn subscription_sections(
    row: &SubscriptionRow,
    recent: &[DeliveryRow],
    attempts: &[AttemptRow],
    base: &str,
    delivery_link: &dyn Fn(Uuid) -> String,
) -> Markup {
    let stats = views::attempt_stats(attempts);
    html! {
        section.card {
            h2 { "Details" }
            dl.details {
                dt { "Id" } dd { code { (row.id) } }
                dt { "Target URL" } dd.clip { (row.target_url) }
                dt { "Event types" } dd { (event_types_text(&row.event_types)) }
                dt { "State" } dd { (state_badge(row)) }
                dt { "Signing secret" } dd { @if row.secret_key.is_some() { "set (never shown)" } @else { "none: deliveries are not signed" } }
                dt { "Created" } dd { (views::time(row.created_at)) }
                @if let Some(stats) = stats {
                    dt { "Success rate" } dd { (format!("{:.1} %", stats.success_rate * 100.0)) " of the last " (stats.attempts) " attempts" }
                    dt { "Latency" } dd { "median " (stats.p50_ms) " ms, 95th percentile " (stats.p95_ms) " ms" }
                }
            }
            div.actions {
                form method="post" action={ (base) "/test-event" } { button type="submit" { "Send test event" } }
                form method="post" action={ (base) "/rotate-secret" } { button type="submit" { "Rotate secret" } }
            }
        }
        section.card {
            h2 { "Recent deliveries" }
            (views::deliveries_table(recent, &|d: &DeliveryRow| delivery_link(d.id), false))
        }
        section.card {
            h2 { "Recent attempts" }
            (views::attempts_table(&attempts[..attempts.len().min(20)], Some(&|a: &AttemptRow| delivery_link(a.delivery_id))))
        }
    }
}

#[handler]
async fn subscription_page(request: &Request, context: Data<&UiContext>, id: Path<String>, query: Query<DoneQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let id = parse_id(&id, "There is no subscription with this id.")?;
        let (row, recent, attempts) = load_subscription(&context, id).await?;
        let base = format!("/ui/subscriptions/{id}");
        let body = html! {
            p.crumbs { a href="/ui/subscriptions" { "Subscriptions" } " / " }
            h1 { (display_name(&row)) }
            (flash(query.done.as_deref()))
            (subscription_sections(&row, &recent, &attempts, &base, &|d| format!("/ui/deliveries/{d}")))
            p { a href={ "/ui/deliveries?subscription_id=" (id) } { "All of its deliveries" } }
            section.card {
                h2 { "Edit" }
                form.stack method="post" action={ (base) "/edit" } {
                    label for="name" { "Name" }
                    input #name type="text" name="name" value=(row.name.as_deref().unwrap_or("")) maxlength="200";
                    label for="target_url" { "Target URL" }
                    input #target_url type="url" name="target_url" value=(row.target_url) required;
                    label for="event_types" { "Event types (comma-separated; empty: all)" }
                    input #event_types type="text" name="event_types" value=(row.event_types.join(", "));
                    button type="submit" { "Save changes" }
                }
                div.actions {
                    @if row.is_active {
                        form method="post" action={ (base) "/pause" } { button type="submit" { "Pause" } }
                    } @else {
                        form method="post" action={ (base) "/resume" } { button type="submit" { "Resume" } }
                    }
                }
            }
            section.card {
                h2 { "Subscriber portal" }
                p { "A portal link lets the receiver see this subscription's deliveries, retry them, send a test event, rotate the secret and change the target URL, and nothing else, until it expires." }
                div.actions {
                    form method="post" action={ (base) "/portal-link" } {
                        label for="expires_in" { "Valid for" }
                        select #expires_in name="expires_in" {
                            option value="1h" { "1 hour" } option value="24h" selected { "24 hours" } option value="7d" { "7 days" } option value="30d" { "30 days" }
                        }
                        button type="submit" { "Create portal link" }
                    }
                    form method="post" action={ (base) "/revoke-portal-links" } { button type="submit" { "Revoke portal links" } }
                }
            }
            section.card.danger {
                h2 { "Delete" }
                form method="post" action={ (base) "/delete" } {
                    p { "Deleting stops its waiting deliveries (they end as failed); its logs stay until retention." }
                    label.check { input type="checkbox" name="confirm" value="yes" required; " Yes, delete this subscription" }
                    button.danger type="submit" { "Delete subscription" }
                }
            }
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, display_name(&row), Nav::Operator(Section::Subscriptions), body)))
    }
    .await;
    respond(request, &context, result)
}

/// The fields any action form may carry.
#[derive(Deserialize, Default)]
pub(super) struct ActionForm {
    pub name: Option<String>,
    pub target_url: Option<String>,
    pub event_types: Option<String>,
    pub confirm: Option<String>,
    pub expires_in: Option<String>,
}

#[handler]
async fn subscription_action(
    request: &Request,
    context: Data<&UiContext>,
    path: Path<(String, String)>,
    form: Form<ActionForm>,
) -> Response {
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        require_operator(&context, request).await?;
        let (id, action) = &path.0;
        let id = parse_id(id, "There is no subscription with this id.")?;
        let api = SubscriptionsApi::new(context.api.clone());
        let page = format!("/ui/subscriptions/{id}");
        let form = form.0;
        match action.as_str() {
            "edit" => {
                api.modify(id, false, |current| SubscriptionFields {
                    name: form.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()),
                    target_url: form.target_url.unwrap_or_default().trim().to_owned(),
                    event_types: split_event_types(form.event_types.as_deref().unwrap_or("")),
                    ..fields_of(current)
                })
                .await?;
                Ok(see_other(&format!("{page}?done=saved")))
            }
            "pause" | "resume" => {
                let active = action == "resume";
                api.modify(id, false, |current| SubscriptionFields { is_active: active, ..fields_of(current) }).await?;
                Ok(see_other(&format!("{page}?done={}", if active { "resumed" } else { "paused" })))
            }
            "delete" => {
                if form.confirm.as_deref() != Some("yes") {
                    return Err(UiError::Api(ApiError::bad_request("not_confirmed", "tick the confirmation box to delete")));
                }
                api.remove(id).await?;
                Ok(see_other("/ui/subscriptions?done=deleted"))
            }
            "test-event" => {
                send_test_event(&context, id).await?;
                Ok(see_other(&format!("{page}?done=test-sent")))
            }
            "rotate-secret" => {
                let rotated = api.rotate(id).await?;
                Ok(secret_shown_once(&context, Nav::Operator(Section::Subscriptions), &page, &rotated.secret_key, rotated.previous_secret_expires_at))
            }
            "portal-link" => {
                let lifetime = super::portal_link::parse_lifetime(form.expires_in.as_deref().unwrap_or("24h"))
                    .map_err(|m| UiError::Api(ApiError::bad_request("invalid_expires_in", m)))?;
                let link = context.api.portal_links.issue(id, OffsetDateTime::now_utc(), lifetime);
                let url = super::portal_url(&context.api.settings, request, &link.token);
                let body = html! {
                    h1 { "Portal link" }
                    p { "Hand this link to the receiver. Anyone who has it can use the portal until " (views::time(link.expires_at)) "; " strong { "it is shown only now" } "." }
                    p { input.copy type="text" readonly value=(url) aria-label="Portal link"; }
                    p { a href=(page) { "Back to the subscription" } }
                };
                Ok(html(StatusCode::OK, views::page(&context.css_path, "Portal link", Nav::Operator(Section::Subscriptions), body)))
            }
            "revoke-portal-links" => {
                if !subscriptions::revoke_portal_links(&context.api.pool, id).await? {
                    return Err(UiError::NotFound("There is no subscription with this id."));
                }
                Ok(see_other(&format!("{page}?done=revoked")))
            }
            _ => Err(UiError::NotFound("No such action.")),
        }
    }
    .await;
    respond(request, &context, result)
}

/// Queues a `webhookd.test` delivery to an active subscription (whatever its event filter:
/// the point is to see that the receiver answers).
pub(super) async fn send_test_event(context: &UiContext, id: Uuid) -> Result<Uuid, UiError> {
    let pool = &context.api.pool;
    let row = subscriptions::select(pool, id)
        .await?
        .filter(|row| row.deleted_at.is_none())
        .ok_or(UiError::NotFound("There is no subscription with this id."))?;
    if !row.is_active {
        return Err(UiError::Api(ApiError::conflict("subscription_inactive", "the subscription is paused or disabled: resume it first")));
    }
    let delivery_id = Uuid::now_v7();
    let body = serde_json::json!({
        "type": "webhookd.test",
        "timestamp": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "data": { "subscription_id": id, "message": "A test event sent from webhookd." },
    });
    deliveries::insert(pool, delivery_id, id, Some("webhookd.test"), body.to_string().as_bytes(), "queued").await?;
    context.api.waker.wake();
    tracing::info!(subscription.id = %id, delivery.id = %delivery_id, "test event queued");
    Ok(delivery_id)
}

/// The page showing a new secret, the only time it is shown.
pub(super) fn secret_shown_once(context: &UiContext, nav: Nav<'_>, back: &str, secret: &str, previous_until: Option<OffsetDateTime>) -> Response {
    let body = html! {
        h1 { "New signing secret" }
        p { strong { "Store it now: it is never shown again." } }
        p { input.copy type="text" readonly value=(secret) aria-label="New signing secret"; }
        @if let Some(until) = previous_until { p { "Deliveries are signed with both the new and the previous secret until " (views::time(until)) "." } }
        p { a href=(back) { "Back" } }
    };
    html(StatusCode::OK, views::page(&context.css_path, "New signing secret", nav, body))
}

// ----- Deliveries -----------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct DeliveriesQuery {
    subscription_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    before: Option<String>,
}

#[handler]
async fn deliveries_page(request: &Request, context: Data<&UiContext>, query: Query<DeliveriesQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let invalid = |m: &str| UiError::Api(ApiError::bad_request("invalid_filter", m));
        let subscription_id = nonempty(&query.subscription_id)
            .map(|s| Uuid::parse_str(&s).map_err(|_| invalid("subscription_id is not a subscription id")))
            .transpose()?;
        let status = nonempty(&query.status)
            .map(|s| DeliveryStatus::parse(&s).ok_or_else(|| invalid("unknown status")))
            .transpose()?;
        let event_type = nonempty(&query.event_type);
        let before = nonempty(&query.before).and_then(|b| Uuid::parse_str(&b).ok());
        let filter = DeliveryFilter { subscription_id, status, event_type: event_type.clone() };
        let mut rows = deliveries::list_newest(&context.api.pool, &filter, before, PAGE + 1).await?;
        let more = rows.len() as i64 > PAGE;
        rows.truncate(PAGE as usize);
        let next = more.then(|| rows.last().map(|r| r.id)).flatten().map(|last| {
            let mut url = url::form_urlencoded::Serializer::new(String::new());
            if let Some(id) = subscription_id { url.append_pair("subscription_id", &id.to_string()); }
            if let Some(status) = status { url.append_pair("status", status.as_str()); }
            if let Some(event_type) = &event_type { url.append_pair("event_type", event_type); }
            url.append_pair("before", &last.to_string());
            format!("/ui/deliveries?{}", url.finish())
        });
        let statuses = ["queued", "delivering", "retrying", "succeeded", "failed", "filtered"];
        let body = html! {
            h1 { "Deliveries" }
            form.filters method="get" action="/ui/deliveries" {
                div { label for="subscription_id" { "Subscription id" } input #subscription_id type="text" name="subscription_id" value=(subscription_id.map(|i| i.to_string()).unwrap_or_default()); }
                div { label for="status" { "Status" }
                    select #status name="status" {
                        option value="" { "Any" }
                        @for s in statuses { option value=(s) selected[status.map(DeliveryStatus::as_str) == Some(s)] { (s) } }
                    }
                }
                div { label for="event_type" { "Event type" } input #event_type type="text" name="event_type" value=(event_type.as_deref().unwrap_or("")); }
                button type="submit" { "Filter" }
            }
            p.muted { "Newest first." }
            (views::deliveries_table(&rows, &|d: &DeliveryRow| format!("/ui/deliveries/{}", d.id), true))
            @if let Some(next) = next { p { a href=(next) { "Older deliveries" } } }
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, "Deliveries", Nav::Operator(Section::Deliveries), body)))
    }
    .await;
    respond(request, &context, result)
}

/// A delivery with everything its page shows.
pub(super) struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub attempts: Vec<AttemptRow>,
    pub body: Option<Vec<u8>>,
    pub subscription: Option<SubscriptionRow>,
}

pub(super) async fn load_delivery(context: &UiContext, id: Uuid) -> Result<DeliveryDetail, UiError> {
    let pool = &context.api.pool;
    let delivery = deliveries::select(pool, id).await?.ok_or(UiError::NotFound("There is no delivery with this id."))?;
    let attempts = attempts::list_for_delivery(pool, id, delivery.created_at).await?;
    let body = deliveries::body(pool, id).await?;
    let subscription = subscriptions::select(pool, delivery.subscription_id).await?;
    Ok(DeliveryDetail { delivery, attempts, body, subscription })
}

/// The body of a delivery's page; `retry_action` is where its Retry button posts.
pub(super) fn delivery_sections(detail: &DeliveryDetail, retry_action: &str, subscription_link: Option<&str>) -> Markup {
    let d = &detail.delivery;
    let can_retry = matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed);
    let signed = detail.subscription.as_ref().is_some_and(|s| s.secret_key.is_some());
    let github = detail.subscription.as_ref().is_some_and(|s| s.github_signature);
    html! {
        section.card {
            dl.details {
                dt { "Id" } dd { code { (d.id) } }
                dt { "Subscription" } dd {
                    @let name = detail.subscription.as_ref().and_then(|s| s.name.as_deref()).unwrap_or("(unnamed)");
                    @if let Some(link) = subscription_link { a href=(link) { (name) } } @else { (name) }
                }
                dt { "Event type" } dd { (d.event_type.as_deref().unwrap_or("–")) }
                dt { "Status" } dd { (views::status_badge(d.status)) }
                dt { "Attempts" } dd { (d.attempt_count) }
                dt { "Created" } dd { (views::time(d.created_at)) }
                dt { "Next attempt" } dd { (views::optional_time(d.next_attempt_at)) }
                dt { "Completed" } dd { (views::optional_time(d.completed_at)) }
                @if let Some(error) = &d.last_error { dt { "Last error" } dd.error { (error) } }
            }
            @if can_retry {
                form method="post" action=(retry_action) { button type="submit" { "Retry" } }
            }
        }
        section.card {
            h2 { "Payload" }
            @match &detail.body {
                Some(body) => pre.payload { (views::pretty_payload(body, PAYLOAD_SHOWN)) },
                None => p.muted { "The payload is no longer stored (retention)." },
            }
        }
        section.card {
            h2 { "Headers sent" }
            p.muted { "Timestamps and signatures differ at every attempt and are not stored." }
            pre.headers {
                "content-type: application/json\n"
                "user-agent: webhookd/" (env!("CARGO_PKG_VERSION")) "\n"
                "webhook-id: " (d.id) "\n"
                "webhook-timestamp: <the attempt's time, Unix seconds>\n"
                @if signed { "webhook-signature: v1,<HMAC-SHA256 with the subscription's secret>\n" }
                @if signed && github { "x-hub-signature-256: sha256=<HMAC-SHA256 of the body>\n" }
                "x-webhook-attempt: <attempt number>\n"
                @if let Some(event) = &d.event_type { "x-webhook-event: " (event) "\n" }
            }
        }
        section.card {
            h2 { "Attempts" }
            (views::attempts_table(&detail.attempts, None))
        }
    }
}

#[handler]
async fn delivery_page(request: &Request, context: Data<&UiContext>, id: Path<String>, query: Query<DoneQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let id = parse_id(&id, "There is no delivery with this id.")?;
        let detail = load_delivery(&context, id).await?;
        let subscription_link = format!("/ui/subscriptions/{}", detail.delivery.subscription_id);
        let body = html! {
            p.crumbs { a href="/ui/deliveries" { "Deliveries" } " / " }
            h1 { "Delivery " code { (views::short_id(id)) } }
            (flash(query.done.as_deref()))
            (delivery_sections(&detail, &format!("/ui/deliveries/{id}/retry"), Some(&subscription_link)))
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, "Delivery", Nav::Operator(Section::Deliveries), body)))
    }
    .await;
    respond(request, &context, result)
}

#[handler]
async fn retry_delivery(request: &Request, context: Data<&UiContext>, id: Path<String>) -> Response {
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        require_operator(&context, request).await?;
        let id = parse_id(&id, "There is no delivery with this id.")?;
        DeliveriesApi::new(context.api.clone()).requeue(id).await?;
        Ok(see_other(&format!("/ui/deliveries/{id}?done=retried")))
    }
    .await;
    respond(request, &context, result)
}
