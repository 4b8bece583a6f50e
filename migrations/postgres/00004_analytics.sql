-- +goose Up
-- A scheduled run is claimed once, by whichever engine inserts its slot.
ALTER TABLE job_runs ADD COLUMN scheduled_for timestamptz;
CREATE UNIQUE INDEX job_runs_slot ON job_runs (name, scheduled_for) WHERE scheduled_for IS NOT NULL;

CREATE TABLE redemption_rate_snapshots (
    month           text PRIMARY KEY,
    points_issued   bigint      NOT NULL,
    points_redeemed bigint      NOT NULL,
    rate_percent    text,
    computed_at     timestamptz NOT NULL
);

CREATE TABLE churn_models (
    id             text PRIMARY KEY,
    as_of          timestamptz NOT NULL,
    time_unit      text        NOT NULL,
    r              double precision NOT NULL,
    alpha          double precision NOT NULL,
    a              double precision NOT NULL,
    b              double precision NOT NULL,
    log_likelihood double precision NOT NULL,
    members        bigint      NOT NULL,
    computed_at    timestamptz NOT NULL
);
CREATE INDEX churn_models_time ON churn_models (computed_at);

-- Scores per distinct (repeat days, recency, age): the scoring job writes
-- these few rows, then joins them to every member in one statement.
CREATE TABLE churn_tuples (
    x          integer NOT NULL,
    tx_days    integer NOT NULL,
    t_days     integer NOT NULL,
    churn_risk text    NOT NULL,
    p_alive    text    NOT NULL,
    expected90 text    NOT NULL,
    PRIMARY KEY (x, tx_days, t_days)
);

CREATE TABLE member_churn (
    member_id                  text PRIMARY KEY REFERENCES members (id),
    churn_risk                 text        NOT NULL,
    p_alive                    text        NOT NULL,
    expected_purchases_90d     text        NOT NULL,
    purchase_days              integer     NOT NULL,
    purchases                  integer     NOT NULL,
    days_since_last_purchase   integer     NOT NULL,
    computed_at                timestamptz NOT NULL
);

-- +goose Down
DROP TABLE member_churn;
DROP TABLE churn_tuples;
DROP TABLE churn_models;
DROP TABLE redemption_rate_snapshots;
DROP INDEX job_runs_slot;
ALTER TABLE job_runs DROP COLUMN scheduled_for;
