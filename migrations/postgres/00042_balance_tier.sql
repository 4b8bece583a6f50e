-- +goose Up
-- A member's tier, kept on its balance row as well, so that a job that
-- locks and keeps thousands of balances (the expiry's, for a day's lots;
-- the gifts'; the tier review's) reads a balance row a member and no row
-- of members: at a million members that was a page of members and a leaf
-- of its key read from outside shared_buffers for nearly every lot a day's
-- expiry closed. The triggers keep it equal to members.tier_code, whatever
-- writes either row: a new balance row takes its member's tier, and a
-- member's tier, once changed, is copied to its balance row in the same
-- transaction. A tier changes rarely (an upgrade at a purchase, a move at
-- a review), so the tills pay for the copy only then.
ALTER TABLE member_balances ADD COLUMN tier_code text;
UPDATE member_balances b SET tier_code = m.tier_code FROM members m
    WHERE m.id = b.member_id AND m.tier_code IS NOT NULL;
-- +goose StatementBegin
CREATE FUNCTION balance_tier_from_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT tier_code INTO NEW.tier_code FROM members WHERE id = NEW.member_id;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER balance_tier_from_member BEFORE INSERT ON member_balances
    FOR EACH ROW WHEN (NEW.tier_code IS NULL) EXECUTE FUNCTION balance_tier_from_member();
-- +goose StatementBegin
CREATE FUNCTION member_tier_to_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE member_balances SET tier_code = NEW.tier_code WHERE member_id = NEW.id;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER member_tier_to_balance AFTER UPDATE OF tier_code ON members
    FOR EACH ROW WHEN (OLD.tier_code IS DISTINCT FROM NEW.tier_code) EXECUTE FUNCTION member_tier_to_balance();

-- +goose Down
DROP TRIGGER member_tier_to_balance ON members;
DROP FUNCTION member_tier_to_balance();
DROP TRIGGER balance_tier_from_member ON member_balances;
DROP FUNCTION balance_tier_from_member();
ALTER TABLE member_balances DROP COLUMN tier_code;
