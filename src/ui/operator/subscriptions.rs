//! `/ui/subscriptions`: the list, the create form, a subscription's page and its actions
//! (some parts shared with the portal).

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{handler, Request, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{flash, parse_id, respond, DoneQuery, PAGE};
use crate::api::subscriptions::{fields_of, SubscriptionsApi};
use crate::db::attempts::{self, AttemptRow};
use crate::db::deliveries::{self, DeliveryRow};
use crate::db::subscriptions::{self, StateFilter, SubscriptionFields, SubscriptionRow};
use crate::domain::operational_event;
use crate::domain::{DeliveryId, SubscriptionId};
use crate::error::ApiError;
use crate::ui::guard::check_same_origin;
use crate::ui::session::require_operator;
use crate::ui::views::{self, Nav, Section};
use crate::ui::{api_error_parts, html, see_other, UiContext, UiError};

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    state: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

/// The create form's fields (also what it shows again after a refusal).
#[derive(Deserialize, Default, Clone)]
struct CreateForm {
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
pub(super) async fn subscriptions_page(request: &Request, context: Data<&UiContext>, query: Query<ListQuery>) -> Response {
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
    let after = query.after.as_deref().and_then(|a| a.parse::<SubscriptionId>().ok());
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
pub(super) async fn create_subscription(request: &Request, context: Data<&UiContext>, form: Form<CreateForm>) -> Response {
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

fn state_badge(row: &SubscriptionRow) -> Markup {
    html! {
        @if let Some(reason) = row.disabled_reason { span.badge.bad { "disabled: " (reason.as_str()) } }
        @else if row.is_active { span.badge.ok { "active" } }
        @else { span.badge.muted { "paused" } }
    }
}

/// Reads a live subscription with its recent deliveries and attempts.
pub(crate) async fn load_subscription(context: &UiContext, id: SubscriptionId) -> Result<(SubscriptionRow, Vec<DeliveryRow>, Vec<AttemptRow>), UiError> {
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
pub(crate) fn subscription_sections(
    row: &SubscriptionRow,
    recent: &[DeliveryRow],
    attempts: &[AttemptRow],
    base: &str,
    delivery_link: &dyn Fn(DeliveryId) -> String,
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
pub(super) async fn subscription_page(request: &Request, context: Data<&UiContext>, id: Path<String>, query: Query<DoneQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let id: SubscriptionId = parse_id(&id, "There is no subscription with this id.")?;
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
pub(crate) struct ActionForm {
    pub name: Option<String>,
    pub target_url: Option<String>,
    pub event_types: Option<String>,
    pub confirm: Option<String>,
    pub expires_in: Option<String>,
}

#[handler]
pub(super) async fn subscription_action(
    request: &Request,
    context: Data<&UiContext>,
    path: Path<(String, String)>,
    form: Form<ActionForm>,
) -> Response {
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        require_operator(&context, request).await?;
        let (id, action) = &path.0;
        let id: SubscriptionId = parse_id(id, "There is no subscription with this id.")?;
        let api = SubscriptionsApi::new(context.api.clone());
        let page = format!("/ui/subscriptions/{id}");
        let form = form.0;
        match action.as_str() {
            "edit" => {
                let target = form.target_url.unwrap_or_default().trim().to_owned();
                api.modify(id, false, Some(&target), |current| SubscriptionFields {
                    name: form.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()),
                    target_url: target.clone(),
                    event_types: split_event_types(form.event_types.as_deref().unwrap_or("")),
                    ..fields_of(current)
                })
                .await?;
                Ok(see_other(&format!("{page}?done=saved")))
            }
            "pause" | "resume" => {
                let active = action == "resume";
                api.modify(id, false, None, |current| SubscriptionFields { is_active: active, ..fields_of(current) }).await?;
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
                let lifetime = crate::ui::portal_link::parse_lifetime(form.expires_in.as_deref().unwrap_or("24h"))
                    .map_err(|m| UiError::Api(ApiError::bad_request("invalid_expires_in", m)))?;
                let link = api.issue_portal_link(id, lifetime).await?;
                let url = crate::ui::portal_url(&context.api.settings, request, &link.token);
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
/// The event type of test events.
const TEST_EVENT: &str = "webhookd.test";
/// Least time between two test events to one subscription.
const TEST_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn send_test_event(context: &UiContext, id: SubscriptionId) -> Result<DeliveryId, UiError> {
    let pool = &context.api.pool;
    let row = subscriptions::select(pool, id)
        .await?
        .filter(|row| row.deleted_at.is_none())
        .ok_or(UiError::NotFound("There is no subscription with this id."))?;
    if !row.is_active {
        return Err(UiError::Api(ApiError::conflict("subscription_inactive", "the subscription is paused or disabled: resume it first")));
    }
    // A portal link holder can press this too: one test event per subscription at a time.
    if deliveries::recent_test_event(pool, id, TEST_EVENT_INTERVAL.as_secs_f64()).await? {
        return Err(UiError::Api(ApiError::conflict("test_event_too_soon", "a test event was sent moments ago: wait a few seconds")));
    }
    let delivery_id = DeliveryId::new();
    // The same envelope as webhookd's operational events.
    let data = serde_json::json!({ "subscription_id": id, "message": "A test event sent from webhookd." });
    let data = serde_json::value::to_raw_value(&data).map_err(|_| UiError::Api(ApiError::internal()))?;
    let body = operational_event::envelope(TEST_EVENT, OffsetDateTime::now_utc(), &data);
    deliveries::insert(pool, delivery_id, id, Some(TEST_EVENT), &body, "queued").await?;
    context.api.waker.wake();
    tracing::info!(subscription.id = %id, delivery.id = %delivery_id, "test event queued");
    Ok(delivery_id)
}

/// The page showing a new secret, the only time it is shown.
pub(crate) fn secret_shown_once(context: &UiContext, nav: Nav<'_>, back: &str, secret: &str, previous_until: Option<OffsetDateTime>) -> Response {
    let body = html! {
        h1 { "New signing secret" }
        p { strong { "Store it now: it is never shown again." } }
        p { input.copy type="text" readonly value=(secret) aria-label="New signing secret"; }
        @if let Some(until) = previous_until { p { "Deliveries are signed with both the new and the previous secret until " (views::time(until)) "." } }
        p { a href=(back) { "Back" } }
    };
    html(StatusCode::OK, views::page(&context.css_path, "New signing secret", nav, body))
}
