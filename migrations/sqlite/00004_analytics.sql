-- +goose Up
-- A scheduled run is claimed once, by whichever engine inserts its slot.
ALTER TABLE job_runs ADD COLUMN scheduled_for DATETIME;
CREATE UNIQUE INDEX job_runs_slot ON job_runs (name, scheduled_for) WHERE scheduled_for IS NOT NULL;

CREATE TABLE redemption_rate_snapshots (
    month           text PRIMARY KEY,
    points_issued   INTEGER     NOT NULL,
    points_redeemed INTEGER     NOT NULL,
    rate_percent    text,
    computed_at     DATETIME NOT NULL
);

CREATE TABLE churn_models (
    id             text PRIMARY KEY,
    as_of          DATETIME NOT NULL,
    time_unit      text        NOT NULL,
    r              REAL NOT NULL,
    alpha          REAL NOT NULL,
    a              REAL NOT NULL,
    b              REAL NOT NULL,
    log_likelihood REAL NOT NULL,
    members        INTEGER     NOT NULL,
    computed_at    DATETIME NOT NULL
);
CREATE INDEX churn_models_time ON churn_models (computed_at);

-- Scores per distinct (repeat days, recency, age): the scoring job writes
-- these few rows, then joins them to every member in one statement.
CREATE TABLE churn_tuples (
    x          INTEGER NOT NULL,
    tx_days    INTEGER NOT NULL,
    t_days     INTEGER NOT NULL,
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
    purchase_days              INTEGER     NOT NULL,
    purchases                  INTEGER     NOT NULL,
    days_since_last_purchase   INTEGER     NOT NULL,
    computed_at                DATETIME NOT NULL
);

-- +goose Down
DROP TABLE member_churn;
DROP TABLE churn_tuples;
DROP TABLE churn_models;
DROP TABLE redemption_rate_snapshots;
DROP INDEX job_runs_slot;
ALTER TABLE job_runs DROP COLUMN scheduled_for;
