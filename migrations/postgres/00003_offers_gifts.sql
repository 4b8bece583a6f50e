-- +goose Up
-- Segment membership, recomputed by the segments job; offers target it.
CREATE TABLE member_segments (
    member_id    text        NOT NULL REFERENCES members (id),
    segment_code text        NOT NULL,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (member_id, segment_code)
);
CREATE INDEX member_segments_code ON member_segments (segment_code);

-- Templates from which the personal-offers job makes one offer per member.
CREATE TABLE offer_templates (
    id                  text PRIMARY KEY,
    code                text        NOT NULL UNIQUE,
    name                text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('multiplier', 'bonus')),
    multiplier          text        NOT NULL,
    bonus_points        bigint      NOT NULL CHECK (bonus_points >= 0),
    conditions          text        NOT NULL,
    duration_days       integer     NOT NULL CHECK (duration_days > 0),
    lookback_days       integer     NOT NULL CHECK (lookback_days > 0),
    min_purchases       integer     NOT NULL CHECK (min_purchases > 0),
    requires_activation boolean     NOT NULL,
    max_uses_per_member integer CHECK (max_uses_per_member IS NULL OR max_uses_per_member > 0),
    active              boolean     NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE offers (
    id                  text PRIMARY KEY,
    code                text        NOT NULL UNIQUE,
    name                text        NOT NULL,
    kind                text        NOT NULL CHECK (kind IN ('multiplier', 'bonus')),
    multiplier          text        NOT NULL,
    bonus_points        bigint      NOT NULL CHECK (bonus_points >= 0),
    conditions          text        NOT NULL,
    target_all          boolean     NOT NULL,
    target_segments     text        NOT NULL,
    requires_activation boolean     NOT NULL,
    starts_at           timestamptz,
    ends_at             timestamptz,
    max_uses_per_member integer CHECK (max_uses_per_member IS NULL OR max_uses_per_member > 0),
    status              text        NOT NULL CHECK (status IN ('active', 'paused')),
    -- A personal offer belongs to one member, on its favourite category.
    template_id         text REFERENCES offer_templates (id),
    owner_member_id     text REFERENCES members (id),
    personal_category   text,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    CHECK (starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX offers_owner ON offers (owner_member_id, template_id, ends_at);
CREATE INDEX offers_live ON offers (status, ends_at);

CREATE TABLE offer_members (
    offer_id  text NOT NULL REFERENCES offers (id),
    member_id text NOT NULL REFERENCES members (id),
    PRIMARY KEY (offer_id, member_id)
);
CREATE INDEX offer_members_member ON offer_members (member_id);

CREATE TABLE offer_activations (
    offer_id     text        NOT NULL REFERENCES offers (id),
    member_id    text        NOT NULL REFERENCES members (id),
    activated_at timestamptz NOT NULL,
    PRIMARY KEY (offer_id, member_id)
);

CREATE TABLE offer_uses (
    offer_id    text        NOT NULL REFERENCES offers (id),
    member_id   text        NOT NULL REFERENCES members (id),
    purchase_id text        NOT NULL REFERENCES purchases (id),
    points      bigint      NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (offer_id, purchase_id)
);
CREATE INDEX offer_uses_member ON offer_uses (offer_id, member_id);

-- One birthday gift per member per calendar year, whoever runs the job.
CREATE TABLE member_gifts (
    id            text PRIMARY KEY,
    member_id     text        NOT NULL REFERENCES members (id),
    year          integer     NOT NULL,
    birthday      text        NOT NULL,
    options       text        NOT NULL,
    bonus_points  bigint      NOT NULL CHECK (bonus_points >= 0),
    status        text        NOT NULL CHECK (status IN ('available', 'claimed', 'expired')),
    expires_at    timestamptz NOT NULL,
    redemption_id text REFERENCES redemptions (id),
    run_id        text        NOT NULL,
    created_at    timestamptz NOT NULL,
    claimed_at    timestamptz,
    UNIQUE (member_id, year),
    CHECK ((status = 'claimed') = (redemption_id IS NOT NULL))
);
CREATE INDEX member_gifts_run ON member_gifts (run_id);

-- +goose Down
DROP TABLE member_gifts;
DROP TABLE offer_uses;
DROP TABLE offer_activations;
DROP TABLE offer_members;
DROP TABLE offers;
DROP TABLE offer_templates;
DROP TABLE member_segments;
