-- +goose Up
-- period_version is the config_version from which the qualifying period
-- (tier_period, tier_window_days, timezone) is the one in force: a balance
-- row kept at that version or later keeps a qualifying spend measured
-- under it, whatever else in the settings changed since. The tier review
-- passes over such members by their kept spend rather than summing it
-- again. Existing rows start at the current version, so that nothing kept
-- before this migration is taken on trust.
ALTER TABLE program ADD COLUMN period_version INTEGER NOT NULL DEFAULT 0;
UPDATE program SET period_version = config_version;

-- +goose Down
ALTER TABLE program DROP COLUMN period_version;
