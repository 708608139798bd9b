//! The subscriber portal: what the holder of a portal link may see and do, for that one
//! subscription only. The link (in the path: the pages carry `Referrer-Policy: same-origin`, so it never leaves in a `Referer`)
//! is checked on every request: signature, expiry, revocation, and that the subscription
//! still exists. Its deliveries and attempts, Retry, "Send test event", "Rotate secret" and
//! a new target URL (validated with the API's rules, SSRF checks included); nothing else.

use maud::html;
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{get, handler, post, Request, Response, Route};
use serde::Deserialize;
use time::OffsetDateTime;

use super::guard::check_same_origin;
use super::operator::{self, ActionForm};
use super::portal_link::{LinkClaims, LinkError};
use super::views::{self, Nav};
use super::{api_error_parts, html, see_other, UiContext, UiError};
use crate::api::deliveries::DeliveriesApi;
use crate::api::subscriptions::{fields_of, SubscriptionsApi};
use crate::db::subscriptions::{self, SubscriptionFields};
use crate::delivery::ssrf;
use crate::domain::lifecycle::DeliveryStatus;
use crate::domain::DeliveryId;
use crate::domain::target_url::TargetUrl;
use crate::error::ApiError;

pub(super) fn routes() -> Route {
    Route::new()
        .at("/:token", get(portal_home))
        .at("/:token/deliveries/:id", get(delivery))
        .at("/:token/deliveries/:id/retry", post(retry))
        .at("/:token/:action", post(action))
}

/// Checks a link: signature, expiry, the subscription alive, not revoked since issued.
async fn open(context: &UiContext, token: &str) -> Result<LinkClaims, UiError> {
    let refused = |error: LinkError| UiError::Forbidden(error.to_string());
    let claims = context.api.portal_links.signer().await?.verify(token, OffsetDateTime::now_utc()).map_err(refused)?;
    let state = subscriptions::portal_link_state(&context.api.pool, claims.subscription_id)
        .await?
        .filter(|state| state.live)
        .ok_or_else(|| refused(LinkError::Invalid))?;
    if claims.revoked_by(state.portal_links_valid_after) {
        return Err(refused(LinkError::Revoked));
    }
    Ok(claims)
}

fn respond(context: &UiContext, token: &str, result: Result<Response, UiError>) -> Response {
    let css = &context.css_path;
    let home = format!("/portal/{token}");
    result.unwrap_or_else(|error| match error {
        UiError::Forbidden(message) => html(StatusCode::FORBIDDEN, views::message_page(css, Nav::None, "This link does not open anything", &message)),
        UiError::Login => html(StatusCode::FORBIDDEN, views::message_page(css, Nav::None, "Forbidden", "not allowed")),
        UiError::NotFound(what) => html(StatusCode::NOT_FOUND, views::message_page(css, Nav::Portal { home: &home }, "Not found", what)),
        UiError::Api(error) => {
            let (status, message) = api_error_parts(&error);
            html(status, views::message_page(css, Nav::Portal { home: &home }, "That did not work", &message))
        }
    })
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}

#[handler]
async fn portal_home(context: Data<&UiContext>, token: Path<String>, query: Query<DoneQuery>) -> Response {
    let result = async {
        let claims = open(&context, &token).await?;
        let (row, recent, attempts) = operator::load_subscription(&context, claims.subscription_id).await?;
        let base = format!("/portal/{}", token.0);
        let body = html! {
            h1 { "Webhooks to " (row.target_url) }
            @if let Some(name) = &row.name { p.muted { (name) } }
            @if let Some(message) = done_message(query.done.as_deref()) { p.flash role="status" { (message) } }
            p.muted { "This page is for the receiver of these webhooks. The link expires at " (views::time(claims.expires_at)) "." }
            (operator::subscription_sections(&row, &recent, &attempts, &base, &|d| format!("{base}/deliveries/{d}")))
            section.card {
                h2 { "Change the target URL" }
                form.stack method="post" action={ (base) "/target-url" } {
                    label for="target_url" { "Target URL" }
                    input #target_url type="url" name="target_url" value=(row.target_url) required;
                    button type="submit" { "Change target URL" }
                }
            }
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, "Your webhooks", Nav::Portal { home: &base }, body)))
    }
    .await;
    respond(&context, &token, result)
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "test-sent" => "Test event queued: it appears below in a moment.",
        "retried" => "Delivery re-queued: it will be attempted shortly.",
        "target" => "Target URL changed.",
        _ => return None,
    })
}

/// The delivery `id` if it belongs to the link's subscription (else: not found, the same
/// answer as for an id that does not exist, so a link tells nothing about others).
async fn own_delivery(context: &UiContext, claims: &LinkClaims, id: &str) -> Result<operator::DeliveryDetail, UiError> {
    const NOT_FOUND: UiError = UiError::NotFound("There is no delivery with this id for this subscription.");
    let id = id.parse::<DeliveryId>().map_err(|_| NOT_FOUND)?;
    let detail = operator::load_delivery(context, id).await.map_err(|error| match error {
        UiError::NotFound(_) => NOT_FOUND,
        other => other,
    })?;
    if detail.delivery.subscription_id != claims.subscription_id {
        return Err(NOT_FOUND);
    }
    Ok(detail)
}

#[handler]
async fn delivery(context: Data<&UiContext>, path: Path<(String, String)>, query: Query<DoneQuery>) -> Response {
    let (token, id) = &path.0;
    let result = async {
        let claims = open(&context, token).await?;
        let detail = own_delivery(&context, &claims, id).await?;
        let base = format!("/portal/{token}");
        let body = html! {
            p.crumbs { a href=(base) { "Your webhooks" } " / " }
            h1 { "Delivery " code { (views::short_id(detail.delivery.id)) } }
            @if let Some(message) = done_message(query.done.as_deref()) { p.flash role="status" { (message) } }
            (operator::delivery_sections(&detail, &format!("{base}/deliveries/{}/retry", detail.delivery.id), None))
        };
        Ok(html(StatusCode::OK, views::page(&context.css_path, "Delivery", Nav::Portal { home: &base }, body)))
    }
    .await;
    respond(&context, token, result)
}

#[handler]
async fn retry(request: &Request, context: Data<&UiContext>, path: Path<(String, String)>) -> Response {
    let (token, id) = &path.0;
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        let claims = open(&context, token).await?;
        let detail = own_delivery(&context, &claims, id).await?;
        // A customer may ask again for what failed; re-sending what succeeded is the operator's call.
        if detail.delivery.status != DeliveryStatus::Failed {
            return Err(ApiError::conflict("delivery_not_failed", "Only a failed delivery can be retried from here.").into());
        }
        DeliveriesApi::new(context.api.clone()).requeue(detail.delivery.id).await?;
        Ok(see_other(&format!("/portal/{token}/deliveries/{}?done=retried", detail.delivery.id)))
    }
    .await;
    respond(&context, token, result)
}

#[handler]
async fn action(request: &Request, context: Data<&UiContext>, path: Path<(String, String)>, form: Form<ActionForm>) -> Response {
    let (token, action) = &path.0;
    let result = async {
        check_same_origin(request, &context.api.settings)?;
        let claims = open(&context, token).await?;
        let id = claims.subscription_id;
        let home = format!("/portal/{token}");
        match action.as_str() {
            "test-event" => {
                operator::send_test_event(&context, id).await?;
                Ok(see_other(&format!("{home}?done=test-sent")))
            }
            "rotate-secret" => {
                let rotated = SubscriptionsApi::new(context.api.clone()).rotate(id).await?;
                Ok(operator::secret_shown_once(&context, Nav::Portal { home: &home }, &home, &rotated.secret_key, rotated.previous_secret_expires_at))
            }
            "target-url" => {
                let target = form.0.target_url.unwrap_or_default().trim().to_owned();
                // Always the public-address rule here, whatever WEBHOOKD_ALLOW_PRIVATE_TARGETS
                // says: that setting is for the operator's own receivers, and a portal user is
                // a customer. Checked before the row is locked (the check may resolve DNS).
                let parsed = TargetUrl::parse(&target).map_err(|m| ApiError::bad_request("invalid_target_url", m))?;
                ssrf::check_target(&parsed).await.map_err(|m| ApiError::bad_request("target_not_allowed", m))?;
                let api = SubscriptionsApi::new(context.api.clone());
                // Checked above, by the stricter rule: `modify` need not check it again.
                api.modify(id, false, None, |current| SubscriptionFields { target_url: target, ..fields_of(current) }).await?;
                Ok(see_other(&format!("{home}?done=target")))
            }
            _ => Err(UiError::NotFound("No such action.")),
        }
    }
    .await;
    respond(&context, token, result)
}
