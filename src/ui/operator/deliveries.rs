//! `/ui/deliveries`: the filtered list and a delivery's page (its sections shared with the
//! portal), and Retry.

use maud::{html, Markup};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{handler, Request, Response};
use serde::Deserialize;

use super::{flash, parse_id, respond, DoneQuery, PAGE};
use crate::api::deliveries::DeliveriesApi;
use crate::db::attempts::{self, AttemptRow};
use crate::db::deliveries::{self, DeliveryFilter, DeliveryRow};
use crate::db::subscriptions::{self, SubscriptionRow};
use crate::domain::lifecycle::DeliveryStatus;
use crate::domain::{DeliveryId, SubscriptionId};
use crate::error::ApiError;
use crate::ui::guard::check_same_origin;
use crate::ui::session::require_operator;
use crate::ui::views::{self, Nav, Section};
use crate::ui::{html, see_other, UiContext, UiError};

/// Most bytes of a payload shown on a delivery's page.
const PAYLOAD_SHOWN: usize = 256 * 1024;

#[derive(Deserialize, Default)]
struct DeliveriesQuery {
    subscription_id: Option<String>,
    status: Option<String>,
    event_type: Option<String>,
    before: Option<String>,
}

#[handler]
pub(super) async fn deliveries_page(request: &Request, context: Data<&UiContext>, query: Query<DeliveriesQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let invalid = |m: &str| UiError::Api(ApiError::bad_request("invalid_filter", m));
        let subscription_id = nonempty(&query.subscription_id)
            .map(|s| s.parse::<SubscriptionId>().map_err(|_| invalid("subscription_id is not a subscription id")))
            .transpose()?;
        let status = nonempty(&query.status)
            .map(|s| DeliveryStatus::parse(&s).ok_or_else(|| invalid("unknown status")))
            .transpose()?;
        let event_type = nonempty(&query.event_type);
        let before = nonempty(&query.before).and_then(|b| b.parse::<DeliveryId>().ok());
        let filter = DeliveryFilter { subscription_id, status, event_type: event_type.clone() };
        let page = deliveries::list_newest(&context.api.pool, &filter, before, PAGE + 1).await?;
        let mut rows = page.rows;
        let more = rows.len() as i64 > PAGE;
        rows.truncate(PAGE as usize);
        let page_link = |before: DeliveryId| {
            let mut url = url::form_urlencoded::Serializer::new(String::new());
            if let Some(id) = subscription_id { url.append_pair("subscription_id", &id.to_string()); }
            if let Some(status) = status { url.append_pair("status", status.as_str()); }
            if let Some(event_type) = &event_type { url.append_pair("event_type", event_type); }
            url.append_pair("before", &before.to_string());
            format!("/ui/deliveries?{}", url.finish())
        };
        let next = more.then(|| rows.last().map(|r| page_link(r.id))).flatten();
        // A short page of a search that stopped at its window: say so, and go on from there.
        let search_on = page.searched_to.map(|oldest| (oldest.created_at(), page_link(oldest)));
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
            @if let Some((reached, link)) = search_on {
                p.search-window {
                    "No more matches among the " (deliveries::SEARCH_WINDOW) " deliveries searched"
                    @if let Some(reached) = reached { ", back to " (views::time(reached)) }
                    ". " a href=(link) { "Search older deliveries" }
                }
            }
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, "Deliveries", Nav::Operator(Section::Deliveries), body)))
    }
    .await;
    respond(request, &context, result)
}

/// A delivery with everything its page shows.
pub(crate) struct DeliveryDetail {
    pub delivery: DeliveryRow,
    pub attempts: Vec<AttemptRow>,
    pub body: Option<deliveries::BodyStart>,
    pub subscription: Option<SubscriptionRow>,
}

pub(crate) async fn load_delivery(context: &UiContext, id: DeliveryId) -> Result<DeliveryDetail, UiError> {
    let pool = &context.api.pool;
    let delivery = deliveries::select(pool, id).await?.ok_or(UiError::NotFound("There is no delivery with this id."))?;
    let attempts = attempts::list_for_delivery(pool, id, delivery.created_at).await?;
    let body = deliveries::body_start(pool, id, PAYLOAD_SHOWN as i32).await?;
    let subscription = subscriptions::select(pool, delivery.subscription_id).await?;
    Ok(DeliveryDetail { delivery, attempts, body, subscription })
}

/// The body of a delivery's page; `retry_action` is where its Retry button posts.
pub(crate) fn delivery_sections(detail: &DeliveryDetail, retry_action: &str, subscription_link: Option<&str>) -> Markup {
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
            h2 { "Attempts" }
            (views::attempts_table(&detail.attempts, None))
        }
        section.card {
            h2 { "Payload" }
            @match &detail.body {
                Some(body) => pre.payload { (views::pretty_payload(&body.shown, body.length, PAYLOAD_SHOWN)) },
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
    }
}

#[handler]
pub(super) async fn delivery_page(request: &Request, context: Data<&UiContext>, id: Path<String>, query: Query<DoneQuery>) -> Response {
    let result = async {
        require_operator(&context, request).await?;
        let id: DeliveryId = parse_id(&id, "There is no delivery with this id.")?;
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
pub(super) async fn retry_delivery(request: &Request, context: Data<&UiContext>, id: Path<String>) -> Response {
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        require_operator(&context, request).await?;
        let id: DeliveryId = parse_id(&id, "There is no delivery with this id.")?;
        DeliveriesApi::new(context.api.clone()).requeue(id).await?;
        Ok(see_other(&format!("/ui/deliveries/{id}?done=retried")))
    }
    .await;
    respond(request, &context, result)
}
