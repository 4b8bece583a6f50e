-- +goose Up
-- Where the personal offers of each template stand: the as-of of the last
-- run that judged every member it could (or every member, the first time),
-- the template's updated_at then, the instant of the purchases' mark and
-- the mark itself (SQLite's one writer appends purchases in rowid order:
-- the rowid of the last purchase written before that instant). The next
-- run, for a later as-of and an unchanged template, judges only the
-- members whose answer can have changed since: those with a purchase
-- written since the mark or dated since the as-of, and those whose offer
-- of the template ended since the as-of or was edited since offers_since
-- (the cutoff of the first run for the as-of's day: an offer edited after
-- a run that gave it, and in the way of the same day's offer at a later
-- run, is still found the next day). So a night costs the day's purchases
-- and the offers ending, not the lookback's purchases of every member.
CREATE TABLE offer_template_runs (
    template_id         TEXT     PRIMARY KEY REFERENCES offer_templates (id),
    as_of               DATETIME NOT NULL,
    template_updated_at DATETIME NOT NULL,
    cutoff              DATETIME NOT NULL,
    purchase_rowid      INTEGER  NOT NULL,
    offers_since        DATETIME NOT NULL
);
-- The personal offers of a template edited since an instant.
CREATE INDEX offers_template_updated ON offers (template_id, updated_at) WHERE template_id IS NOT NULL;

-- +goose Down
DROP INDEX offers_template_updated;
DROP TABLE offer_template_runs;
