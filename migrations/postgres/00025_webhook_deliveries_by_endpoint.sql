-- +goose NO TRANSACTION
-- +goose Up
-- A delivered row is history written for every event an endpoint takes,
-- two or so a purchase, so it keeps as few trees as its reads allow (as
-- SQLite's 00024): the key is (webhook_id, id), which serves an endpoint's
-- list newest first and every lookup of an endpoint's delivery, in place
-- of a key on id alone; the list by status indexes only the rows that are
-- not delivered (a list of the delivered ones reads the key, where nearly
-- every row is one). And no foreign key to webhooks: its check read and
-- locked the endpoint's row for every row written, and an endpoint's
-- delete removes its deliveries itself (webhooks.Service.Delete). Two
-- B-trees a delivered row instead of three, and no trigger. Built without
-- blocking the dispatcher; a build that failed part way leaves an invalid
-- index, dropped first when the migration runs again.
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_webhook_id_fkey;
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_by_endpoint;
CREATE UNIQUE INDEX CONCURRENTLY webhook_deliveries_by_endpoint ON webhook_deliveries (webhook_id, id);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_pkey,
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY USING INDEX webhook_deliveries_by_endpoint;
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_list_open;
CREATE INDEX CONCURRENTLY webhook_deliveries_list_open ON webhook_deliveries (webhook_id, status, id DESC)
    WHERE status <> 'delivered';
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_list;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_list ON webhook_deliveries (webhook_id, status, id DESC);
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_list_open;
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_by_id;
CREATE UNIQUE INDEX CONCURRENTLY webhook_deliveries_by_id ON webhook_deliveries (id);
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_pkey,
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY USING INDEX webhook_deliveries_by_id;
DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.id = d.webhook_id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_webhook_id_fkey
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id) ON DELETE CASCADE;
