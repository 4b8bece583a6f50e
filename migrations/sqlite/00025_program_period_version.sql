-- +goose Up
-- period_version is the config_version from which the qualifying period
-- (tier_period, tier_window_days, timezone) is the one in force: a balance
-- row kept at that version or later keeps a qualifying spend measured
-- under it, whatever else in the settings changed since. The tier review
-- passes over such members by their kept spend rather than summing it
-- again. Existing rows start at the current version, so that nothing kept
-- before this migration is taken on trust. A trigger keeps it, as
-- config_version's do, so no writer can forget to. It sets the version
-- after the current one: whichever of it and program_config_version fires
-- first, no row kept before the change reaches it, and the version a
-- setting change leaves behind does.
ALTER TABLE program ADD COLUMN period_version INTEGER NOT NULL DEFAULT 0;
UPDATE program SET period_version = config_version;

-- +goose StatementBegin
CREATE TRIGGER program_period_version AFTER UPDATE OF tier_period, tier_window_days, timezone ON program
WHEN NEW.tier_period IS NOT OLD.tier_period OR NEW.tier_window_days IS NOT OLD.tier_window_days
    OR NEW.timezone IS NOT OLD.timezone
BEGIN
    UPDATE program SET period_version = config_version + 1 WHERE id = NEW.id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER program_period_version;
ALTER TABLE program DROP COLUMN period_version;
