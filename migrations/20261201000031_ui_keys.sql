-- A random key the instances share, for what must not be derivable from the admin token:
-- portal links are signed with it (a link handed to a customer must not let anyone test
-- guesses of the admin token offline against its signature), and each dashboard session
-- carries a fingerprint of the admin token under it, so replacing the admin token ends
-- every session. The first instance that needs the key makes it.
CREATE TABLE ui_keys (
    name       text PRIMARY KEY,
    key        bytea NOT NULL CHECK (octet_length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Sessions opened before this migration match no fingerprint: those operators log in again.
ALTER TABLE ui_sessions ADD COLUMN admin_fingerprint bytea NOT NULL DEFAULT ''::bytea;
