-- The daily budget of Zoho API calls: each run's calls per UTC day, written
-- in the transaction that saves the run's progress. A day's total is the
-- sum of its rows, whichever day the runs started; a run that reaches the
-- budget pauses (status running, no holder: locked_by NULL) until
-- locked_until, the start of the next UTC day. No foreign key: the count
-- of a day stays true whatever becomes of its runs.
CREATE TABLE tds_sync_calls (
    source TEXT   NOT NULL,
    day    DATE   NOT NULL,
    run_id BIGINT NOT NULL,
    calls  BIGINT NOT NULL,
    PRIMARY KEY (source, day, run_id)
);

-- The runs before this migration counted their calls on the day they
-- started.
INSERT INTO tds_sync_calls (source, day, run_id, calls)
SELECT source, (started_at AT TIME ZONE 'UTC')::date, id, api_calls FROM tds_sync_runs WHERE api_calls > 0;

-- One running run per source, no longer one over every source: a run paused
-- at its organisation's budget (which can last days) must not hold off the
-- runs of another organisation, which has a budget of its own.
DROP INDEX tds_sync_runs_running_idx;
CREATE UNIQUE INDEX tds_sync_runs_running_idx ON tds_sync_runs (source) WHERE status = 'running';
