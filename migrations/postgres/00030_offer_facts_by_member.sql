-- +goose NO TRANSACTION
-- +goose Up
-- A purchase reads the member's offer activations and its uses of each
-- offer (pgOfferFactsSQL, loadMemberOffers) by member_id, which no index
-- led with: each read scanned both tables whole, a cost that grew with
-- every offer used by anyone (2,072 uses, 42 pages, 0.235 ms a purchase on a
-- bench of a million members after one night's personal offers). Both are
-- keyed by member first now; the uses' old index (offer_id, member_id)
-- served no read the primary key (offer_id, purchase_id) and the new one
-- do not. Built without blocking the tills; a build that failed part way
-- leaves an invalid index, dropped first when the migration runs again.
DROP INDEX CONCURRENTLY IF EXISTS offer_uses_by_member;
CREATE INDEX CONCURRENTLY offer_uses_by_member ON offer_uses (member_id, offer_id);
DROP INDEX CONCURRENTLY IF EXISTS offer_activations_by_member;
CREATE INDEX CONCURRENTLY offer_activations_by_member ON offer_activations (member_id, offer_id);
DROP INDEX CONCURRENTLY IF EXISTS offer_uses_member;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS offer_uses_member ON offer_uses (offer_id, member_id);
DROP INDEX CONCURRENTLY IF EXISTS offer_activations_by_member;
DROP INDEX CONCURRENTLY IF EXISTS offer_uses_by_member;
