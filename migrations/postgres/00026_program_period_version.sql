-- +goose Up
-- period_version is the config_version from which the qualifying period
-- (tier_period, tier_window_days, timezone) is the one in force: a balance
-- row kept at that version or later keeps a qualifying spend measured
-- under it, whatever else in the settings changed since. The tier review
-- passes over such members by their kept spend rather than summing it
-- again. Existing rows start at the current version, so that nothing kept
-- before this migration is taken on trust. A trigger keeps it, as
-- config_version's do, so no writer can forget to: it runs after
-- program_config_version (triggers of one event fire in name order) and
-- takes the version that update gave.
ALTER TABLE program ADD COLUMN period_version bigint NOT NULL DEFAULT 0;
UPDATE program SET period_version = config_version;

-- +goose StatementBegin
CREATE FUNCTION program_period_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tier_period IS DISTINCT FROM OLD.tier_period OR NEW.tier_window_days IS DISTINCT FROM OLD.tier_window_days
        OR NEW.timezone IS DISTINCT FROM OLD.timezone THEN
        NEW.period_version := NEW.config_version;
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER program_period_version BEFORE UPDATE ON program
    FOR EACH ROW EXECUTE FUNCTION program_period_version();

-- +goose Down
DROP TRIGGER program_period_version ON program;
DROP FUNCTION program_period_version();
ALTER TABLE program DROP COLUMN period_version;
