-- The exact bytes a delivery sends: its own body, or its fan-out event's payload. For the
-- dashboard's delivery page; three primary-key reads.
SELECT COALESCE(b.body, e.payload) AS body
FROM deliveries AS d
LEFT JOIN delivery_bodies AS b ON b.delivery_id = d.id
LEFT JOIN events AS e ON e.id = d.event_id
WHERE d.id = $1
