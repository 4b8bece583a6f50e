-- +goose Up
-- The balance row keeps what a read needs, as of as_of, under the settings
-- of config_version, and the next instant at which any of it changes by
-- itself (NULL: none): a read before next_change_at is this one row. Past
-- it, a read finishes the answer from the open lots and the purchases in
-- the qualifying window only. See migrations/postgres/00010.
ALTER TABLE member_balances ADD COLUMN open_available INTEGER NOT NULL DEFAULT 0;
ALTER TABLE member_balances ADD COLUMN open_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE member_balances ADD COLUMN qualifying_spend INTEGER NOT NULL DEFAULT 0;
ALTER TABLE member_balances ADD COLUMN expiring_soon text NOT NULL DEFAULT '[]';
ALTER TABLE member_balances ADD COLUMN as_of DATETIME NOT NULL DEFAULT '1970-01-01 00:00:00+00:00';
ALTER TABLE member_balances ADD COLUMN next_change_at DATETIME;
ALTER TABLE member_balances ADD COLUMN config_version INTEGER NOT NULL DEFAULT 0;
-- Existing rows are kept under no settings (config_version 0), so the first
-- read or write computes them from the open lots; their version moves past
-- anything the old rule could have shown (see the PostgreSQL migration).
UPDATE member_balances SET as_of = updated_at,
    version = version + 3 + 3 * (SELECT COUNT(*) FROM lots l WHERE l.member_id = member_balances.member_id)
        + (SELECT COUNT(*) FROM purchases p WHERE p.member_id = member_balances.member_id);
CREATE INDEX lots_member_open ON lots (member_id, expires_at, id) WHERE remaining > 0;

-- +goose Down
DROP INDEX lots_member_open;
ALTER TABLE member_balances DROP COLUMN open_available;
ALTER TABLE member_balances DROP COLUMN open_pending;
ALTER TABLE member_balances DROP COLUMN qualifying_spend;
ALTER TABLE member_balances DROP COLUMN expiring_soon;
ALTER TABLE member_balances DROP COLUMN as_of;
ALTER TABLE member_balances DROP COLUMN next_change_at;
ALTER TABLE member_balances DROP COLUMN config_version;
