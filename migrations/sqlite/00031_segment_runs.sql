-- +goose Up
-- The segments run writes only the memberships that changed (a member
-- who entered a segment, or left it), where it replaced every row of
-- member_segments on every run. A row's computed_at is now the run that
-- placed the member in the segment; when the segments were last computed
-- is this one row.
CREATE TABLE segment_runs (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    computed_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE segment_runs;
