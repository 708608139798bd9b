-- Revokes every portal link issued so far for live subscription $1: links issued at or
-- before now are refused from here on. Returns the id, or nothing if there is no such one.
UPDATE subscriptions
SET portal_links_valid_after = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id
