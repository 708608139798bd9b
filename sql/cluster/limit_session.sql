-- Run on every new pooled connection (src/db/mod.rs, `connect_lazy`): settings that let the
-- server end the session on its own once its client is gone. A failover or a dropped NAT
-- mapping can leave the server side of a connection open with nobody behind it, and such a
-- session keeps what it holds: a transaction's row locks (an API request given up
-- mid-transaction at its deadline) until it has been idle in it for $1, and a session's
-- advisory lock (the maintenance lock) until the server's TCP gives up on the client:
-- keepalive probes after 60 s idle, or 2 minutes with data unacknowledged
-- (tcp_user_timeout), instead of the operating system's defaults of two hours and about 15
-- minutes. Ignored on a Unix socket, where nothing can vanish this way; a proxy that stays
-- up between the two keeps the server's side alive whatever is set here.
SELECT set_config('idle_in_transaction_session_timeout', $1, false) AS "idle_in_transaction!",
       set_config('tcp_keepalives_idle', '60', false) AS "keepalives_idle!",
       set_config('tcp_keepalives_interval', '10', false) AS "keepalives_interval!",
       set_config('tcp_keepalives_count', '6', false) AS "keepalives_count!",
       set_config('tcp_user_timeout', '120000', false) AS "user_timeout!"
