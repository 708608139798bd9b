-- The database's clock, if $1 is a live subscription: a portal link's issue time. Revocation
-- stores this clock too (revoke_portal_links.sql), so that an instance whose clock runs
-- ahead cannot issue links that outlive a revocation made just after.
SELECT now() AS "now!" FROM subscriptions WHERE id = $1 AND deleted_at IS NULL
