-- +goose Up
-- The event log (§14): every change an outside system cares about, written
-- in the same transaction as the change. id is taken at insert (the public
-- id is "evt_" || id); position is commit order, NULL until the sequencer
-- of a serve process gives it (events.go): ids are taken before commit and
-- transactions commit out of id order, so readers page by position, never
-- by id. data is the JSON text of the event's data, sent as it is stored.
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position    bigint,
    type        text        NOT NULL,
    member_id   text,
    occurred_at timestamptz NOT NULL,
    data        text        NOT NULL
);
-- Paging by position; the sequencer's max(position).
CREATE UNIQUE INDEX events_position ON events (position) WHERE position IS NOT NULL;
-- The sequencer's work: what is not yet positioned, small at every instant.
CREATE INDEX events_unpositioned ON events (id) WHERE position IS NULL;
-- A member's events (?member_id=, erasure's scrub): per member, id order is
-- commit order (ids are taken under the member's row lock).
CREATE INDEX events_member ON events (member_id, id) WHERE member_id IS NOT NULL;

-- Durable consumer cursors (webhooks, the NATS sink): the position read up
-- to, and a lease so that one serve process at a time advances each.
CREATE TABLE event_cursors (
    name        text PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    lease_owner text,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE event_cursors;
DROP TABLE events;
