-- +goose Up
-- member_categories keeps, for each member and category, the latest
-- purchase with a line in it: the loyal segment counts a member's
-- categories of its window from these rows instead of reading every line
-- of a weekly shopper's purchases each night (at 100,000 members, 760,000
-- buffers of purchase lines a night; at a million, most of the segments
-- run). The segments run folds in the lines of the purchases created since
-- category_state's watermark (an hour's margin, as member_activity's;
-- folding a line twice changes nothing, a latest purchase is a maximum).
-- A member with a category's latest purchase after a run's as-of (a run
-- for a past day, a receipt dated ahead) is counted from its lines.
CREATE TABLE member_categories (
    member_id text        NOT NULL,
    category  text        NOT NULL,
    last_at   timestamptz NOT NULL,
    PRIMARY KEY (member_id, category)
);
CREATE TABLE category_state (
    id        integer     PRIMARY KEY CHECK (id = 1),
    watermark timestamptz NOT NULL
);

-- +goose Down
DROP TABLE category_state;
DROP TABLE member_categories;
