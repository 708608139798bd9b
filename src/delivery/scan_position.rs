//! Where the claim loop starts looking for due deliveries.
//!
//! The claim index (`deliveries_due_idx`, in due-time order) keeps an entry for every row
//! claimed or finished since `deliveries` was last vacuumed, and all of them sit before the
//! queue's head. A claim that started at the beginning of the index would step over every
//! one of them: after a drain of 100,000 rows that costs milliseconds per claim until
//! autovacuum comes round. So each claim starts where the previous one found the earliest
//! due row, less a margin for rows committed late with an earlier due time (a row's due
//! time is its transaction's `now()`, taken when the transaction began, or a time the
//! service computed). Once a second a claim starts from the beginning, so a row that
//! slipped behind the position waits at most that long.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// How far before the last head the next claim starts.
const MARGIN: Duration = Duration::from_secs(1);
/// How often a claim starts from the beginning of the queue.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct ScanPosition {
    from: Option<OffsetDateTime>,
    last_full_scan: Instant,
    rescan_every: Duration,
}

impl ScanPosition {
    pub fn new() -> Self {
        Self::rescanning_every(RESCAN_EVERY)
    }

    fn rescanning_every(rescan_every: Duration) -> Self {
        Self { from: None, last_full_scan: Instant::now(), rescan_every }
    }

    /// Where the next claim starts looking (`None`: at the beginning).
    pub fn next_start(&mut self) -> Option<OffsetDateTime> {
        if self.from.is_none() || self.last_full_scan.elapsed() >= self.rescan_every {
            self.last_full_scan = Instant::now();
            return None;
        }
        self.from
    }

    /// Records when the earliest due delivery a claim found was due.
    pub fn found_head(&mut self, head: Option<OffsetDateTime>) {
        if let Some(head) = head {
            self.from = Some(head - MARGIN);
        }
    }

    /// Something is due that the position may have passed: start from the beginning.
    pub fn restart(&mut self) {
        self.from = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_start_a_margin_before_the_last_head() {
        let mut position = ScanPosition::rescanning_every(Duration::from_secs(3600));
        assert_eq!(position.next_start(), None, "the first claim starts at the beginning");
        let head = OffsetDateTime::now_utc();
        position.found_head(Some(head));
        assert_eq!(position.next_start(), Some(head - MARGIN));
        position.found_head(None);
        assert_eq!(position.next_start(), Some(head - MARGIN), "a claim that took nothing learns nothing");
        position.restart();
        assert_eq!(position.next_start(), None);
    }

    #[test]
    fn a_claim_starts_at_the_beginning_once_a_rescan_is_due() {
        let mut position = ScanPosition::rescanning_every(Duration::ZERO);
        position.found_head(Some(OffsetDateTime::now_utc()));
        assert_eq!(position.next_start(), None);
    }
}
