-- +goose Up
-- Positions move out of the event rows. The sequencer gave each committed
-- event its position with an UPDATE, which wrote every event row a second
-- time (a purchase.created row is the whole answer) with new entries in
-- three indexes, and left the old versions for vacuum. Now an event row is
-- written once: its insert also queues its id (the trigger below, for
-- every path that appends events), and the sequencer moves ids from the
-- queue to event_positions, narrow rows, in id order above the highest
-- position given (events.go).
CREATE TABLE event_queue (
    id bigint PRIMARY KEY
);
CREATE TABLE event_positions (
    position bigint PRIMARY KEY,
    id       bigint NOT NULL
);
-- A member's events in position order (?member_id=, events_member) and an
-- event's position by its id (a webhook delivery's retry).
CREATE UNIQUE INDEX event_positions_id ON event_positions (id);

INSERT INTO event_positions (position, id) SELECT position, id FROM events WHERE position IS NOT NULL;
INSERT INTO event_queue (id) SELECT id FROM events WHERE position IS NULL;
DROP INDEX events_unpositioned;
DROP INDEX events_position;
ALTER TABLE events DROP COLUMN position;

-- +goose StatementBegin
CREATE FUNCTION queue_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_queue (id) SELECT id FROM added;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER events_queue AFTER INSERT ON events REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION queue_events();

-- A purchase updates its member's balance row: with room left on its page
-- the new version stays there (a HOT update), with no new entry in the
-- primary key and a smaller WAL record; a full page sends it to another
-- page with a new index entry. New pages keep half their space for this.
ALTER TABLE member_balances SET (fillfactor = 50);

-- +goose Down
ALTER TABLE member_balances RESET (fillfactor);
DROP TRIGGER events_queue ON events;
DROP FUNCTION queue_events();
ALTER TABLE events ADD COLUMN position bigint;
UPDATE events e SET position = p.position FROM event_positions p WHERE p.id = e.id;
CREATE UNIQUE INDEX events_position ON events (position) WHERE position IS NOT NULL;
CREATE INDEX events_unpositioned ON events (id) WHERE position IS NULL;
DROP TABLE event_positions;
DROP TABLE event_queue;
