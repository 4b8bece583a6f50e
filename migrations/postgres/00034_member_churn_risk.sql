-- +goose Up
-- The churn-risk list reads its pages from an index in its order, as the
-- CLV list does: without one each page sorted every member's score (at a
-- million members 192 ms a page). The churn-risk run builds it again with
-- the table it replaces every night.
CREATE INDEX member_churn_risk ON member_churn (churn_risk DESC, member_id);

-- +goose Down
DROP INDEX member_churn_risk;
