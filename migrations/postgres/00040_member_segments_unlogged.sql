-- +goose Up
-- member_segments holds only what the segments run derives from the
-- purchases, and the run now replaces it whole (jobs' applySegments),
-- unlogged as member_churn: no WAL for its million rows, where writing
-- only the memberships that changed still took 6.4 s and 218 MB of WAL at
-- a million members. PostgreSQL empties it when it recovers from a crash;
-- its row of unlogged_marks goes with it, and the engine runs the segments
-- again (jobs.Runner.RecoverDerived).
ALTER TABLE member_segments SET UNLOGGED;
INSERT INTO unlogged_marks (name) VALUES ('member_segments');

-- +goose Down
DELETE FROM unlogged_marks WHERE name = 'member_segments';
ALTER TABLE member_segments SET LOGGED;
