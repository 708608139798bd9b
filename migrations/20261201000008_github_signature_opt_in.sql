-- X-Hub-Signature-256 on deliveries becomes opt-in per subscription. That header is the
-- exact credential POST /ingest accepts for the same body (it has no timestamp), so whoever
-- saw one delivery could replay it into ingest forever. Standard Webhooks headers, which
-- are timestamped, stay on every delivery.
ALTER TABLE subscriptions ADD COLUMN github_signature boolean NOT NULL DEFAULT false;
