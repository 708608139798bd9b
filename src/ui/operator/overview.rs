//! `/ui`: the overview.

use std::sync::Arc;

use maud::html;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Request, Response};
use time::OffsetDateTime;

use super::respond;
use crate::db::deliveries;
use crate::db::subscriptions::{self, TroubledSubscription};
use crate::error::ApiError;
use crate::metrics::QueueReading;
use crate::ui::session::require_operator;
use crate::ui::views::{self, Nav, Section};
use crate::ui::{chart, html, UiContext, UiError};

/// The overview's figures.
pub(crate) struct Overview {
    bars: Vec<(i64, i64)>,
    /// The reading the metrics' queue gauges show too: as old as [`queue_reading_spacing`]
    /// allows (a large backlog is counted less often).
    ///
    /// [`queue_reading_spacing`]: crate::metrics::queue_reading_spacing
    queue: QueueReading,
    troubled: Vec<TroubledSubscription>,
    computed_at: OffsetDateTime,
}

async fn load_overview(context: &UiContext) -> Result<Arc<Overview>, UiError> {
    let pool = context.api.pool.clone();
    let metrics = context.api.metrics.clone();
    let loaded = context
        .overview
        .try_get_with((), async move {
            let counts = deliveries::finished_per_minute(&pool).await?;
            let queue = metrics.queue(&pool).await?;
            let troubled = subscriptions::list_troubled(&pool, 50).await?;
            let now = OffsetDateTime::now_utc();
            Ok::<_, sqlx::Error>(Arc::new(Overview { bars: chart::buckets(&counts, now), queue, troubled, computed_at: now }))
        })
        .await;
    loaded.map_err(|error| UiError::Api(ApiError::from_database(&error)))
}

#[handler]
pub(super) async fn overview(request: &Request, context: Data<&UiContext>) -> Response {
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
                div.tile { span.tile-label { "Queued" } span.tile-value { (data.queue.depth.queued) } a href="/ui/deliveries?status=queued" { "see them" } }
                div.tile { span.tile-label { "Retrying" } span.tile-value { (data.queue.depth.retrying) } a href="/ui/deliveries?status=retrying" { "see them" } }
                div.tile { span.tile-label { "Delivering" } span.tile-value { (data.queue.depth.delivering) } }
                div.tile { span.tile-label { "Oldest due delivery waiting" } span.tile-value { (views::age(data.queue.depth.oldest_due_age_seconds)) } }
            }
            @if data.computed_at - data.queue.read_at > crate::metrics::QUEUE_REFRESH {
                p.muted { "Queue counted at " (views::time(data.queue.read_at)) ": a large queue is counted less often, so that counting it stays cheap." }
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
