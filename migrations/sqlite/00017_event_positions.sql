-- +goose Up
-- Nothing on SQLite: an event's position is its id, given at insert by the
-- one writer (00013). PostgreSQL's events move their positions to a table
-- of their own in this version.
SELECT 1;

-- +goose Down
SELECT 1;
