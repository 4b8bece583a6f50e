-- +goose Up
CREATE TABLE rewards (
    id               text PRIMARY KEY,
    code             text     NOT NULL UNIQUE,
    name             text     NOT NULL,
    description      text     NOT NULL,
    cost_points      INTEGER  NOT NULL CHECK (cost_points >= 0),
    min_tier         text REFERENCES tiers (code) ON DELETE RESTRICT,
    stock            INTEGER CHECK (stock IS NULL OR stock >= 0),
    per_member_limit INTEGER CHECK (per_member_limit IS NULL OR per_member_limit > 0),
    valid_from       DATETIME,
    valid_until      DATETIME,
    active           BOOLEAN  NOT NULL,
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL,
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_until > valid_from)
);

CREATE TABLE redemptions (
    id           text PRIMARY KEY,
    member_id    text     NOT NULL REFERENCES members (id),
    reward_id    text     NOT NULL REFERENCES rewards (id),
    points_spent INTEGER  NOT NULL CHECK (points_spent >= 0),
    coupon_code  text     NOT NULL UNIQUE,
    status       text     NOT NULL CHECK (status IN ('issued', 'used', 'cancelled')),
    channel      text     NOT NULL,
    entry_id     text REFERENCES ledger_entries (id),
    created_at   DATETIME NOT NULL,
    used_at      DATETIME,
    used_by      text,
    cancelled_at DATETIME,
    CHECK ((status = 'used') = (used_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
CREATE INDEX redemptions_member ON redemptions (member_id, created_at);
CREATE INDEX redemptions_member_reward ON redemptions (member_id, reward_id, status);

-- A coupon is issued, then used or cancelled, and never changes again.
-- +goose StatementBegin
CREATE TRIGGER redemption_status BEFORE UPDATE ON redemptions
WHEN (OLD.status <> 'issued' AND NEW.status IS NOT OLD.status)
    OR NEW.points_spent <> OLD.points_spent OR NEW.member_id <> OLD.member_id
    OR NEW.reward_id <> OLD.reward_id OR NEW.coupon_code <> OLD.coupon_code
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: redemption status can only leave issued');
END;
-- +goose StatementEnd

CREATE TABLE job_runs (
    id          text PRIMARY KEY,
    name        text     NOT NULL,
    as_of       DATETIME NOT NULL,
    status      text     NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at  DATETIME NOT NULL,
    finished_at DATETIME,
    summary     text     NOT NULL,
    error       text     NOT NULL,
    triggered_by text    NOT NULL
);
CREATE INDEX job_runs_name ON job_runs (name, started_at);

-- +goose Down
DROP TABLE job_runs;
DROP TRIGGER redemption_status;
DROP TABLE redemptions;
DROP TABLE rewards;
