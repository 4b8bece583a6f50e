-- +goose NO TRANSACTION
-- +goose Up
-- The birthday-gifts run first marks the unclaimed gifts past their claim
-- window expired (expireGiftsSQL). No index served that, so it read every
-- gift ever given, a table that grows by about one row per member a year:
-- a nightly cost that grew with history. The gifts still available, by
-- the end of their window, are a small partial index (a few weeks of
-- birthdays). Built without blocking the tills; a build that failed part
-- way leaves an invalid index, dropped first when the migration runs again.
DROP INDEX CONCURRENTLY IF EXISTS member_gifts_open;
CREATE INDEX CONCURRENTLY member_gifts_open ON member_gifts (expires_at) WHERE status = 'available';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS member_gifts_open;
