-- +goose Up
-- member_categories keeps, for each member and category, the latest
-- purchase with a line in it, for the loyal segment (see PostgreSQL's
-- migration). On SQLite the watermark is the rowid of the last purchase
-- folded in, as member_activity's.
CREATE TABLE member_categories (
    member_id text     NOT NULL,
    category  text     NOT NULL,
    last_at   DATETIME NOT NULL,
    PRIMARY KEY (member_id, category)
) WITHOUT ROWID;
CREATE TABLE category_state (
    id        integer PRIMARY KEY CHECK (id = 1),
    watermark integer NOT NULL
);

-- +goose Down
DROP TABLE category_state;
DROP TABLE member_categories;
