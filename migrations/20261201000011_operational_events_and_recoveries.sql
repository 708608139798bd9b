-- Operational events: webhookd's own `webhookd.*` events (a subscription disabled, a
-- delivery that gave up, a recovery done). They are written here in the same transaction as
-- whatever caused them, so that none is lost and none delays or fails its cause; a relay in
-- each delivering instance turns them into ordinary fan-out events and deletes them.
CREATE TABLE operational_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type text NOT NULL CHECK (event_type LIKE 'webhookd.%'),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Bulk recovery: re-queue one subscription's failed deliveries created in [since, until).
-- Worked through in batches in (created_at, id) order; `cursor_*` is the last delivery
-- re-queued, committed with its batch, so a restarted instance resumes after it and never
-- re-queues a delivery twice (not even one that failed again meanwhile).
CREATE TABLE recoveries (
    id                uuid PRIMARY KEY,
    subscription_id   uuid NOT NULL,
    since             timestamptz NOT NULL,
    until             timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    matched           integer NOT NULL,
    requeued          integer NOT NULL DEFAULT 0,
    cursor_created_at timestamptz NOT NULL,
    cursor_id         uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    CHECK ((status = 'done') = (completed_at IS NOT NULL))
);
-- Running recoveries, found by every delivering instance at each pass.
CREATE INDEX recoveries_running_idx ON recoveries (created_at) WHERE status = 'running';
-- One running recovery per subscription: two over the same range (a client retrying a
-- timed-out POST) would each get the whole limit and could re-queue a delivery twice.
CREATE UNIQUE INDEX recoveries_one_running_idx ON recoveries (subscription_id) WHERE status = 'running';
-- Retention of finished recoveries.
CREATE INDEX recoveries_completed_idx ON recoveries (completed_at) WHERE status = 'done';
