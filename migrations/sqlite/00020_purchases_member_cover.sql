-- +goose Up
-- Nothing on SQLite: PostgreSQL's index of a member's purchases now carries
-- the columns of the members' summaries (see its migration); SQLite sums
-- the touched members through purchases_member_time as before.
SELECT 1;

-- +goose Down
SELECT 1;
