-- +goose NO TRANSACTION
-- +goose Up
-- A ledger entry's, a lot's and a birthday gift's member_id reference the
-- member's balance row, which references the member: the same rows are
-- allowed, and every member has its balance row from enrolment. The key
-- check of each row inserted locks the row it finds (FOR KEY SHARE), and a
-- lock writes the row's page to the WAL. A till already holds its
-- member's balance row locked, so the check costs it nothing more either
-- way; the nightly jobs that write a day's expiries or gifts lock the
-- balances first, and now leave the members' pages alone, where they
-- wrote a page of members to the WAL for every lot closed or gift given
-- (at a million members most of them whole, the first change to the page
-- since a checkpoint). Each key is added NOT VALID, then validated on its
-- own: the validation reads the table without blocking its writers.
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_member_id_balance_fkey;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_member_id_balance_fkey
    FOREIGN KEY (member_id) REFERENCES member_balances (member_id) NOT VALID;
ALTER TABLE ledger_entries VALIDATE CONSTRAINT ledger_entries_member_id_balance_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_member_id_fkey;
ALTER TABLE lots DROP CONSTRAINT IF EXISTS lots_member_id_balance_fkey;
ALTER TABLE lots ADD CONSTRAINT lots_member_id_balance_fkey
    FOREIGN KEY (member_id) REFERENCES member_balances (member_id) NOT VALID;
ALTER TABLE lots VALIDATE CONSTRAINT lots_member_id_balance_fkey;
ALTER TABLE lots DROP CONSTRAINT IF EXISTS lots_member_id_fkey;
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
ALTER TABLE lots DROP CONSTRAINT IF EXISTS lots_member_id_fkey;
ALTER TABLE lots ADD CONSTRAINT lots_member_id_fkey FOREIGN KEY (member_id) REFERENCES members (id) NOT VALID;
ALTER TABLE lots VALIDATE CONSTRAINT lots_member_id_fkey;
ALTER TABLE lots DROP CONSTRAINT IF EXISTS lots_member_id_balance_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_member_id_fkey;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_member_id_fkey FOREIGN KEY (member_id) REFERENCES members (id) NOT VALID;
ALTER TABLE ledger_entries VALIDATE CONSTRAINT ledger_entries_member_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_member_id_balance_fkey;
