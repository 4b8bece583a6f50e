-- +goose Up
-- The deliveries an endpoint's stream makes on the first attempt, nearly
-- all of its history, are kept as one row per batch of the log (500
-- events by default), the batch's deliveries in a JSON array, instead of
-- a row each in webhook_deliveries: a row a delivery was most of what the
-- sinks cost SQLite's single writer, and the same schema serves both
-- databases. A delivery's id is its batch's id with its place in the
-- batch in the last four hex digits (loyalty/webhooks/history.go).
-- webhook_deliveries keeps the rows whose state changes: held, waiting
-- for a retry, given up, and those delivered by a retry.
CREATE TABLE webhook_delivered (
    webhook_id     text        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    id             text        NOT NULL,
    first_event_id INTEGER     NOT NULL, -- the least and greatest events.id in the batch
    last_event_id  INTEGER     NOT NULL,
    events         integer     NOT NULL CHECK (events BETWEEN 1 AND 65536),
    created_at     DATETIME    NOT NULL,
    items          text        NOT NULL, -- JSON array, one object a delivery, in log order
    PRIMARY KEY (webhook_id, id),
    CHECK (first_event_id <= last_event_id)
);
-- A stream taking over an endpoint looks for the events recorded past its
-- cursor by the last event of each batch.
CREATE INDEX webhook_delivered_events ON webhook_delivered (webhook_id, last_event_id);

-- +goose Down
DROP TABLE webhook_delivered;
