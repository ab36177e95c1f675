-- The leader of housekeeping and of the leader tasks (alert evaluation, the
-- reconciliation schedule) holds a lease row here, renewed while it lives
-- and taken over by another process once it has expired: one leader among
-- the processes sharing a database file too.
CREATE TABLE tds_leader (
    name       TEXT     PRIMARY KEY,
    holder     TEXT     NOT NULL,
    -- when the holder took the lead (kept while it renews)
    elected_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
