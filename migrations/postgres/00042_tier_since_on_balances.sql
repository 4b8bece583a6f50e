-- +goose NO TRANSACTION
-- +goose Up
-- The tier review finds the members whose protection ended by when their
-- tier was reached, and it found them by members_tier_since. But an index
-- on a column a tier move changes makes every move a new version of the
-- member's row in each of members' indexes (its key, external id, email,
-- phone, tier and birthday): at a million members, a random leaf page of
-- each for every member moved, most written to the WAL whole. The balance
-- row, which every tier move writes anyway (its version, under its lock),
-- now carries the tier_since of its member as well, and the review's
-- index is on it: a move writes the member's row in place (a HOT update,
-- members' indexes untouched) and the balance into its key and this
-- index. members.tier_since stays what every read shows; each writer of
-- it writes the balance's in the same transaction.
ALTER TABLE member_balances ADD COLUMN IF NOT EXISTS tier_since timestamptz;
-- Copied 10,000 balances a transaction, so that a till waits for one
-- batch at most.
-- +goose StatementBegin
DO $$
DECLARE
    last text := '';
    upto text;
BEGIN
    LOOP
        SELECT max(member_id) INTO upto FROM (SELECT member_id FROM member_balances WHERE member_id > last
            ORDER BY member_id LIMIT 10000) c;
        EXIT WHEN upto IS NULL;
        UPDATE member_balances b SET tier_since = m.tier_since FROM members m
            WHERE m.id = b.member_id AND b.member_id > last AND b.member_id <= upto
            AND b.tier_since IS DISTINCT FROM m.tier_since;
        COMMIT;
        last := upto;
    END LOOP;
END $$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS member_balances_tier_since ON member_balances (tier_since);
DROP INDEX CONCURRENTLY IF EXISTS members_tier_since;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS members_tier_since ON members (tier_code, tier_since);
DROP INDEX CONCURRENTLY IF EXISTS member_balances_tier_since;
ALTER TABLE member_balances DROP COLUMN IF EXISTS tier_since;
