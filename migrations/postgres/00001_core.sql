-- +goose Up
CREATE TABLE program (
    id               smallint PRIMARY KEY CHECK (id = 1),
    name             text        NOT NULL,
    currency         char(3)     NOT NULL,
    points_per_unit  text        NOT NULL,
    pending_days     integer     NOT NULL CHECK (pending_days >= 0),
    expiry_policy    text        NOT NULL CHECK (expiry_policy IN ('lot', 'inactivity')),
    expiry_days      integer     NOT NULL CHECK (expiry_days >= 0),
    tier_period      text        NOT NULL CHECK (tier_period IN ('rolling', 'calendar_year')),
    tier_window_days integer     NOT NULL CHECK (tier_window_days > 0),
    timezone         text        NOT NULL,
    birthday_gift    text        NOT NULL,
    segments         text        NOT NULL,
    churn            text        NOT NULL,
    version          bigint      NOT NULL,
    updated_at       timestamptz NOT NULL
);
INSERT INTO program VALUES (1, 'Loyalty Program', 'USD', '1', 0, 'lot', 365, 'rolling', 365, 'UTC',
    '{"enabled":false,"reward_ids":[],"bonus_points":0,"claim_days":30,"min_tier":null}',
    '{"loyal_window_weeks":8,"loyal_min_active_weeks":8,"loyal_min_categories":20}',
    '{"risk_threshold":"0.5"}', 1, now());

CREATE TABLE tiers (
    code             text PRIMARY KEY,
    name             text        NOT NULL,
    rank             integer     NOT NULL UNIQUE CHECK (rank >= 0),
    earn_multiplier  text        NOT NULL,
    qualifying_spend bigint      NOT NULL CHECK (qualifying_spend >= 0),
    benefits         text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK (rank > 0 OR qualifying_spend = 0)
);

CREATE TABLE members (
    id          text PRIMARY KEY,
    external_id text UNIQUE,
    email       text UNIQUE,
    phone       text UNIQUE,
    first_name  text,
    last_name   text,
    birthday    text,
    timezone    text,
    status      text        NOT NULL CHECK (status IN ('active', 'erased')),
    tier_code   text REFERENCES tiers (code) ON DELETE RESTRICT,
    tier_since  timestamptz,
    churn_risk  text,
    enrolled_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX members_tier ON members (tier_code);

-- The cached balance: changed only in the transaction that appends to the
-- ledger, under this row's lock. points = sum(ledger) = sum(lots.remaining) - debt.
CREATE TABLE member_balances (
    member_id         text PRIMARY KEY REFERENCES members (id),
    points            bigint      NOT NULL,
    debt              bigint      NOT NULL CHECK (debt >= 0),
    lifetime_earned   bigint      NOT NULL,
    lifetime_redeemed bigint      NOT NULL,
    last_activity_at  timestamptz,
    version           bigint      NOT NULL CHECK (version > 0),
    updated_at        timestamptz NOT NULL
);

CREATE TABLE purchases (
    id              text PRIMARY KEY,
    member_id       text        NOT NULL REFERENCES members (id),
    store_id        text        NOT NULL,
    external_id     text,
    channel         text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    local_date      text        NOT NULL,
    local_day       integer     NOT NULL,
    currency        char(3)     NOT NULL,
    total           bigint      NOT NULL CHECK (total > 0),
    returned_amount bigint      NOT NULL CHECK (returned_amount >= 0 AND returned_amount <= total),
    points_earned   bigint      NOT NULL CHECK (points_earned >= 0),
    points_reversed bigint      NOT NULL CHECK (points_reversed >= 0 AND points_reversed <= points_earned),
    tier_code       text,
    created_at      timestamptz NOT NULL,
    UNIQUE (store_id, external_id)
);
CREATE INDEX purchases_member_time ON purchases (member_id, occurred_at);
CREATE INDEX purchases_local_date ON purchases (local_date);

CREATE TABLE purchase_items (
    purchase_id text    NOT NULL REFERENCES purchases (id),
    line        integer NOT NULL,
    sku         text    NOT NULL,
    category    text    NOT NULL,
    quantity    bigint  NOT NULL CHECK (quantity > 0),
    unit_price  bigint  NOT NULL CHECK (unit_price >= 0),
    amount      bigint  NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (purchase_id, line)
);
CREATE INDEX purchase_items_category ON purchase_items (category);

CREATE TABLE returns (
    id              text PRIMARY KEY,
    purchase_id     text        NOT NULL REFERENCES purchases (id),
    member_id       text        NOT NULL REFERENCES members (id),
    external_id     text,
    amount          bigint      NOT NULL CHECK (amount > 0),
    points_reversed bigint      NOT NULL CHECK (points_reversed >= 0),
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (purchase_id, external_id)
);

-- The ledger is the truth and is append-only: triggers refuse UPDATE and DELETE.
CREATE TABLE ledger_entries (
    id            text PRIMARY KEY,
    member_id     text        NOT NULL REFERENCES members (id),
    kind          text        NOT NULL CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust')),
    points        bigint      NOT NULL CHECK (points <> 0),
    occurred_at   timestamptz NOT NULL,
    available_at  timestamptz NOT NULL,
    expires_at    timestamptz,
    purchase_id   text REFERENCES purchases (id),
    return_id     text REFERENCES returns (id),
    redemption_id text,
    offer_id      text,
    description   text        NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX ledger_member_time ON ledger_entries (member_id, occurred_at DESC, id DESC);
CREATE INDEX ledger_kind_time ON ledger_entries (kind, occurred_at);

-- +goose StatementBegin
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- A lot is what is left of one credit: spends take from the lots that expire
-- first. A refund opens new lots with the expiry of the lots it gives back to.
CREATE TABLE lots (
    id           text PRIMARY KEY,
    entry_id     text        NOT NULL REFERENCES ledger_entries (id),
    member_id    text        NOT NULL REFERENCES members (id),
    points       bigint      NOT NULL CHECK (points > 0),
    remaining    bigint      NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    available_at timestamptz NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL
);
CREATE INDEX lots_member ON lots (member_id, expires_at);
CREATE INDEX lots_expiring ON lots (expires_at);

-- Which lots each debit took its points from.
CREATE TABLE lot_draws (
    entry_id text   NOT NULL REFERENCES ledger_entries (id),
    lot_id   text   NOT NULL REFERENCES lots (id),
    points   bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (entry_id, lot_id)
);

-- Idempotency records are written in the transaction of the effect they guard.
-- status 0 marks a claim whose transaction has not committed.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer     NOT NULL,
    response     text        NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE lot_draws;
DROP TABLE lots;
DROP TABLE ledger_entries;
DROP FUNCTION ledger_append_only();
DROP TABLE returns;
DROP TABLE purchase_items;
DROP TABLE purchases;
DROP TABLE member_balances;
DROP TABLE members;
DROP TABLE tiers;
DROP TABLE program;
