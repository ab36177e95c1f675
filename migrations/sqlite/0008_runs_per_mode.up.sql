-- One running run per source and mode, no longer one per source: a full
-- sweep too big for one day's budget pauses for days, and the incremental
-- runs that catch what webhooks missed must go on beside it (on the share
-- of the budget a sweep leaves them). Two runs of one mode still exclude
-- each other.
DROP INDEX tds_sync_runs_running_idx;
CREATE UNIQUE INDEX tds_sync_runs_running_idx ON tds_sync_runs (source, mode) WHERE status = 'running';
