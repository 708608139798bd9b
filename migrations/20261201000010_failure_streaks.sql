-- A subscription's current run of failed attempts, kept by the outcome batch so that
-- sustained failure can disable it without a query per attempt over `attempts`: when the
-- streak began (NULL after a success) and how many attempts failed in it.
ALTER TABLE subscriptions
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN failed_in_streak integer NOT NULL DEFAULT 0;
