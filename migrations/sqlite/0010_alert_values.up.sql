-- Alerts tell what happened: the value that fired and the peak while
-- firing, kept apart from the value of the last evaluation (which, once
-- resolved, is the value that resolved it); and the claim to notify kept
-- apart from the time a notification was delivered.

ALTER TABLE tds_alerts ADD COLUMN fired_value REAL;
ALTER TABLE tds_alerts ADD COLUMN peak_value REAL;
-- claimed in the statement that decides to notify, so that two evaluating
-- processes send one notification; last_notified_at is now set only once
-- a receiver accepted a notification
ALTER TABLE tds_alerts ADD COLUMN notify_claimed_at TIMESTAMP;

-- Open alerts carry on from what was known: the claim is the old
-- last_notified_at, and a firing alert fired at least at its last value.
UPDATE tds_alerts SET notify_claimed_at = last_notified_at;
UPDATE tds_alerts SET fired_value = value, peak_value = value WHERE state = 'firing';

-- A reconciliation run that would delete more than its threshold waits
-- for an operator's confirmation (the reconcile_needs_confirmation alert).
-- SQLite cannot alter a CHECK constraint, and rebuilding tds_sync_runs in
-- this transaction would cascade a delete to its drift (foreign keys are
-- on and cannot be turned off inside a transaction). Widening the list of
-- allowed values is the change SQLite documents as safe to make in the
-- schema text (existing rows still pass it): the text is edited, only when
-- it does not allow the value yet, and the schema reloaded. The scratch
-- table bumps the schema cookie, so other connections reload it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql, '''cancelled'')', '''cancelled'', ''needs_confirmation'')')
WHERE type = 'table' AND name = 'tds_sync_runs' AND sql NOT LIKE '%needs_confirmation%';
PRAGMA writable_schema = RESET;
CREATE TABLE tds_schema_reload_0010 (x INTEGER);
DROP TABLE tds_schema_reload_0010;
