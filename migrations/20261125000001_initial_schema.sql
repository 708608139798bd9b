-- webhookd's schema. README.md ("Schema and indexes") explains every table and index.

-- Endpoints that receive webhooks. Rows are soft-deleted (deleted_at) so that the deliveries
-- and attempts that refer to them keep their meaning until retention removes them.
CREATE TABLE subscriptions (
    id          uuid PRIMARY KEY,            -- UUIDv7: ordered by creation, used as the list cursor
    name        text,
    target_url  text NOT NULL,
    secret_key  text,                        -- never returned by the API
    event_types text[] NOT NULL DEFAULT '{}',
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- The queue: one row per webhook per subscription. No foreign key to subscriptions: a
-- foreign key makes every insert take a share lock on the subscription row, and at high
-- ingest rates to one subscription those locks become a point of contention. Subscriptions
-- are never hard-deleted while deliveries refer to them, so the reference stays valid.
CREATE TABLE deliveries (
    id              uuid PRIMARY KEY,        -- UUIDv7, also the webhook-id receivers see
    subscription_id uuid NOT NULL,
    event_type      text,
    body            bytea NOT NULL,          -- the exact bytes received
    status          text NOT NULL
                    CHECK (status IN ('queued', 'delivering', 'retrying', 'succeeded', 'failed')),
    attempt_count   integer NOT NULL DEFAULT 0,
    -- When the next attempt is due. While 'delivering' it is the lease expiry: past it, the
    -- row may be claimed again. 'infinity' parks the row while its subscription is paused.
    next_attempt_at timestamptz,
    lease_id        uuid,                    -- which claim owns the row while 'delivering'
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);

-- The claim query's index: only unfinished rows, ordered by when they are due. Finished
-- rows leave it, so it stays as small as the backlog however much history accumulates.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at)
    WHERE status IN ('queued', 'retrying', 'delivering');

-- A subscription's recent deliveries, newest first; also used to pause, resume and cancel
-- a subscription's pending deliveries.
CREATE INDEX deliveries_subscription_idx ON deliveries (subscription_id, created_at DESC);

-- One row per HTTP attempt. Range-partitioned by day on created_at so that retention drops
-- whole partitions instead of deleting rows. Partitions are created ahead of time by the
-- service (see src/db/partitions.rs); there is no default partition.
CREATE TABLE attempts (
    delivery_id      uuid NOT NULL,
    subscription_id  uuid NOT NULL,
    attempt_number   integer NOT NULL,
    outcome          text NOT NULL CHECK (outcome IN ('success', 'failed_attempt', 'failure')),
    status_code      integer,
    error            text,
    duration_ms      integer NOT NULL,
    response_excerpt text,
    target_url       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);

-- A delivery's attempts in order (GET /deliveries/{id}).
CREATE INDEX attempts_delivery_idx ON attempts (delivery_id, attempt_number);
-- A subscription's most recent attempts (GET /subscriptions/{id}/attempts).
CREATE INDEX attempts_subscription_idx ON attempts (subscription_id, created_at DESC);
