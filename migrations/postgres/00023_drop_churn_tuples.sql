-- +goose Up
-- The churn-risk run's scores per distinct (x, t_x, T) now live in a
-- temporary table of its transaction (churn_scores), filled in one
-- statement and never written to the WAL.
DROP TABLE churn_tuples;

-- +goose Down
CREATE TABLE churn_tuples (
    x                integer          NOT NULL,
    tx_days          integer          NOT NULL,
    t_days           integer          NOT NULL,
    churn_risk       text             NOT NULL,
    p_alive          text             NOT NULL,
    expected90       text             NOT NULL,
    expected_horizon double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (x, tx_days, t_days)
);
