-- +goose Up
-- member_churn holds only what the churn-risk run derives from the
-- purchases, and the run writes it whole every night: at a million
-- members 880,000 rows and two indexes, 150 MB of WAL, and the indexes'
-- files synced to disk as they are built. The tills' commits flush the WAL
-- written before them and sync behind the same disk, so they waited for
-- the job's writes. Unlogged, the table goes to no WAL and is never
-- synced but at a shutdown. PostgreSQL empties an unlogged table when it
-- recovers from a crash (and a standby holds none of its rows); the row of
-- unlogged_marks, emptied with it, is how the engine tells, and then it
-- scores every member again (jobs.Runner.RecoverUnlogged).
ALTER TABLE member_churn SET UNLOGGED;
CREATE UNLOGGED TABLE unlogged_marks (
    name text PRIMARY KEY
);
INSERT INTO unlogged_marks (name) VALUES ('member_churn');

-- +goose Down
DROP TABLE unlogged_marks;
ALTER TABLE member_churn SET LOGGED;
