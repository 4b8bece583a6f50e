-- +goose Up
-- Where the tier review stands: the as-of of its last run for the present
-- (a run for a past as-of leaves it), the settings' config_version then
-- (the program's and the tiers'). The next run, for the same or a later
-- as-of under the same settings, judges only the members whose tier can
-- have become movable since: those whose protection ended since, whose
-- purchase left the qualifying period since, or who have a return written
-- since (a margin before the as-of, as the purchases' marks take it). A
-- member passed over then kept its spend at or above its tier's threshold,
-- and nothing else lowers it; so a night costs the purchases leaving the
-- period, the day's returns and ends of protection, not a sum over every
-- member above the lowest tier.
CREATE TABLE tier_review_runs (
    id             integer     PRIMARY KEY CHECK (id = 1),
    as_of          timestamptz NOT NULL,
    config_version bigint      NOT NULL
);

-- +goose Down
DROP TABLE tier_review_runs;
