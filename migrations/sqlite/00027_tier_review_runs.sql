-- +goose Up
-- Where the tier review stands: the as-of of its last run for the present
-- (a run for a past as-of leaves it), the settings' config_version then
-- (the program's and the tiers'). The next run, for the same or a later
-- as-of under the same settings, judges only the members whose tier can
-- have become movable since: those whose protection ended since, whose
-- purchase left the qualifying period since, or who have a return written
-- since (a margin before the as-of, as the purchases' marks take it). A
-- member passed over then kept its spend at or above its tier's threshold,
-- and nothing else lowers it.
CREATE TABLE tier_review_runs (
    id             INTEGER  PRIMARY KEY CHECK (id = 1),
    as_of          DATETIME NOT NULL,
    config_version INTEGER  NOT NULL
);

-- +goose Down
DROP TABLE tier_review_runs;
