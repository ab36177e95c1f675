-- The dashboard's session key: random, made by the first process that
-- needs it (INSERT … ON CONFLICT DO NOTHING, then every process reads the
-- row that won). Session cookies are signed with keys derived from it and
-- the admin tokens, so a cookie cannot be used to check guesses of a
-- token offline. Deleting the row signs every browser out.
CREATE TABLE tds_ui_keys (
    name       TEXT        PRIMARY KEY,
    secret     BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
