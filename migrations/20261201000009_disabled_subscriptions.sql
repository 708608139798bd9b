-- Subscriptions webhookd itself took out of service: `endpoint_gone` (the receiver answered
-- 410 Gone) or `failing` (it failed for too long). A disabled subscription is inactive, its
-- waiting deliveries parked as for a paused one; re-activating it clears both columns.
ALTER TABLE subscriptions
    ADD COLUMN disabled_reason text CHECK (disabled_reason IN ('endpoint_gone', 'failing')),
    ADD COLUMN disabled_at timestamptz,
    ADD CONSTRAINT subscriptions_disabled_is_inactive CHECK (disabled_reason IS NULL OR NOT is_active);
