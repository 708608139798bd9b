-- X-Hub-Signature-256 on deliveries becomes opt-in for new subscriptions. That header is the
-- exact credential POST /ingest accepts for the same body (it has no timestamp), so whoever
-- saw one delivery could replay it into ingest. Standard Webhooks headers, which are
-- timestamped, stay on every delivery. Subscriptions that existed before keep the header
-- (their receivers may verify it): an upgrade must not make their deliveries fail.
ALTER TABLE subscriptions ADD COLUMN github_signature boolean NOT NULL DEFAULT true;
ALTER TABLE subscriptions ALTER COLUMN github_signature SET DEFAULT false;
