-- +goose Up
-- member_activity keeps each member's purchase summary as of the last
-- churn-risk run (activity_state.as_of): the days of the first, second and
-- last purchase, the repeat purchase days (x), the purchases, the value of
-- the repeat days and of the last 365 days; and the RFM segments' last
-- purchase, purchases and net spend in the 365 days before the as-of. A run refreshes only the
-- members whose summary can have changed since: those with a purchase
-- written after the watermark (SQLite's one writer appends purchases in
-- rowid order, so the rowid is the watermark), and those with a purchase
-- day that left the 365 days; so a night costs the day's purchases, not
-- the history.
CREATE TABLE member_activity (
    member_id    text PRIMARY KEY,
    first_day    INTEGER NOT NULL,
    second_day   INTEGER,
    last_day     INTEGER NOT NULL,
    x            INTEGER NOT NULL,
    purchases    INTEGER NOT NULL,
    repeat_spend REAL    NOT NULL,
    year_spend   REAL,
    rfm_last_at  DATETIME,
    rfm_n        INTEGER NOT NULL,
    rfm_spend    NUMERIC NOT NULL
);
-- The returns written since a run (a return changes the net spend of the
-- RFM figures).
CREATE INDEX returns_created ON returns (created_at);
CREATE TABLE activity_state (
    id        INTEGER  PRIMARY KEY CHECK (id = 1),
    as_of     DATETIME NOT NULL,
    day       INTEGER  NOT NULL,
    watermark INTEGER  NOT NULL
);

-- +goose Down
DROP INDEX returns_created;
DROP TABLE activity_state;
DROP TABLE member_activity;
