-- +goose Up
-- A purchase writes a purchase, its lines, an earn entry, a lot and an
-- idempotency record; every index on those tables is one more B-tree entry
-- per purchase through the one writer. What nothing reads goes:
--   lots_member: every per-member lot query reads open lots only, which
--     lots_member_open serves;
--   lots_expiring: the expiry job reads the open lots due, so the index
--     holds open lots only and its scan skips the closed history;
--   purchase_items_category: no query looks lines up by category alone
--     (the category rules join lines from the member's purchases).
DROP INDEX lots_member;
DROP INDEX lots_expiring;
CREATE INDEX lots_open_expiring ON lots (expires_at) WHERE remaining > 0;
DROP INDEX purchase_items_category;

-- offers_version counts the changes to offers (PostgreSQL's purchase reads
-- it to skip the offer queries while no offer is active; kept here so that
-- both schemas hold the same tables).
CREATE TABLE offers_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
);
INSERT INTO offers_version (id, version) VALUES (1, 1);
-- +goose StatementBegin
CREATE TRIGGER offers_version_insert AFTER INSERT ON offers
BEGIN
    UPDATE offers_version SET version = version + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER offers_version_update AFTER UPDATE ON offers
BEGIN
    UPDATE offers_version SET version = version + 1 WHERE id = 1;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER offers_version_delete AFTER DELETE ON offers
BEGIN
    UPDATE offers_version SET version = version + 1 WHERE id = 1;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER offers_version_delete;
DROP TRIGGER offers_version_update;
DROP TRIGGER offers_version_insert;
DROP TABLE offers_version;
CREATE INDEX purchase_items_category ON purchase_items (category);
DROP INDEX lots_open_expiring;
CREATE INDEX lots_expiring ON lots (expires_at);
CREATE INDEX lots_member ON lots (member_id, expires_at);
