-- The first $2 bytes a delivery sends (its own body, or its fan-out event's payload) and
-- the whole length: the dashboard shows at most that much, and a body of many megabytes is
-- never read whole for a page. Three primary-key reads.
SELECT substring(COALESCE(b.body, e.payload) FROM 1 FOR $2::int) AS shown,
       octet_length(COALESCE(b.body, e.payload)) AS length
FROM deliveries AS d
LEFT JOIN delivery_bodies AS b ON b.delivery_id = d.id
LEFT JOIN events AS e ON e.id = d.event_id
WHERE d.id = $1
