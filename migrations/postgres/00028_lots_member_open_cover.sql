-- +goose NO TRANSACTION
-- +goose Up
-- A member's open lots with what keeping its balance reads of them
-- (remaining and available_at; expires_at is in the key), so that a job
-- that keeps thousands of balances (the expiry's, for a day's lots) reads
-- each member's open lots from a leaf page or two of this index, once
-- autovacuum has marked their pages visible, rather than a heap page a lot:
-- a weekly shopper has some fifty open lots, each written in a different
-- week. The key is the old index's, so whatever read that reads this one.
-- Built without blocking the tills; a build that failed part way leaves an
-- invalid index, dropped first when the migration runs again.
DROP INDEX CONCURRENTLY IF EXISTS lots_member_open_cover;
CREATE INDEX CONCURRENTLY lots_member_open_cover ON lots (member_id, expires_at, id)
    INCLUDE (remaining, available_at) WHERE remaining > 0;
DROP INDEX CONCURRENTLY IF EXISTS lots_member_open;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS lots_member_open ON lots (member_id, expires_at, id) WHERE remaining > 0;
DROP INDEX CONCURRENTLY IF EXISTS lots_member_open_cover;
