-- What a portal link for subscription $1 is checked against: whether it is live and when
-- its links were last revoked. One primary-key read per portal page.
SELECT deleted_at IS NULL AS "live!", portal_links_valid_after
FROM subscriptions
WHERE id = $1
