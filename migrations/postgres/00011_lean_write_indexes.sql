-- +goose Up
-- A purchase writes a purchase, its lines, an earn entry, a lot and an
-- idempotency record; every B-tree on those tables is one more entry, page
-- and WAL record per purchase. What only reports, purges and jobs scan by
-- time moves to BRIN (a summary per range of pages, nearly free to keep on
-- rows appended in time order); what nothing reads goes.
--   lots_member: every per-member lot query reads open lots only, which
--     lots_member_open serves;
--   lots_expiring: the expiry job reads the open lots due, so the index
--     holds open lots only and its scan skips the closed history;
--   purchase_items_category: no query looks lines up by category alone
--     (the category rules join lines from the member's purchases);
--   ledger_kind_time, purchases_local_date, idempotency_created: report
--     ranges and the purge of old keys, by time.
DROP INDEX lots_member;
DROP INDEX lots_expiring;
CREATE INDEX lots_open_expiring ON lots (expires_at) WHERE remaining > 0;
DROP INDEX purchase_items_category;
DROP INDEX ledger_kind_time;
CREATE INDEX ledger_time_brin ON ledger_entries USING brin (occurred_at);
DROP INDEX purchases_local_date;
CREATE INDEX purchases_local_date_brin ON purchases USING brin (local_date);
DROP INDEX idempotency_created;
CREATE INDEX idempotency_created_brin ON idempotency_keys USING brin (created_at);

-- offers_version counts the statements that changed offers. A purchase
-- reads it with its lock; while it is the one at which the engine last
-- found no active offer, the purchase skips the member's offers and offer
-- facts (two statements of three in its first round trip).
CREATE TABLE offers_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint  NOT NULL
);
INSERT INTO offers_version (id, version) VALUES (1, 1);
-- +goose StatementBegin
CREATE FUNCTION offers_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE offers_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER offers_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON offers
    FOR EACH STATEMENT EXECUTE FUNCTION offers_version_bump();

-- +goose Down
DROP TRIGGER offers_version ON offers;
DROP FUNCTION offers_version_bump();
DROP TABLE offers_version;
DROP INDEX idempotency_created_brin;
CREATE INDEX idempotency_created ON idempotency_keys (created_at);
DROP INDEX purchases_local_date_brin;
CREATE INDEX purchases_local_date ON purchases (local_date);
DROP INDEX ledger_time_brin;
CREATE INDEX ledger_kind_time ON ledger_entries (kind, occurred_at);
CREATE INDEX purchase_items_category ON purchase_items (category);
DROP INDEX lots_open_expiring;
CREATE INDEX lots_expiring ON lots (expires_at);
CREATE INDEX lots_member ON lots (member_id, expires_at);
