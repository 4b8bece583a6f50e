-- +goose Up
-- The balance row carries its member's tier_since too, and the tier
-- review finds the members whose protection ended by it (see the
-- PostgreSQL migration of the same name: there it lets a tier move write
-- the member's row in place). members.tier_since stays what every read
-- shows; each writer of it writes the balance's in the same transaction.
ALTER TABLE member_balances ADD COLUMN tier_since DATETIME;
UPDATE member_balances SET tier_since = (SELECT m.tier_since FROM members m WHERE m.id = member_balances.member_id);
CREATE INDEX member_balances_tier_since ON member_balances (tier_since);
DROP INDEX members_tier_since;

-- +goose Down
CREATE INDEX members_tier_since ON members (tier_code, tier_since);
DROP INDEX member_balances_tier_since;
ALTER TABLE member_balances DROP COLUMN tier_since;
