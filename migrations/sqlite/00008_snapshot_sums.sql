-- +goose Up
-- A month's points issued or redeemed over every member can pass what an
-- INTEGER holds (1,025 credits of 2^53 - 1 points are enough), and SQLite
-- would turn a larger number into an approximate REAL in an INTEGER
-- column: the sums are kept as decimal text instead. SQLite cannot change
-- a column's type, so the table is rebuilt.
-- counted_until is the instant up to which the month was counted (its end,
-- or the run's as_of within it): a run as of an earlier instant keeps the
-- snapshot.
CREATE TABLE redemption_rate_snapshots_new (
    month           text PRIMARY KEY,
    points_issued   text     NOT NULL,
    points_redeemed text     NOT NULL,
    rate_percent    text,
    counted_until   DATETIME,
    computed_at     DATETIME NOT NULL
);
INSERT INTO redemption_rate_snapshots_new (month, points_issued, points_redeemed, rate_percent, computed_at)
    SELECT month, CAST(points_issued AS TEXT), CAST(points_redeemed AS TEXT), rate_percent, computed_at
    FROM redemption_rate_snapshots;
DROP TABLE redemption_rate_snapshots;
ALTER TABLE redemption_rate_snapshots_new RENAME TO redemption_rate_snapshots;

-- +goose Down
CREATE TABLE redemption_rate_snapshots_old (
    month           text PRIMARY KEY,
    points_issued   INTEGER     NOT NULL,
    points_redeemed INTEGER     NOT NULL,
    rate_percent    text,
    computed_at     DATETIME NOT NULL
);
INSERT INTO redemption_rate_snapshots_old (month, points_issued, points_redeemed, rate_percent, computed_at)
    SELECT month, CAST(points_issued AS INTEGER), CAST(points_redeemed AS INTEGER), rate_percent, computed_at
    FROM redemption_rate_snapshots;
DROP TABLE redemption_rate_snapshots;
ALTER TABLE redemption_rate_snapshots_old RENAME TO redemption_rate_snapshots;
