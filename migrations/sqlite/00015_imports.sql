-- +goose NO TRANSACTION
-- +goose Up
-- Imports of members and purchase history from CSV (§15); see the
-- PostgreSQL file. An opening balance is a ledger entry of kind import:
-- SQLite cannot change a CHECK constraint, so ledger_entries is rebuilt as
-- in 00012, foreign keys off, outside goose's transaction.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE imports (
    id           text PRIMARY KEY,
    kind         text     NOT NULL CHECK (kind IN ('members', 'purchases')),
    status       text     NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    dry_run      boolean  NOT NULL,
    earn         boolean  NOT NULL,
    columns      text        NOT NULL DEFAULT '',
    rows_total   INTEGER  NOT NULL DEFAULT 0,
    rows_done    INTEGER  NOT NULL DEFAULT 0,
    rows_created INTEGER  NOT NULL DEFAULT 0,
    rows_skipped INTEGER  NOT NULL DEFAULT 0,
    rows_failed  INTEGER  NOT NULL DEFAULT 0,
    error        text,
    started_at   DATETIME NOT NULL,
    finished_at  DATETIME,
    heartbeat_at DATETIME NOT NULL
);
CREATE UNIQUE INDEX imports_one_running ON imports (kind) WHERE status = 'running';
CREATE TABLE import_errors (
    import_id text    NOT NULL REFERENCES imports (id),
    line      INTEGER NOT NULL,
    message   text    NOT NULL,
    record    text    NOT NULL,
    PRIMARY KEY (import_id, line)
);

CREATE TABLE ledger_entries_new (
    id            text PRIMARY KEY,
    member_id     text        NOT NULL REFERENCES members (id),
    kind          text        NOT NULL CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback',
        'payment', 'payment_refund', 'import')),
    points        INTEGER      NOT NULL CHECK (points <> 0),
    occurred_at   DATETIME NOT NULL,
    available_at  DATETIME NOT NULL,
    expires_at    DATETIME,
    purchase_id   text REFERENCES purchases (id),
    return_id     text REFERENCES returns (id),
    redemption_id text,
    offer_id      text,
    description   text        NOT NULL,
    created_at    DATETIME NOT NULL
);
INSERT INTO ledger_entries_new SELECT id, member_id, kind, points, occurred_at, available_at, expires_at, purchase_id,
    return_id, redemption_id, offer_id, description, created_at FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_new RENAME TO ledger_entries;
CREATE INDEX ledger_member_time ON ledger_entries (member_id, occurred_at DESC, id DESC);
CREATE INDEX ledger_kind_time ON ledger_entries (kind, occurred_at);
-- +goose StatementBegin
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
-- +goose StatementEnd
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
DROP TABLE import_errors;
DROP TABLE imports;
