-- +goose Up
-- The balance row keeps what a read needs, as of as_of, under the settings
-- of config_version, and the next instant at which any of it changes by
-- itself (NULL: none): a read before next_change_at is this one row. Past
-- it, a read finishes the answer from the open lots and the purchases in
-- the qualifying window only.
--   open_available, open_pending: the open lots' remainders by state (debt
--     is not taken off: available = open_available - debt);
--   qualifying_spend: the purchases in the qualifying period, less returns;
--   expiring_soon: JSON [{points, expires_at}] of the lots expiring within
--     the window (the inactivity deadline is added when read).
ALTER TABLE member_balances
    ADD COLUMN open_available   bigint      NOT NULL DEFAULT 0,
    ADD COLUMN open_pending     bigint      NOT NULL DEFAULT 0,
    ADD COLUMN qualifying_spend bigint      NOT NULL DEFAULT 0,
    ADD COLUMN expiring_soon    text        NOT NULL DEFAULT '[]',
    ADD COLUMN as_of            timestamptz,
    ADD COLUMN next_change_at   timestamptz,
    ADD COLUMN config_version   bigint      NOT NULL DEFAULT 0;
-- Existing rows are kept under no settings (config_version 0), so the first
-- read or write computes them from the open lots. Their version moves past
-- anything the old rule (writes plus instants over the whole history) could
-- have shown: at most three instants a lot, one a purchase, two for the
-- inactivity deadline.
UPDATE member_balances b SET as_of = b.updated_at,
    version = b.version + 3 + 3 * (SELECT COUNT(*) FROM lots l WHERE l.member_id = b.member_id)
        + (SELECT COUNT(*) FROM purchases p WHERE p.member_id = b.member_id);
ALTER TABLE member_balances ALTER COLUMN as_of SET NOT NULL;
-- A member's open lots, expiring first: what draws and reads past
-- next_change_at walk; closed lots are never read again.
CREATE INDEX lots_member_open ON lots (member_id, expires_at, id) WHERE remaining > 0;

-- +goose Down
DROP INDEX lots_member_open;
ALTER TABLE member_balances DROP COLUMN open_available, DROP COLUMN open_pending, DROP COLUMN qualifying_spend,
    DROP COLUMN expiring_soon, DROP COLUMN as_of, DROP COLUMN next_change_at, DROP COLUMN config_version;
