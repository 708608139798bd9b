-- The operator dashboard (/ui) and subscriber portal links (issue 16).
--
-- Dashboard sessions live in a table rather than only in a signed cookie so that "Log out"
-- really ends a session: a copied cookie stops working at once, and other operators stay
-- logged in. The cookie carries 32 random bytes; only their SHA-256 is stored, so a read
-- of this table (a backup, a replica) gives no usable session. One primary-key read per
-- dashboard page; expired rows are removed at each login.
CREATE TABLE ui_sessions (
    token_hash bytea PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires_idx ON ui_sessions (expires_at);

-- Portal links are signed by the server and checked without a row of their own; revoking
-- a subscription's links moves this instant forward: links issued at or before it are
-- refused. NULL: none revoked.
ALTER TABLE subscriptions ADD COLUMN portal_links_valid_after timestamptz;

-- Search over names (`GET /subscriptions?q=`, the dashboard's search box): word-prefix
-- full-text search with the 'simple' configuration (no stemming, any language), which needs
-- no extension (pg_trgm is not on every managed PostgreSQL).
CREATE INDEX subscriptions_name_search_idx ON subscriptions
    USING gin (to_tsvector('simple', coalesce(name, '')))
    WHERE deleted_at IS NULL;
