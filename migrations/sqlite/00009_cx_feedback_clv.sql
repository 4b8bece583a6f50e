-- +goose NO TRANSACTION
-- +goose Up
-- Feedback bonus points are ledger entries of their own kind (§17). SQLite
-- cannot change a CHECK constraint, so ledger_entries is rebuilt as SQLite's
-- documented procedure says: with foreign keys off (lots and lot_draws refer
-- to it by name) and outside goose's transaction, which would make the
-- pragma a no-op; the rebuild and the rest run in one transaction of their
-- own. Every row is copied as it was, so every reference still holds.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE ledger_entries_new (
    id            text PRIMARY KEY,
    member_id     text        NOT NULL REFERENCES members (id),
    kind          text        NOT NULL CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback')),
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

-- Program settings of §16 and §17.
ALTER TABLE program ADD COLUMN feedback_bonus_points INTEGER NOT NULL DEFAULT 0 CHECK (feedback_bonus_points >= 0);
ALTER TABLE program ADD COLUMN clv_horizon_weeks INTEGER NOT NULL DEFAULT 52 CHECK (clv_horizon_weeks > 0);
ALTER TABLE program ADD COLUMN points_payment text NOT NULL
    DEFAULT '{"enabled":false,"points_per_unit":"50","min_points":500,"step_points":500,"max_share":"1"}';

-- One answer per member, purchase and kind: purchase_key is the purchase id,
-- or '' for an answer about no purchase, so that one is unique as well.
CREATE TABLE feedback (
    id           text PRIMARY KEY,
    member_id    text        NOT NULL REFERENCES members (id),
    kind         text        NOT NULL CHECK (kind IN ('nps', 'csat', 'ces')),
    score        INTEGER     NOT NULL CHECK (score >= 0 AND score <= 10),
    purchase_id  text REFERENCES purchases (id),
    purchase_key text        NOT NULL,
    store_id     text,
    channel      text        NOT NULL,
    tier_code    text,
    comment      text,
    entry_id     text REFERENCES ledger_entries (id),
    bonus_points INTEGER     NOT NULL,
    occurred_at  DATETIME    NOT NULL,
    local_date   text        NOT NULL,
    created_at   DATETIME    NOT NULL,
    UNIQUE (member_id, purchase_key, kind)
);
CREATE INDEX feedback_time ON feedback (occurred_at);

-- The Gamma-Gamma spend model fitted by the churn-risk job, and each
-- member's lifetime value over the program's horizon.
CREATE TABLE clv_models (
    id                text PRIMARY KEY,
    as_of             DATETIME NOT NULL,
    p                 REAL     NOT NULL,
    q                 REAL     NOT NULL,
    gamma             REAL     NOT NULL,
    log_likelihood    REAL     NOT NULL,
    customers         INTEGER  NOT NULL,
    horizon_weeks     INTEGER  NOT NULL,
    computed_at       DATETIME NOT NULL
);
CREATE INDEX clv_models_time ON clv_models (computed_at);
ALTER TABLE churn_tuples ADD COLUMN expected_horizon REAL NOT NULL DEFAULT 0;
ALTER TABLE member_churn ADD COLUMN clv INTEGER;
-- repeat_spend: the value of the purchase days after the first, in minor units;
-- simple_clv: the seeds' formula over the same horizon, for comparison.
ALTER TABLE member_churn ADD COLUMN repeat_spend REAL NOT NULL DEFAULT 0;
ALTER TABLE member_churn ADD COLUMN expected_transactions REAL;
ALTER TABLE member_churn ADD COLUMN simple_clv INTEGER;
CREATE INDEX member_churn_clv ON member_churn (clv DESC, member_id);
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
DROP INDEX member_churn_clv;
ALTER TABLE member_churn DROP COLUMN simple_clv;
ALTER TABLE member_churn DROP COLUMN expected_transactions;
ALTER TABLE member_churn DROP COLUMN repeat_spend;
ALTER TABLE member_churn DROP COLUMN clv;
ALTER TABLE churn_tuples DROP COLUMN expected_horizon;
DROP TABLE clv_models;
DROP TABLE feedback;
ALTER TABLE program DROP COLUMN points_payment;
ALTER TABLE program DROP COLUMN clv_horizon_weeks;
ALTER TABLE program DROP COLUMN feedback_bonus_points;
