-- +goose NO TRANSACTION
-- +goose Up
-- A gift's member_id references the member's balance row, which
-- references the member, as the ledger's and the lots' do (00041): the
-- same rows are allowed. The birthday-gifts job locks a chunk's balances
-- before it inserts their gifts, so each gift's key check finds its row
-- held, where it locked the member's row and wrote that row's page to the
-- WAL, a page of members for every gift (at a million members most of
-- them whole, the first change to the page since a checkpoint). Added NOT
-- VALID, then validated on its own: the validation reads the table
-- without blocking its writers.
ALTER TABLE member_gifts DROP CONSTRAINT IF EXISTS member_gifts_member_id_balance_fkey;
ALTER TABLE member_gifts ADD CONSTRAINT member_gifts_member_id_balance_fkey
    FOREIGN KEY (member_id) REFERENCES member_balances (member_id) NOT VALID;
ALTER TABLE member_gifts VALIDATE CONSTRAINT member_gifts_member_id_balance_fkey;
ALTER TABLE member_gifts DROP CONSTRAINT IF EXISTS member_gifts_member_id_fkey;

-- +goose Down
ALTER TABLE member_gifts DROP CONSTRAINT IF EXISTS member_gifts_member_id_fkey;
ALTER TABLE member_gifts ADD CONSTRAINT member_gifts_member_id_fkey FOREIGN KEY (member_id) REFERENCES members (id) NOT VALID;
ALTER TABLE member_gifts VALIDATE CONSTRAINT member_gifts_member_id_fkey;
ALTER TABLE member_gifts DROP CONSTRAINT IF EXISTS member_gifts_member_id_balance_fkey;
