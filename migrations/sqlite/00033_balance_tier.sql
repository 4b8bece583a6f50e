-- +goose Up
-- A member's tier, kept on its balance row as well (see PostgreSQL's
-- 00042_balance_tier.sql): a job that keeps many balances reads them
-- without the members' rows. The triggers keep it equal to
-- members.tier_code.
ALTER TABLE member_balances ADD COLUMN tier_code text;
UPDATE member_balances SET tier_code = (SELECT m.tier_code FROM members m WHERE m.id = member_balances.member_id);
-- +goose StatementBegin
CREATE TRIGGER balance_tier_from_member AFTER INSERT ON member_balances
WHEN NEW.tier_code IS NULL
BEGIN
    UPDATE member_balances SET tier_code = (SELECT m.tier_code FROM members m WHERE m.id = NEW.member_id)
    WHERE member_id = NEW.member_id;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER member_tier_to_balance AFTER UPDATE OF tier_code ON members
WHEN OLD.tier_code IS NOT NEW.tier_code
BEGIN
    UPDATE member_balances SET tier_code = NEW.tier_code WHERE member_id = NEW.id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER member_tier_to_balance;
DROP TRIGGER balance_tier_from_member;
ALTER TABLE member_balances DROP COLUMN tier_code;
