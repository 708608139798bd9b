//! The page layout and the parts the dashboard and the portal share. maud escapes every
//! spliced value, so attacker-controlled text (payloads, names, event types, response
//! excerpts, errors) is shown as text; nothing here uses `PreEscaped` on data.

use maud::{html, Markup, DOCTYPE};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::db::attempts::AttemptRow;
use crate::db::deliveries::DeliveryRow;
use crate::domain::lifecycle::{AttemptOutcome, DeliveryStatus};

const TIME: &[FormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

/// Which part of the service a page belongs to: its navigation.
pub(crate) enum Nav<'a> {
    /// The dashboard, with the section shown.
    Operator(Section),
    /// A subscriber's portal: no navigation beyond its own pages.
    Portal { home: &'a str },
    /// The login page.
    None,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Subscriptions,
    Deliveries,
}

/// A whole page.
pub(crate) fn page(css: &str, title: &str, nav: Nav<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · webhookd" }
                link rel="stylesheet" href=(css);
            }
            body {
                header.top {
                    span.brand { "webhookd" }
                    @match nav {
                        Nav::Operator(current) => {
                            nav aria-label="Dashboard" {
                                a href="/ui" aria-current=[(current == Section::Overview).then_some("page")] { "Overview" }
                                a href="/ui/subscriptions" aria-current=[(current == Section::Subscriptions).then_some("page")] { "Subscriptions" }
                                a href="/ui/deliveries" aria-current=[(current == Section::Deliveries).then_some("page")] { "Deliveries" }
                            }
                            form.logout method="post" action="/ui/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                        Nav::Portal { home } => {
                            nav aria-label="Portal" { a href=(home) { "Your webhooks" } }
                        }
                        Nav::None => {}
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login form: one field, the admin token.
pub(crate) fn login_page(css: &str, next: &str, error: Option<&str>) -> Markup {
    page(css, "Log in", Nav::None, html! {
        section.card.narrow {
            h1 { "Log in" }
            p { "Enter the admin token (" code { "WEBHOOKD_ADMIN_TOKEN" } ", or the one generated in the data directory)." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
        }
    })
}

/// A page that says what went wrong.
pub(crate) fn message_page(css: &str, nav: Nav<'_>, title: &str, message: &str) -> Markup {
    page(css, title, nav, html! {
        section.card { h1 { (title) } p.error role="alert" { (message) } }
    })
}

pub(crate) fn time(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(TIME).unwrap_or_else(|_| at.to_string())
}

pub(crate) fn optional_time(at: Option<OffsetDateTime>) -> String {
    at.map(time).unwrap_or_else(|| "–".into())
}

/// "3 min" style ages.
pub(crate) fn age(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 172_800.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} days", seconds / 86400.0)
    }
}

pub(crate) fn status_badge(status: DeliveryStatus) -> Markup {
    let class = match status {
        DeliveryStatus::Succeeded => "badge ok",
        DeliveryStatus::Failed => "badge bad",
        DeliveryStatus::Filtered => "badge muted",
        _ => "badge warn",
    };
    html! { span class=(class) { (status.as_str()) } }
}

pub(crate) fn outcome_badge(outcome: AttemptOutcome) -> Markup {
    let (class, text) = match outcome {
        AttemptOutcome::Success => ("badge ok", "success"),
        AttemptOutcome::FailedAttempt => ("badge warn", "failed, will retry"),
        AttemptOutcome::Failure => ("badge bad", "failed"),
    };
    html! { span class=(class) { (text) } }
}

/// A table of deliveries; `link` gives each one's page.
pub(crate) fn deliveries_table(rows: &[DeliveryRow], link: &dyn Fn(&DeliveryRow) -> String, show_subscription: bool) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "No deliveries." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Delivery" }
                        @if show_subscription { th scope="col" { "Subscription" } }
                        th scope="col" { "Event type" }
                        th scope="col" { "Status" }
                        th scope="col" { "Attempts" }
                        th scope="col" { "Created" }
                        th scope="col" { "Last error" }
                    } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { a href=(link(row)) { code { (short_id(row.id)) } } }
                                @if show_subscription {
                                    td { a href={ "/ui/subscriptions/" (row.subscription_id) } { code { (short_id(row.subscription_id)) } } }
                                }
                                td { (row.event_type.as_deref().unwrap_or("–")) }
                                td { (status_badge(row.status)) }
                                td.num { (row.attempt_count) }
                                td { (time(row.created_at)) }
                                td.clip { (row.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A table of attempts; `link` gives the delivery page of each (None: no link column).
pub(crate) fn attempts_table(rows: &[AttemptRow], link: Option<&dyn Fn(&AttemptRow) -> String>) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { "No attempts yet." }
        } @else {
            div.scroll {
                table.attempts {
                    thead { tr {
                        @if link.is_some() { th scope="col" { "Delivery" } }
                        th scope="col" { "#" }
                        th scope="col" { "Time" }
                        th scope="col" { "Outcome" }
                        th scope="col" { "Status code" }
                        th scope="col" { "Duration" }
                        th scope="col" { "Error" }
                        th scope="col" { "Response excerpt" }
                    } }
                    tbody {
                        @for row in rows {
                            tr {
                                @if let Some(link) = link {
                                    td { a href=(link(row)) { code { (short_id(row.delivery_id)) } } }
                                }
                                td.num { (row.attempt_number) }
                                td { (time(row.created_at)) }
                                td { (outcome_badge(row.outcome)) }
                                td.num { (row.status_code.map(|c| c.to_string()).unwrap_or_else(|| "–".into())) }
                                td.num { (row.duration_ms) " ms" }
                                td.clip { (row.error.as_deref().unwrap_or("")) }
                                td { @if let Some(excerpt) = &row.response_excerpt { pre.excerpt { (excerpt) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The first block of a UUID: enough to tell rows apart on screen (the link has it all).
pub(crate) fn short_id(id: impl Into<uuid::Uuid>) -> String {
    let text = id.into().to_string();
    format!("{}…{}", &text[..8], &text[text.len() - 4..])
}

/// A payload as shown: JSON pretty-printed, other bytes as (lossy) text, at most `limit`
/// bytes. `start` is the start of a body `length` bytes long: a body that does not fit is
/// shown as its first bytes, never parsed whole.
pub(crate) fn pretty_payload(start: &[u8], length: usize, limit: usize) -> String {
    let whole = start.len() >= length;
    let text = match serde_json::from_slice::<serde_json::Value>(start) {
        Ok(value) if whole => serde_json::to_string_pretty(&value).unwrap_or_else(|_| String::from_utf8_lossy(start).into_owned()),
        _ => String::from_utf8_lossy(start).into_owned(),
    };
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let not_shown = length.saturating_sub(start.len()) + (text.len() - end);
    if not_shown == 0 {
        return text;
    }
    format!("{}\n… ({not_shown} more bytes not shown)", &text[..end])
}

/// Success rate and latency of a run of attempts, for a subscription's page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttemptStats {
    pub attempts: usize,
    pub success_rate: f64,
    pub p50_ms: i32,
    pub p95_ms: i32,
}

pub(crate) fn attempt_stats(rows: &[AttemptRow]) -> Option<AttemptStats> {
    if rows.is_empty() {
        return None;
    }
    let successes = rows.iter().filter(|r| r.outcome == AttemptOutcome::Success).count();
    let mut durations: Vec<i32> = rows.iter().map(|r| r.duration_ms).collect();
    durations.sort_unstable();
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    Some(AttemptStats {
        attempts: rows.len(),
        success_rate: successes as f64 / rows.len() as f64,
        p50_ms: at(0.5),
        p95_ms: at(0.95),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escapes_what_it_is_given() {
        let hostile = "\"><img src=x onerror=alert(1)><script>alert(2)</script>";
        let page = message_page("/ui/static/app.css", Nav::None, hostile, hostile).into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
    }

    #[test]
    fn payloads_are_pretty_printed_and_cut() {
        assert_eq!(pretty_payload(br#"{"a":1}"#, 7, 100), "{\n  \"a\": 1\n}");
        assert_eq!(pretty_payload(b"not json", 8, 100), "not json");
        assert!(pretty_payload("ééééé".as_bytes(), 10, 3).starts_with("é\n… ("));
        // Only the start of a long body was read: shown as it is, with what is missing.
        assert_eq!(pretty_payload(br#"{"a":"#, 5_000_000, 100), "{\"a\":\n… (4999995 more bytes not shown)");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(12.0), "12 s");
        assert_eq!(age(600.0), "10 min");
        assert_eq!(age(7200.0), "2.0 h");
    }
}
