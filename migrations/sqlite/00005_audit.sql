-- +goose Up
-- The audit trail: who changed the program's configuration, the catalog,
-- the offers or a member's points by hand, when, and how. Each row is
-- written in the transaction of the change it describes. Like the ledger it
-- is append-only: triggers refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id          text     PRIMARY KEY,
    occurred_at DATETIME NOT NULL,
    actor_sub   text     NOT NULL,
    actor_role  text     NOT NULL CHECK (actor_role IN ('admin', 'marketer', 'pos', 'member', 'system')),
    action      text     NOT NULL,
    target_kind text     NOT NULL,
    target_id   text     NOT NULL,
    change      text     NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_sub, occurred_at DESC);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, occurred_at DESC);

-- +goose StatementBegin
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_log;
