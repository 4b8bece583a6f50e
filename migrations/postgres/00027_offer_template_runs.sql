-- +goose NO TRANSACTION
-- +goose Up
-- Where the personal offers of each template stand: the as-of of the last
-- run that judged every member it could (or every member, the first time),
-- the template's updated_at then, and the purchases' mark (an instant, by
-- created_at). The next run, for a later as-of and an unchanged template,
-- judges only the members whose answer can have changed since: those with
-- a purchase written since the mark or dated since the as-of, and those
-- whose offer of the template ended since the as-of or was edited since
-- offers_since (the cutoff of the first run for the as-of's day: an offer
-- edited after a run that gave it, and in the way of the same day's offer
-- at a later run, is still found the next day). So a night costs the
-- day's purchases and the offers ending, not the lookback's purchases of
-- every member.
CREATE TABLE IF NOT EXISTS offer_template_runs (
    template_id         text        PRIMARY KEY REFERENCES offer_templates (id),
    as_of               timestamptz NOT NULL,
    template_updated_at timestamptz NOT NULL,
    cutoff              timestamptz NOT NULL,
    offers_since        timestamptz NOT NULL
);
-- The personal offers of a template edited since an instant. Built without
-- blocking the tills; a build that failed part way leaves an invalid
-- index, dropped first when the migration runs again.
DROP INDEX CONCURRENTLY IF EXISTS offers_template_updated;
CREATE INDEX CONCURRENTLY offers_template_updated ON offers (template_id, updated_at) WHERE template_id IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS offers_template_updated;
DROP TABLE IF EXISTS offer_template_runs;
