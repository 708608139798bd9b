-- Appends many attempt log rows at once (one array element per attempt).
INSERT INTO attempts (delivery_id, subscription_id, attempt_number, outcome, status_code,
                      error, duration_ms, response_excerpt, target_url, created_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::text[],
                     $7::int[], $8::text[], $9::text[], $10::timestamptz[])
