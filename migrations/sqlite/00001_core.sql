-- +goose Up
CREATE TABLE program (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    name             text        NOT NULL,
    currency         TEXT     NOT NULL,
    points_per_unit  text        NOT NULL,
    pending_days     INTEGER     NOT NULL CHECK (pending_days >= 0),
    expiry_policy    text        NOT NULL CHECK (expiry_policy IN ('lot', 'inactivity')),
    expiry_days      INTEGER     NOT NULL CHECK (expiry_days >= 0),
    tier_period      text        NOT NULL CHECK (tier_period IN ('rolling', 'calendar_year')),
    tier_window_days INTEGER     NOT NULL CHECK (tier_window_days > 0),
    timezone         text        NOT NULL,
    birthday_gift    text        NOT NULL,
    segments         text        NOT NULL,
    churn            text        NOT NULL,
    version          INTEGER      NOT NULL,
    updated_at       DATETIME NOT NULL
);
INSERT INTO program VALUES (1, 'Loyalty Program', 'USD', '1', 0, 'lot', 365, 'rolling', 365, 'UTC',
    '{"enabled":false,"reward_ids":[],"bonus_points":0,"claim_days":30,"min_tier":null}',
    '{"loyal_window_weeks":8,"loyal_min_active_weeks":8,"loyal_min_categories":20}',
    '{"risk_threshold":"0.5"}', 1, strftime('%Y-%m-%d %H:%M:%f+00:00','now'));

CREATE TABLE tiers (
    code             text PRIMARY KEY,
    name             text        NOT NULL,
    rank             INTEGER     NOT NULL UNIQUE CHECK (rank >= 0),
    earn_multiplier  text        NOT NULL,
    qualifying_spend INTEGER      NOT NULL CHECK (qualifying_spend >= 0),
    benefits         text        NOT NULL,
    created_at       DATETIME NOT NULL,
    updated_at       DATETIME NOT NULL,
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
    tier_since  DATETIME,
    churn_risk  text,
    enrolled_at DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL
);
CREATE INDEX members_tier ON members (tier_code);

-- The cached balance: changed only in the transaction that appends to the
-- ledger, under this row's lock. points = sum(ledger) = sum(lots.remaining) - debt.
CREATE TABLE member_balances (
    member_id         text PRIMARY KEY REFERENCES members (id),
    points            INTEGER      NOT NULL,
    debt              INTEGER      NOT NULL CHECK (debt >= 0),
    lifetime_earned   INTEGER      NOT NULL,
    lifetime_redeemed INTEGER      NOT NULL,
    last_activity_at  DATETIME,
    version           INTEGER      NOT NULL CHECK (version > 0),
    updated_at        DATETIME NOT NULL
);

CREATE TABLE purchases (
    id              text PRIMARY KEY,
    member_id       text        NOT NULL REFERENCES members (id),
    store_id        text        NOT NULL,
    external_id     text,
    channel         text        NOT NULL,
    occurred_at     DATETIME NOT NULL,
    local_date      text        NOT NULL,
    local_day       INTEGER     NOT NULL,
    currency        TEXT     NOT NULL,
    total           INTEGER      NOT NULL CHECK (total > 0),
    returned_amount INTEGER      NOT NULL CHECK (returned_amount >= 0 AND returned_amount <= total),
    points_earned   INTEGER      NOT NULL CHECK (points_earned >= 0),
    points_reversed INTEGER      NOT NULL CHECK (points_reversed >= 0 AND points_reversed <= points_earned),
    tier_code       text,
    created_at      DATETIME NOT NULL,
    UNIQUE (store_id, external_id)
);
CREATE INDEX purchases_member_time ON purchases (member_id, occurred_at);
CREATE INDEX purchases_local_date ON purchases (local_date);

CREATE TABLE purchase_items (
    purchase_id text    NOT NULL REFERENCES purchases (id),
    line        INTEGER NOT NULL,
    sku         text    NOT NULL,
    category    text    NOT NULL,
    quantity    INTEGER  NOT NULL CHECK (quantity > 0),
    unit_price  INTEGER  NOT NULL CHECK (unit_price >= 0),
    amount      INTEGER  NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (purchase_id, line)
);
CREATE INDEX purchase_items_category ON purchase_items (category);

CREATE TABLE returns (
    id              text PRIMARY KEY,
    purchase_id     text        NOT NULL REFERENCES purchases (id),
    member_id       text        NOT NULL REFERENCES members (id),
    external_id     text,
    amount          INTEGER      NOT NULL CHECK (amount > 0),
    points_reversed INTEGER      NOT NULL CHECK (points_reversed >= 0),
    occurred_at     DATETIME NOT NULL,
    created_at      DATETIME NOT NULL,
    UNIQUE (purchase_id, external_id)
);

-- The ledger is the truth and is append-only: triggers refuse UPDATE and DELETE.
CREATE TABLE ledger_entries (
    id            text PRIMARY KEY,
    member_id     text        NOT NULL REFERENCES members (id),
    kind          text        NOT NULL CHECK (kind IN ('earn', 'offer', 'bonus', 'gift', 'redeem', 'redeem_cancel', 'return', 'expire', 'adjust')),
    points        INTEGER      NOT NULL CHECK (points <> 0),
    occurred_at   DATETIME NOT NULL,
    available_at  DATETIME NOT NULL,
    expires_at    DATETIME,
    purchase_id   text REFERENCES purchases (id),
    return_id     text REFERENCES returns (id),
    redemption_id text,
    offer_id      text,
    description   text        NOT NULL,
    created_at    DATETIME NOT NULL
);
CREATE INDEX ledger_member_time ON ledger_entries (member_id, occurred_at DESC, id DESC);
CREATE INDEX ledger_kind_time ON ledger_entries (kind, occurred_at);

-- +goose StatementBegin
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
-- +goose StatementEnd

-- A lot is what is left of one credit: spends take from the lots that expire
-- first. A refund opens new lots with the expiry of the lots it gives back to.
CREATE TABLE lots (
    id           text PRIMARY KEY,
    entry_id     text        NOT NULL REFERENCES ledger_entries (id),
    member_id    text        NOT NULL REFERENCES members (id),
    points       INTEGER      NOT NULL CHECK (points > 0),
    remaining    INTEGER      NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    available_at DATETIME NOT NULL,
    expires_at   DATETIME,
    created_at   DATETIME NOT NULL
);
CREATE INDEX lots_member ON lots (member_id, expires_at);
CREATE INDEX lots_expiring ON lots (expires_at);

-- Which lots each debit took its points from.
CREATE TABLE lot_draws (
    entry_id text   NOT NULL REFERENCES ledger_entries (id),
    lot_id   text   NOT NULL REFERENCES lots (id),
    points   INTEGER NOT NULL CHECK (points > 0),
    PRIMARY KEY (entry_id, lot_id)
);

-- Idempotency records are written in the transaction of the effect they guard.
-- status 0 marks a claim whose transaction has not committed.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       INTEGER     NOT NULL,
    response     text        NOT NULL,
    created_at   DATETIME NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE lot_draws;
DROP TABLE lots;
DROP TABLE ledger_entries;
DROP TABLE returns;
DROP TABLE purchase_items;
DROP TABLE purchases;
DROP TABLE member_balances;
DROP TABLE members;
DROP TABLE tiers;
DROP TABLE program;
