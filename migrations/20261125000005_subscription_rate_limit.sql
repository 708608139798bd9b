-- Optional pacing of a subscription's deliveries: at most this many requests a second to its
-- receiver from each instance (NULL: no limit beyond the concurrency cap).
ALTER TABLE subscriptions ADD COLUMN rate_limit integer CHECK (rate_limit BETWEEN 1 AND 100000);
