-- +goose Up
-- The segments run writes only the memberships that changed (a member
-- who entered a segment, or left it), where it replaced every row of
-- member_segments each night: at a million members that was a new table of
-- a million rows and its indexes, a third of the night's WAL. A row's
-- computed_at is now the run that placed the member in the segment; when
-- the segments were last computed is this one row.
CREATE TABLE segment_runs (
    id          smallint PRIMARY KEY CHECK (id = 1),
    computed_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE segment_runs;
