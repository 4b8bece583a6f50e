-- +goose NO TRANSACTION
-- +goose Up
-- Points as payment at the till (§16): the payment is a ledger entry of its
-- own kind, a return refunds part of it as another. SQLite cannot change a
-- CHECK constraint, so ledger_entries is rebuilt as in 00009: foreign keys
-- off, outside goose's transaction, every row copied as it was, and its
-- indexes and triggers created again as they stand after 00011.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE ledger_entries_new (
    id            text PRIMARY KEY,
    member_id     text        NOT NULL REFERENCES members (id),
    kind          text        NOT NULL CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback',
        'payment', 'payment_refund')),
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

-- What a purchase paid with points, and what returns gave back of it, so that
-- a return refunds in proportion and the qualifying spend counts the cash
-- part: total - amount_paid_with_points, less the cash part of the returns.
ALTER TABLE purchases ADD COLUMN points_paid INTEGER NOT NULL DEFAULT 0 CHECK (points_paid >= 0);
ALTER TABLE purchases ADD COLUMN amount_paid_with_points INTEGER NOT NULL DEFAULT 0
    CHECK (amount_paid_with_points >= 0 AND amount_paid_with_points <= total);
ALTER TABLE purchases ADD COLUMN points_refunded INTEGER NOT NULL DEFAULT 0
    CHECK (points_refunded >= 0 AND points_refunded <= points_paid);
ALTER TABLE purchases ADD COLUMN amount_paid_returned INTEGER NOT NULL DEFAULT 0
    CHECK (amount_paid_returned >= 0 AND amount_paid_returned <= amount_paid_with_points
        AND amount_paid_returned <= returned_amount);
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
ALTER TABLE purchases DROP COLUMN amount_paid_returned;
ALTER TABLE purchases DROP COLUMN points_refunded;
ALTER TABLE purchases DROP COLUMN amount_paid_with_points;
ALTER TABLE purchases DROP COLUMN points_paid;
