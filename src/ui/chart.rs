//! The overview's chart: deliveries finished per minute over the last hour, succeeded and
//! failed stacked, as an SVG drawn by the server (no script, scales to any width).

use maud::{html, Markup};
use time::OffsetDateTime;

use crate::db::deliveries::MinuteCounts;

/// Minutes shown.
pub(crate) const MINUTES: usize = 60;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 20.0;
const LEFT: f64 = 36.0;

/// One bar: (succeeded, failed) per minute, oldest first, the last being the current minute.
pub(crate) fn buckets(counts: &[MinuteCounts], now: OffsetDateTime) -> Vec<(i64, i64)> {
    let current = now.unix_timestamp().div_euclid(60);
    let mut bars = vec![(0, 0); MINUTES];
    for count in counts {
        let back = current - count.minute.unix_timestamp().div_euclid(60);
        if (0..MINUTES as i64).contains(&back) {
            let bar = &mut bars[MINUTES - 1 - back as usize];
            bar.0 += count.succeeded;
            bar.1 += count.failed;
        }
    }
    bars
}

/// The SVG for `bars` (see [`buckets`]).
pub(crate) fn render(bars: &[(i64, i64)]) -> Markup {
    let peak = bars.iter().map(|(ok, failed)| ok + failed).max().unwrap_or(0).max(1);
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = (WIDTH - LEFT) / bars.len().max(1) as f64;
    let scale = |n: i64| n as f64 / peak as f64 * plot_height;
    let total_ok: i64 = bars.iter().map(|b| b.0).sum();
    let total_failed: i64 = bars.iter().map(|b| b.1).sum();
    let summary = format!(
        "Deliveries per minute over the last hour: {total_ok} succeeded, {total_failed} failed; busiest minute {peak}."
    );
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(summary) xmlns="http://www.w3.org/2000/svg" {
            title { (summary) }
            line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
            text.label x=(LEFT - 4.0) y=(TOP + 4.0) text-anchor="end" { (peak) }
            text.label x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "0" }
            text.label x=(LEFT) y=(HEIGHT - 4.0) { "60 min ago" }
            text.label x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { "now" }
            @for (i, (ok, failed)) in bars.iter().enumerate() {
                @let x = LEFT + i as f64 * slot + 1.0;
                @let ok_height = scale(*ok);
                @let failed_height = scale(*failed);
                @let base = HEIGHT - BOTTOM;
                g {
                    title { (MINUTES - i - 1) " min ago: " (ok) " succeeded, " (failed) " failed" }
                    @if *ok > 0 {
                        rect.ok x=(fmt(x)) y=(fmt(base - ok_height)) width=(fmt(slot - 2.0)) height=(fmt(ok_height)) {}
                    }
                    @if *failed > 0 {
                        rect.failed x=(fmt(x)) y=(fmt(base - ok_height - failed_height)) width=(fmt(slot - 2.0)) height=(fmt(failed_height)) {}
                    }
                }
            }
        }
    }
}

fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(at: OffsetDateTime, back: i64) -> OffsetDateTime {
        let start = at.unix_timestamp().div_euclid(60) * 60;
        OffsetDateTime::from_unix_timestamp(start - back * 60).unwrap()
    }

    #[test]
    fn counts_land_in_their_minute_and_older_ones_are_dropped() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_030).unwrap();
        let counts = [
            MinuteCounts { minute: minute(now, 0), succeeded: 5, failed: 1 },
            MinuteCounts { minute: minute(now, 59), succeeded: 2, failed: 0 },
            MinuteCounts { minute: minute(now, 60), succeeded: 9, failed: 9 },
        ];
        let bars = buckets(&counts, now);
        assert_eq!(bars.len(), MINUTES);
        assert_eq!(bars[MINUTES - 1], (5, 1));
        assert_eq!(bars[0], (2, 0));
        assert_eq!(bars.iter().map(|b| b.0 + b.1).sum::<i64>(), 8);
    }

    #[test]
    fn the_chart_describes_itself() {
        let mut bars = vec![(0, 0); MINUTES];
        bars[MINUTES - 1] = (3, 2);
        let svg = render(&bars).into_string();
        assert!(svg.contains("3 succeeded, 2 failed"));
        assert_eq!(svg.matches("<rect").count(), 2);
    }
}
