-- Alerts: the built-in rules' alerts, open and resolved, and the per-minute
-- counters each process flushes of what it counts only in memory.

-- One row per alert, from its first breaching evaluation to its
-- resolution; resolved alerts are history.
CREATE TABLE tds_alerts (
    id               BIGSERIAL        PRIMARY KEY,
    rule             TEXT             NOT NULL,
    -- the rule and label set (alert.Fingerprint)
    fingerprint      TEXT             NOT NULL,
    labels           JSONB            NOT NULL DEFAULT '{}',
    state            TEXT             NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity         TEXT             NOT NULL,
    value            DOUBLE PRECISION NOT NULL,
    started_at       TIMESTAMPTZ      NOT NULL,
    firing_at        TIMESTAMPTZ,
    resolved_at      TIMESTAMPTZ,
    acknowledged_at  TIMESTAMPTZ,
    silenced_until   TIMESTAMPTZ,
    -- claimed in the statement that decides to notify, so that two
    -- evaluating processes send one notification
    last_notified_at TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ      NOT NULL,
    -- bumped by every change: the compare-and-set of evaluations
    revision         BIGINT           NOT NULL DEFAULT 0
);

-- at most one open alert per fingerprint
CREATE UNIQUE INDEX tds_alerts_open_idx ON tds_alerts (fingerprint) WHERE state IN ('pending', 'firing');
CREATE INDEX tds_alerts_state_idx ON tds_alerts (state, id);

-- Counts kept in memory by each process (refused webhook requests, Zoho
-- 429s, token refresh failures), flushed once a minute and summed over a
-- window by the rules.
CREATE TABLE tds_alert_counters (
    name    TEXT        NOT NULL,
    minute  TIMESTAMPTZ NOT NULL,
    process TEXT        NOT NULL,
    n       BIGINT      NOT NULL,
    PRIMARY KEY (name, minute, process)
);

-- dead letters by when they were recorded
CREATE INDEX tds_sync_attempts_failed_at_idx ON tds_sync_attempts (failed_at);
