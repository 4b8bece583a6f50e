-- +goose Up
-- Imports of members and purchase history from CSV (§15). One row per
-- import, its counters moved once per chunk in the chunk's transaction, so
-- they always say what is committed. heartbeat_at moves with them: a
-- running import whose heartbeat is old belongs to a process that died,
-- and is failed by the next start (imports.go).
CREATE TABLE imports (
    id           text PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('members', 'purchases')),
    status       text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    dry_run      boolean     NOT NULL,
    earn         boolean     NOT NULL,
    columns      text        NOT NULL DEFAULT '',
    rows_total   bigint      NOT NULL DEFAULT 0,
    rows_done    bigint      NOT NULL DEFAULT 0,
    rows_created bigint      NOT NULL DEFAULT 0,
    rows_skipped bigint      NOT NULL DEFAULT 0,
    rows_failed  bigint      NOT NULL DEFAULT 0,
    error        text,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    heartbeat_at timestamptz NOT NULL
);
-- One import of each kind runs at a time.
CREATE UNIQUE INDEX imports_one_running ON imports (kind) WHERE status = 'running';

-- The rows an import refused, with the line they started on and the
-- record as it was read (a CSV line), at most importErrorsKept an import.
CREATE TABLE import_errors (
    import_id text    NOT NULL REFERENCES imports (id),
    line      bigint  NOT NULL,
    message   text    NOT NULL,
    record    text    NOT NULL,
    PRIMARY KEY (import_id, line)
);

-- An opening balance migrated by a members import is a ledger entry of its own kind.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback',
        'payment', 'payment_refund', 'import'));

-- +goose Down
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback',
        'payment', 'payment_refund'));
DROP TABLE import_errors;
DROP TABLE imports;
