-- +goose Up
-- The tier review's candidates are the members above the lowest tier
-- whose tier_since is past the protection cutoff: by tier, then by when
-- it was reached, so a review reads the members it may move and not the
-- whole base. The index also serves every lookup by tier alone, which
-- members_tier served.
CREATE INDEX members_tier_since ON members (tier_code, tier_since);
DROP INDEX members_tier;
-- The personal-offers job reads back the offers its run created, for their
-- offer.assigned events: by the instant of the run, not by a scan of every
-- personal offer ever given.
CREATE INDEX offers_personal_created ON offers (created_at) WHERE owner_member_id IS NOT NULL;

-- +goose Down
DROP INDEX offers_personal_created;
CREATE INDEX members_tier ON members (tier_code);
DROP INDEX members_tier_since;
