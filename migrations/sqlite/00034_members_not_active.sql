-- +goose Up
-- The members who are not active (erased), by id: the segments job leaves
-- them out of every segment by an anti-join with these few (notActive),
-- which this index answers without reading the members' rows.
CREATE INDEX members_not_active ON members (id) WHERE status <> 'active';

-- +goose Down
DROP INDEX members_not_active;
