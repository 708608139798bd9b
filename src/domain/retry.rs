//! When to try again: the retry schedule and the decision after each attempt.

use std::time::Duration;

/// Waits between attempts. `n` intervals allow `n + 1` attempts in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    intervals: Vec<Duration>,
    /// Extra random wait, as a fraction of the interval (0 = none).
    jitter: f64,
}

/// The most a receiver's `Retry-After` can push a retry back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The longest interval a schedule may have. Far longer ones (`8000y`) made the next
/// attempt's time overflow the calendar after a failed attempt was sent: the task panicked
/// before its outcome was recorded, and the attempt was missing from the log.
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

impl RetrySchedule {
    /// Parses a comma-separated list of durations such as `10s,30s,1m`.
    pub fn parse(text: &str, jitter: f64) -> Result<Self, String> {
        let intervals = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                humantime::parse_duration(part)
                    .map_err(|_| format!("`{part}` is not a duration like 10s, 1m or 500ms"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if intervals.len() > 50 {
            return Err("at most 50 retries are allowed".into());
        }
        if let Some(long) = intervals.iter().find(|interval| **interval > MAX_INTERVAL) {
            return Err(format!("`{}` is longer than the longest retry interval, 30 days", humantime::format_duration(*long)));
        }
        Ok(Self { intervals, jitter })
    }

    /// The same intervals with `jitter` (a fraction of each interval) of random extra wait.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Attempts in all: the first one plus one per interval.
    pub fn max_attempts(&self) -> u32 {
        self.intervals.len() as u32 + 1
    }

    /// What to do after attempt `attempt_number` (1-based) failed.
    /// `retry_after` is the receiver's own request, honoured when it asks for longer.
    pub fn after_failure(&self, attempt_number: u32, retry_after: Option<Duration>, random: f64) -> NextStep {
        let Some(interval) = self.intervals.get(attempt_number.saturating_sub(1) as usize) else {
            return NextStep::GiveUp;
        };
        let jittered = interval.mul_f64(1.0 + self.jitter * random.clamp(0.0, 1.0));
        let wait = match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        };
        NextStep::RetryIn(wait)
    }
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextStep {
    RetryIn(Duration),
    GiveUp,
}

/// Reads a `Retry-After` header given in seconds (the HTTP-date form is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(text: &str) -> RetrySchedule {
        RetrySchedule::parse(text, 0.0).unwrap()
    }

    #[test]
    fn the_default_schedule_allows_six_attempts() {
        assert_eq!(schedule("10s,30s,1m,5m,15m").max_attempts(), 6);
    }

    #[test]
    fn each_failure_waits_for_its_own_interval_then_gives_up() {
        let s = schedule("10s,30s");
        assert_eq!(s.after_failure(1, None, 0.5), NextStep::RetryIn(Duration::from_secs(10)));
        assert_eq!(s.after_failure(2, None, 0.5), NextStep::RetryIn(Duration::from_secs(30)));
        assert_eq!(s.after_failure(3, None, 0.5), NextStep::GiveUp);
    }

    #[test]
    fn an_empty_schedule_means_a_single_attempt() {
        let s = schedule("");
        assert_eq!(s.max_attempts(), 1);
        assert_eq!(s.after_failure(1, None, 0.0), NextStep::GiveUp);
    }

    #[test]
    fn jitter_only_ever_adds_up_to_its_fraction() {
        let s = RetrySchedule::parse("10s", 0.2).unwrap();
        assert_eq!(s.after_failure(1, None, 0.0), NextStep::RetryIn(Duration::from_secs(10)));
        assert_eq!(s.after_failure(1, None, 1.0), NextStep::RetryIn(Duration::from_secs(12)));
    }

    #[test]
    fn retry_after_can_only_lengthen_the_wait_and_is_capped() {
        let s = schedule("10s");
        let longer = Some(Duration::from_secs(120));
        assert_eq!(s.after_failure(1, longer, 0.0), NextStep::RetryIn(Duration::from_secs(120)));
        let shorter = Some(Duration::from_secs(1));
        assert_eq!(s.after_failure(1, shorter, 0.0), NextStep::RetryIn(Duration::from_secs(10)));
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(s.after_failure(1, huge, 0.0), NextStep::RetryIn(MAX_RETRY_AFTER));
    }

    #[test]
    fn bad_schedules_are_refused_with_the_offending_part() {
        let error = RetrySchedule::parse("10s,soon", 0.0).unwrap_err();
        assert!(error.contains("soon"));
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn an_interval_past_30_days_is_refused_and_the_longest_allowed_stays_on_the_calendar() {
        let error = RetrySchedule::parse("10s,8000y", 0.0).unwrap_err();
        assert!(error.contains("8000years") && error.contains("30 days"), "{error}");
        let longest = RetrySchedule::parse("30days", 1.0).unwrap();
        let NextStep::RetryIn(wait) = longest.after_failure(1, None, 1.0) else { panic!("a retry") };
        assert!(time::OffsetDateTime::now_utc().checked_add(wait.try_into().unwrap()).is_some());
    }
}
