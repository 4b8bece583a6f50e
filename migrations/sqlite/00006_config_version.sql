-- +goose Up
-- config_version counts changes to the settings every purchase and balance
-- reads (the program row and the tiers), so an engine can keep them parsed
-- in memory and check with one small read that they are still current.
-- Triggers keep it, so no writer, and no other engine, can forget to.
ALTER TABLE program ADD COLUMN config_version INTEGER NOT NULL DEFAULT 0;

-- +goose StatementBegin
CREATE TRIGGER program_config_version AFTER UPDATE ON program
WHEN NEW.config_version = OLD.config_version
BEGIN
    UPDATE program SET config_version = config_version + 1 WHERE id = NEW.id;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER tiers_config_insert AFTER INSERT ON tiers
BEGIN
    UPDATE program SET config_version = config_version + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER tiers_config_update AFTER UPDATE ON tiers
BEGIN
    UPDATE program SET config_version = config_version + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER tiers_config_delete AFTER DELETE ON tiers
BEGIN
    UPDATE program SET config_version = config_version + 1 WHERE id = 1;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER tiers_config_delete;
DROP TRIGGER tiers_config_update;
DROP TRIGGER tiers_config_insert;
DROP TRIGGER program_config_version;
ALTER TABLE program DROP COLUMN config_version;
