-- +goose Up
-- config_version counts changes to the settings every purchase and balance
-- reads (the program row and the tiers), so an engine can keep them parsed
-- in memory and check with one small read that they are still current.
-- Triggers keep it, so no writer, and no other engine, can forget to.
ALTER TABLE program ADD COLUMN config_version bigint NOT NULL DEFAULT 0;

-- +goose StatementBegin
CREATE FUNCTION program_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.config_version = OLD.config_version THEN
        NEW.config_version := OLD.config_version + 1;
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER program_config_version BEFORE UPDATE ON program
    FOR EACH ROW EXECUTE FUNCTION program_config_version();

-- +goose StatementBegin
CREATE FUNCTION tiers_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE program SET config_version = config_version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER tiers_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tiers
    FOR EACH STATEMENT EXECUTE FUNCTION tiers_config_version();

-- +goose Down
DROP TRIGGER tiers_config_version ON tiers;
DROP FUNCTION tiers_config_version();
DROP TRIGGER program_config_version ON program;
DROP FUNCTION program_config_version();
ALTER TABLE program DROP COLUMN config_version;
