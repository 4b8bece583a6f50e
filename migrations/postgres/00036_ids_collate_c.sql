-- +goose Up
-- Every id, and every column that holds one, compares as bytes (collation
-- "C"). The engine's ids are UUIDv7 text and the clients' ids are opaque
-- strings: no one reads them in a language's order. Under a database's
-- language collation (C.UTF-8, en_US.UTF-8) each comparison of two ids in
-- an index, a sort or a merge join goes through strcoll, and sorts cannot
-- use abbreviated keys; under "C" it is a memcmp. Where the database's
-- collation is C.UTF-8 the order is the same, byte for byte. Each ALTER
-- rebuilds the indexes that hold the column; the rows are not rewritten.
ALTER TABLE audit_log
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN target_id TYPE text COLLATE "C";

ALTER TABLE churn_models
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE clv_models
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE events
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE feedback
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN purchase_id TYPE text COLLATE "C",
	ALTER COLUMN store_id TYPE text COLLATE "C",
	ALTER COLUMN entry_id TYPE text COLLATE "C";

ALTER TABLE idempotency_keys
	ALTER COLUMN personal_member_id TYPE text COLLATE "C";

ALTER TABLE import_errors
	ALTER COLUMN import_id TYPE text COLLATE "C";

ALTER TABLE imports
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE job_runs
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE ledger_entries
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN purchase_id TYPE text COLLATE "C",
	ALTER COLUMN return_id TYPE text COLLATE "C",
	ALTER COLUMN redemption_id TYPE text COLLATE "C",
	ALTER COLUMN offer_id TYPE text COLLATE "C";

ALTER TABLE lot_draws
	ALTER COLUMN entry_id TYPE text COLLATE "C",
	ALTER COLUMN lot_id TYPE text COLLATE "C";

ALTER TABLE lots
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN entry_id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE member_activity
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE member_balances
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE member_categories
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE member_churn
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE member_gifts
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN redemption_id TYPE text COLLATE "C",
	ALTER COLUMN run_id TYPE text COLLATE "C";

ALTER TABLE member_segments
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE members
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN external_id TYPE text COLLATE "C";

ALTER TABLE offer_activations
	ALTER COLUMN offer_id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE offer_members
	ALTER COLUMN offer_id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE offer_template_runs
	ALTER COLUMN template_id TYPE text COLLATE "C";

ALTER TABLE offer_templates
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE offer_uses
	ALTER COLUMN offer_id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN purchase_id TYPE text COLLATE "C";

ALTER TABLE offers
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN template_id TYPE text COLLATE "C",
	ALTER COLUMN owner_member_id TYPE text COLLATE "C";

ALTER TABLE purchase_items
	ALTER COLUMN purchase_id TYPE text COLLATE "C";

ALTER TABLE purchases
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN store_id TYPE text COLLATE "C",
	ALTER COLUMN external_id TYPE text COLLATE "C";

ALTER TABLE redemptions
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN reward_id TYPE text COLLATE "C",
	ALTER COLUMN entry_id TYPE text COLLATE "C";

ALTER TABLE returns
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN purchase_id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C",
	ALTER COLUMN external_id TYPE text COLLATE "C";

ALTER TABLE rewards
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE webhook_delivered
	ALTER COLUMN webhook_id TYPE text COLLATE "C",
	ALTER COLUMN id TYPE text COLLATE "C";

ALTER TABLE webhook_deliveries
	ALTER COLUMN id TYPE text COLLATE "C",
	ALTER COLUMN webhook_id TYPE text COLLATE "C",
	ALTER COLUMN member_id TYPE text COLLATE "C";

ALTER TABLE webhooks
	ALTER COLUMN id TYPE text COLLATE "C";

-- +goose Down
ALTER TABLE audit_log
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN target_id TYPE text COLLATE "default";

ALTER TABLE churn_models
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE clv_models
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE events
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE feedback
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN purchase_id TYPE text COLLATE "default",
	ALTER COLUMN store_id TYPE text COLLATE "default",
	ALTER COLUMN entry_id TYPE text COLLATE "default";

ALTER TABLE idempotency_keys
	ALTER COLUMN personal_member_id TYPE text COLLATE "default";

ALTER TABLE import_errors
	ALTER COLUMN import_id TYPE text COLLATE "default";

ALTER TABLE imports
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE job_runs
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE ledger_entries
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN purchase_id TYPE text COLLATE "default",
	ALTER COLUMN return_id TYPE text COLLATE "default",
	ALTER COLUMN redemption_id TYPE text COLLATE "default",
	ALTER COLUMN offer_id TYPE text COLLATE "default";

ALTER TABLE lot_draws
	ALTER COLUMN entry_id TYPE text COLLATE "default",
	ALTER COLUMN lot_id TYPE text COLLATE "default";

ALTER TABLE lots
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN entry_id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE member_activity
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE member_balances
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE member_categories
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE member_churn
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE member_gifts
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN redemption_id TYPE text COLLATE "default",
	ALTER COLUMN run_id TYPE text COLLATE "default";

ALTER TABLE member_segments
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE members
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN external_id TYPE text COLLATE "default";

ALTER TABLE offer_activations
	ALTER COLUMN offer_id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE offer_members
	ALTER COLUMN offer_id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE offer_template_runs
	ALTER COLUMN template_id TYPE text COLLATE "default";

ALTER TABLE offer_templates
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE offer_uses
	ALTER COLUMN offer_id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN purchase_id TYPE text COLLATE "default";

ALTER TABLE offers
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN template_id TYPE text COLLATE "default",
	ALTER COLUMN owner_member_id TYPE text COLLATE "default";

ALTER TABLE purchase_items
	ALTER COLUMN purchase_id TYPE text COLLATE "default";

ALTER TABLE purchases
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN store_id TYPE text COLLATE "default",
	ALTER COLUMN external_id TYPE text COLLATE "default";

ALTER TABLE redemptions
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN reward_id TYPE text COLLATE "default",
	ALTER COLUMN entry_id TYPE text COLLATE "default";

ALTER TABLE returns
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN purchase_id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default",
	ALTER COLUMN external_id TYPE text COLLATE "default";

ALTER TABLE rewards
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE webhook_delivered
	ALTER COLUMN webhook_id TYPE text COLLATE "default",
	ALTER COLUMN id TYPE text COLLATE "default";

ALTER TABLE webhook_deliveries
	ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN webhook_id TYPE text COLLATE "default",
	ALTER COLUMN member_id TYPE text COLLATE "default";

ALTER TABLE webhooks
	ALTER COLUMN id TYPE text COLLATE "default";
