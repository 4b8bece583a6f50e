-- +goose Up
-- Feedback bonus points are ledger entries of their own kind (§17).
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust', 'feedback'));

-- Program settings of §16 and §17.
ALTER TABLE program ADD COLUMN feedback_bonus_points bigint NOT NULL DEFAULT 0 CHECK (feedback_bonus_points >= 0);
ALTER TABLE program ADD COLUMN clv_horizon_weeks integer NOT NULL DEFAULT 52 CHECK (clv_horizon_weeks > 0);
ALTER TABLE program ADD COLUMN points_payment text NOT NULL
    DEFAULT '{"enabled":false,"points_per_unit":"50","min_points":500,"step_points":500,"max_share":"1"}';

-- One answer per member, purchase and kind: purchase_key is the purchase id,
-- or '' for an answer about no purchase, so that one is unique as well.
CREATE TABLE feedback (
    id           text PRIMARY KEY,
    member_id    text        NOT NULL REFERENCES members (id),
    kind         text        NOT NULL CHECK (kind IN ('nps', 'csat', 'ces')),
    score        integer     NOT NULL CHECK (score >= 0 AND score <= 10),
    purchase_id  text REFERENCES purchases (id),
    purchase_key text        NOT NULL,
    store_id     text,
    channel      text        NOT NULL,
    tier_code    text,
    comment      text,
    entry_id     text REFERENCES ledger_entries (id),
    bonus_points bigint      NOT NULL,
    occurred_at  timestamptz NOT NULL,
    local_date   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    UNIQUE (member_id, purchase_key, kind)
);
CREATE INDEX feedback_time ON feedback (occurred_at);

-- The Gamma-Gamma spend model fitted by the churn-risk job, and each
-- member's lifetime value over the program's horizon.
CREATE TABLE clv_models (
    id                text PRIMARY KEY,
    as_of             timestamptz      NOT NULL,
    p                 double precision NOT NULL,
    q                 double precision NOT NULL,
    gamma             double precision NOT NULL,
    log_likelihood    double precision NOT NULL,
    customers         bigint           NOT NULL,
    horizon_weeks     integer          NOT NULL,
    computed_at       timestamptz      NOT NULL
);
CREATE INDEX clv_models_time ON clv_models (computed_at);
ALTER TABLE churn_tuples ADD COLUMN expected_horizon double precision NOT NULL DEFAULT 0;
ALTER TABLE member_churn ADD COLUMN clv bigint;
-- repeat_spend: the value of the purchase days after the first, in minor units;
-- simple_clv: the seeds' formula over the same horizon, for comparison.
ALTER TABLE member_churn ADD COLUMN repeat_spend double precision NOT NULL DEFAULT 0;
ALTER TABLE member_churn ADD COLUMN expected_transactions double precision;
ALTER TABLE member_churn ADD COLUMN simple_clv bigint;
CREATE INDEX member_churn_clv ON member_churn (clv DESC, member_id);

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
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust'));
