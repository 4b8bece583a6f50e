-- +goose Up
-- The birthday-gifts run first marks the unclaimed gifts past their claim
-- window expired (expireGiftsSQL), which read every gift ever given
-- without an index: a nightly cost that grew with history. The gifts
-- still available, by the end of their window, are a small partial index.
CREATE INDEX member_gifts_open ON member_gifts (expires_at) WHERE status = 'available';

-- +goose Down
DROP INDEX member_gifts_open;
