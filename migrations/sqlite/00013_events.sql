-- +goose Up
-- The event log (§14): every change an outside system cares about, written
-- in the same transaction as the change. SQLite has one writer, so commit
-- order is id order and position is id itself; AUTOINCREMENT never gives an
-- id twice, even after the purge empties the table. data is the JSON text of
-- the event's data, sent as it is stored.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        text     NOT NULL,
    member_id   text,
    occurred_at DATETIME NOT NULL,
    data        text     NOT NULL,
    position    INTEGER GENERATED ALWAYS AS (id) VIRTUAL
);
-- A member's events (?member_id=, erasure's scrub).
CREATE INDEX events_member ON events (member_id, id) WHERE member_id IS NOT NULL;

-- Durable consumer cursors (webhooks, the NATS sink): the position read up
-- to, and a lease so that one serve process at a time advances each.
CREATE TABLE event_cursors (
    name        text PRIMARY KEY,
    position    INTEGER  NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until DATETIME,
    updated_at  DATETIME NOT NULL
);

-- +goose Down
DROP TABLE event_cursors;
DROP TABLE events;
