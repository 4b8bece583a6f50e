-- +goose Up
-- A purchase reads the member's offer activations and its uses of each
-- offer (loadMemberOffers) by member_id, which no index led with: each
-- read scanned both tables whole, a cost that grew with every offer used
-- by anyone. Both are keyed by member first now; the uses' old index
-- (offer_id, member_id) served no read the primary key (offer_id,
-- purchase_id) and the new one do not.
CREATE INDEX offer_uses_by_member ON offer_uses (member_id, offer_id);
CREATE INDEX offer_activations_by_member ON offer_activations (member_id, offer_id);
DROP INDEX offer_uses_member;

-- +goose Down
CREATE INDEX offer_uses_member ON offer_uses (offer_id, member_id);
DROP INDEX offer_activations_by_member;
DROP INDEX offer_uses_by_member;
