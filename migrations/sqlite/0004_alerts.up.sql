-- Alerts: the built-in rules' alerts, open and resolved, and the per-minute
-- counters each process flushes of what it counts only in memory.

-- One row per alert, from its first breaching evaluation to its
-- resolution; resolved alerts are history.
CREATE TABLE tds_alerts (
    id               INTEGER          PRIMARY KEY AUTOINCREMENT,
    rule             TEXT             NOT NULL,
    -- the rule and label set (alert.Fingerprint)
    fingerprint      TEXT             NOT NULL,
    labels           TEXT             NOT NULL DEFAULT '{}',
    state            TEXT             NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity         TEXT             NOT NULL,
    value            REAL             NOT NULL,
    started_at       TIMESTAMP        NOT NULL,
    firing_at        TIMESTAMP  ,
    resolved_at      TIMESTAMP  ,
    acknowledged_at  TIMESTAMP  ,
    silenced_until   TIMESTAMP  ,
    -- claimed in the statement that decides to notify, so that two
    -- evaluating processes send one notification
    last_notified_at TIMESTAMP  ,
    updated_at       TIMESTAMP        NOT NULL,
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
    minute  TIMESTAMP   NOT NULL,
    process TEXT        NOT NULL,
    n       BIGINT      NOT NULL,
    PRIMARY KEY (name, minute, process)
);

-- dead letters by when they were recorded
CREATE INDEX tds_sync_attempts_failed_at_idx ON tds_sync_attempts (failed_at);
