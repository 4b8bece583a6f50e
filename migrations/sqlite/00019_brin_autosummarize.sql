-- +goose Up
-- Nothing on SQLite, which has no BRIN indexes: PostgreSQL's summarize
-- their new page ranges as they fill from this version.
SELECT 1;

-- +goose Down
SELECT 1;
