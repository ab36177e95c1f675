-- The leader of housekeeping and of the leader tasks (alert evaluation, the
-- reconciliation schedule) holds a lease row here, renewed while it lives
-- and taken over by another process once it has expired. It replaces a
-- session advisory lock, which a transaction pooler (PgBouncer in
-- transaction mode) would leave on whichever server connection took it.
CREATE TABLE tds_leader (
    name       TEXT        PRIMARY KEY,
    holder     TEXT        NOT NULL,
    -- when the holder took the lead (kept while it renews)
    elected_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
