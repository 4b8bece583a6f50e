-- +goose Up
-- The churn-risk list reads its pages from an index in its order, as the
-- CLV list does, not from a sort of every member's score.
CREATE INDEX member_churn_risk ON member_churn (churn_risk DESC, member_id);

-- +goose Down
DROP INDEX member_churn_risk;
