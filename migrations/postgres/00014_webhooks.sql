-- +goose Up
-- Webhooks (§14): endpoints, and the deliveries that need a row. The happy
-- path reads events after the endpoint's cursor (event_cursors, name
-- 'webhook:<id>') and records what it delivered in one multi-row insert per
-- batch; a row carries a delivery's state only while it needs one: waiting
-- for a retry (pending), held behind an earlier event of the same member
-- (held), or given up (failed, the dead letter). Delivered rows are history.
CREATE TABLE webhooks (
    id             text        PRIMARY KEY,
    url            text        NOT NULL,
    events         text        NOT NULL, -- JSON array of filters: exact types, 'prefix.*' or '*'
    description    text        NOT NULL DEFAULT '',
    secret         text        NOT NULL,
    active         boolean     NOT NULL DEFAULT true,
    -- Events up to this position were in the log before the endpoint
    -- existed: its deliveries start after it.
    start_position bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              text        PRIMARY KEY,
    webhook_id      text        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        bigint      NOT NULL, -- events.id; no foreign key, the log is purged
    event_position  bigint      NOT NULL,
    event_type      text        NOT NULL,
    member_id       text,
    status          text        NOT NULL CHECK (status IN ('pending', 'held', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    status_code     integer,    -- of the last attempt; null when no answer came
    latency_ms      integer,    -- of the last attempt
    error           text,       -- of the last attempt, short and free of the receiver's body
    next_attempt_at timestamptz,
    -- The first failure of the current run of retries: it is given up 72 h
    -- (the retry window) after it.
    first_failed_at timestamptz,
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    UNIQUE (webhook_id, event_id)
);
-- The open rows, which retry claims and the per-member holds read.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (webhook_id, member_id, event_position)
    WHERE status IN ('pending', 'held');
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at)
    WHERE status IN ('pending', 'held');
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, status, id DESC);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
