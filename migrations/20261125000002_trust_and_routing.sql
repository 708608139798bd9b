-- Trust and routing: filtered deliveries, fan-out events, secret rotation, idempotency,
-- manual retries. README.md ("Schema and indexes") explains each addition.

-- A delivery whose event type its subscription does not want is recorded, never attempted.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('queued', 'delivering', 'retrying', 'succeeded', 'failed', 'filtered'));

-- Fan-out: one event, one stored payload, many deliveries that point at it (body NULL).
CREATE TABLE events (
    id         uuid PRIMARY KEY,
    event_type text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE deliveries ALTER COLUMN body DROP NOT NULL;
ALTER TABLE deliveries ADD COLUMN event_id uuid;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_body_source_check
    CHECK (body IS NOT NULL OR event_id IS NOT NULL);
-- GET /events/{id}: the deliveries of one event.
CREATE INDEX deliveries_event_idx ON deliveries (event_id) WHERE event_id IS NOT NULL;

-- Manual retry starts a fresh round of the retry schedule; attempt numbers continue.
ALTER TABLE deliveries ADD COLUMN round_start_attempt integer NOT NULL DEFAULT 0;

-- Secret rotation: the previous secret stays valid (inbound) and signed for (outbound)
-- until previous_secret_expires_at.
ALTER TABLE subscriptions ADD COLUMN previous_secret_key text;
ALTER TABLE subscriptions ADD COLUMN previous_secret_expires_at timestamptz;

-- Fan-out matching over many subscriptions: live, active subscriptions whose event_types
-- overlap the candidate patterns (GIN), or which take every event (partial b-tree).
CREATE INDEX subscriptions_event_types_idx ON subscriptions USING gin (event_types)
    WHERE is_active AND deleted_at IS NULL;
CREATE INDEX subscriptions_all_events_idx ON subscriptions (id)
    WHERE event_types = '{}' AND is_active AND deleted_at IS NULL;

-- Idempotency-Key records: the first response for (scope, key), kept 24 hours.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,             -- 'ingest:<subscription id>' or 'events'
    key          text NOT NULL,
    request_hash bytea NOT NULL,            -- SHA-256 of what was asked
    response     text NOT NULL,             -- the first 202 body, replayed on repeats
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
