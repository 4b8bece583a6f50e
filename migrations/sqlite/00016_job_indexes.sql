-- +goose Up
-- The tier review's candidates are the members above the lowest tier
-- whose tier_since is past the protection cutoff: by tier, then by when
-- it was reached, so a review reads the members it may move and not the
-- whole base. The index also serves every lookup by tier alone, which
-- members_tier served.
CREATE INDEX members_tier_since ON members (tier_code, tier_since);
DROP INDEX members_tier;

-- +goose Down
CREATE INDEX members_tier ON members (tier_code);
DROP INDEX members_tier_since;
