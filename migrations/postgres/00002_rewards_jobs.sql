-- +goose Up
CREATE TABLE rewards (
    id               text PRIMARY KEY,
    code             text        NOT NULL UNIQUE,
    name             text        NOT NULL,
    description      text        NOT NULL,
    cost_points      bigint      NOT NULL CHECK (cost_points >= 0),
    min_tier         text REFERENCES tiers (code) ON DELETE RESTRICT,
    stock            bigint CHECK (stock IS NULL OR stock >= 0),
    per_member_limit integer CHECK (per_member_limit IS NULL OR per_member_limit > 0),
    valid_from       timestamptz,
    valid_until      timestamptz,
    active           boolean     NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_until > valid_from)
);

CREATE TABLE redemptions (
    id           text PRIMARY KEY,
    member_id    text        NOT NULL REFERENCES members (id),
    reward_id    text        NOT NULL REFERENCES rewards (id),
    points_spent bigint      NOT NULL CHECK (points_spent >= 0),
    coupon_code  text        NOT NULL UNIQUE,
    status       text        NOT NULL CHECK (status IN ('issued', 'used', 'cancelled')),
    channel      text        NOT NULL,
    entry_id     text REFERENCES ledger_entries (id),
    created_at   timestamptz NOT NULL,
    used_at      timestamptz,
    used_by      text,
    cancelled_at timestamptz,
    CHECK ((status = 'used') = (used_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
CREATE INDEX redemptions_member ON redemptions (member_id, created_at);
CREATE INDEX redemptions_member_reward ON redemptions (member_id, reward_id, status);

-- A coupon is issued, then used or cancelled, and never changes again.
-- +goose StatementBegin
CREATE FUNCTION redemption_status_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'issued' AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'redemption % is % and cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.points_spent <> OLD.points_spent OR NEW.member_id <> OLD.member_id OR NEW.reward_id <> OLD.reward_id
        OR NEW.coupon_code <> OLD.coupon_code THEN
        RAISE EXCEPTION 'redemption % is immutable but for its status', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER redemption_status BEFORE UPDATE ON redemptions
    FOR EACH ROW EXECUTE FUNCTION redemption_status_guard();

CREATE TABLE job_runs (
    id          text PRIMARY KEY,
    name        text        NOT NULL,
    as_of       timestamptz NOT NULL,
    status      text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    summary     text        NOT NULL,
    error       text        NOT NULL,
    triggered_by text       NOT NULL
);
CREATE INDEX job_runs_name ON job_runs (name, started_at);

-- +goose Down
DROP TABLE job_runs;
DROP TABLE redemptions;
DROP FUNCTION redemption_status_guard();
DROP TABLE rewards;
