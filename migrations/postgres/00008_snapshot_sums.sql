-- +goose Up
-- A month's points issued or redeemed over every member can pass what a
-- bigint holds (1,025 credits of 2^53 - 1 points are enough): numeric keeps
-- every digit.
ALTER TABLE redemption_rate_snapshots
    ALTER COLUMN points_issued TYPE numeric,
    ALTER COLUMN points_redeemed TYPE numeric;
-- The instant up to which the month was counted (its end, or the run's
-- as_of within it): a run as of an earlier instant keeps the snapshot.
ALTER TABLE redemption_rate_snapshots ADD COLUMN counted_until timestamptz;

-- +goose Down
ALTER TABLE redemption_rate_snapshots DROP COLUMN counted_until;
ALTER TABLE redemption_rate_snapshots
    ALTER COLUMN points_issued TYPE bigint,
    ALTER COLUMN points_redeemed TYPE bigint;
