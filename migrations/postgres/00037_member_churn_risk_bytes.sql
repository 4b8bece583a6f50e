-- +goose Up
-- The churn-risk list's index keyed in bytes (collation "C"): its risks
-- ("0.3721") and member ids (lower-case hex and dashes) sort the same way
-- in bytes as in the database's collation, and the churn-risk run builds
-- the index again every night over every member, where comparing each pair
-- of strings through the C library's collation took half as long again
-- (1.8 s against 1.25 s at a million members). The list names the
-- collation in its comparisons and order, so that it reads its pages from
-- the index.
DROP INDEX member_churn_risk;
CREATE INDEX member_churn_risk ON member_churn (churn_risk COLLATE "C" DESC, member_id COLLATE "C");

-- +goose Down
DROP INDEX member_churn_risk;
CREATE INDEX member_churn_risk ON member_churn (churn_risk DESC, member_id);
