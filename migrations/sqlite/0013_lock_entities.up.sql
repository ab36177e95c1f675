-- Nothing to do on SQLite: PostgreSQL's 0013 adds the procedure that takes
-- a completing batch's entity locks, and SQLite has one writer at a time.
-- The number is kept so that both dialects count the same migrations.
SELECT 1;
