-- Whether this session may run sql/deliveries/wait_until_durable.sql: PUBLIC may by default,
-- but a database can revoke the function (and one without it answers false too).
SELECT to_regprocedure('pg_catalog.pg_logical_emit_message(boolean, text, text)') IS NOT NULL
       AND has_function_privilege('pg_catalog.pg_logical_emit_message(boolean, text, text)', 'EXECUTE')
       AS "allowed!"
