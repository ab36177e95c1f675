-- Alerts tell what happened: the value that fired and the peak while
-- firing, kept apart from the value of the last evaluation (which, once
-- resolved, is the value that resolved it); and the claim to notify kept
-- apart from the time a notification was delivered.

ALTER TABLE tds_alerts ADD COLUMN fired_value DOUBLE PRECISION;
ALTER TABLE tds_alerts ADD COLUMN peak_value DOUBLE PRECISION;
-- claimed in the statement that decides to notify, so that two evaluating
-- processes send one notification; last_notified_at is now set only once
-- a receiver accepted a notification
ALTER TABLE tds_alerts ADD COLUMN notify_claimed_at TIMESTAMPTZ;

-- Open alerts carry on from what was known: the claim is the old
-- last_notified_at, and a firing alert fired at least at its last value.
UPDATE tds_alerts SET notify_claimed_at = last_notified_at;
UPDATE tds_alerts SET fired_value = value, peak_value = value WHERE state = 'firing';

-- A reconciliation run that would delete more than its threshold waits
-- for an operator's confirmation (the reconcile_needs_confirmation alert).
ALTER TABLE tds_sync_runs DROP CONSTRAINT IF EXISTS tds_sync_runs_status_check;
ALTER TABLE tds_sync_runs ADD CONSTRAINT tds_sync_runs_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'needs_confirmation'));
