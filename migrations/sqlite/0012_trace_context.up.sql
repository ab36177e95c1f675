-- The trace context of the request that delivered an event (a W3C
-- traceparent, optionally followed by its tracestate), stored when the
-- host traces (tds.WithTraceContext), so that the job's attempts, in any
-- process and after any delay, can link to it. NULL when not traced.
ALTER TABLE tds_inbox_events ADD COLUMN trace_context TEXT;
