-- +goose Up
-- The churn-risk run's scores per distinct (x, t_x, T) now live in a
-- temporary table of its transaction (churn_scores).
DROP TABLE churn_tuples;

-- +goose Down
CREATE TABLE churn_tuples (
    x                INTEGER NOT NULL,
    tx_days          INTEGER NOT NULL,
    t_days           INTEGER NOT NULL,
    churn_risk       text    NOT NULL,
    p_alive          text    NOT NULL,
    expected90       text    NOT NULL,
    expected_horizon REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (x, tx_days, t_days)
);
