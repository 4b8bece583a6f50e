-- +goose Up
-- member_activity keeps each member's purchase summary as of the last
-- churn-risk run (activity_state.as_of): the days of the first, second and
-- last purchase, the repeat purchase days (x), the purchases, the value of
-- the repeat days and of the last 365 days; and the RFM segments' last
-- purchase, purchases and net spend in the 365 days before the as-of. A run refreshes only the
-- members whose summary can have changed since: those with a purchase
-- created since the watermark, and those with a purchase day that left
-- the 365 days; so a night costs the day's purchases, not the history.
CREATE TABLE member_activity (
    member_id    text PRIMARY KEY,
    first_day    integer          NOT NULL,
    second_day   integer,
    last_day     integer          NOT NULL,
    x            integer          NOT NULL,
    purchases    bigint           NOT NULL,
    repeat_spend double precision NOT NULL,
    year_spend   double precision,
    rfm_last_at  timestamptz,
    rfm_n        bigint           NOT NULL,
    rfm_spend    numeric          NOT NULL
);
-- as_of and day: what member_activity is as of; watermark: purchases
-- created after it may not be in it yet.
CREATE TABLE activity_state (
    id        integer     PRIMARY KEY CHECK (id = 1),
    as_of     timestamptz NOT NULL,
    day       integer     NOT NULL,
    watermark timestamptz NOT NULL
);
-- The purchases created since a watermark, by a summary per range of
-- pages: purchases are appended in time order, so the ranges past the
-- watermark are the table's last pages, and the index costs a purchase
-- next to nothing to keep.
CREATE INDEX purchases_created_brin ON purchases USING brin (created_at);
-- And the returns written since (a return changes the net spend of the RFM
-- figures), the same way.
CREATE INDEX returns_created_brin ON returns USING brin (created_at);
-- member_churn and member_segments are derived, and the churn-risk and
-- segments runs replace them whole: on PostgreSQL each builds a new table
-- and swaps it in, its primary key and indexes built once over all rows (a
-- fifth of the time of deleting and inserting every row, with no dead rows
-- left). Their foreign keys to members go: on every run they checked each
-- row and locked its member KEY SHARE, and no member is ever deleted.
ALTER TABLE member_churn DROP CONSTRAINT member_churn_member_id_fkey;
ALTER TABLE member_segments DROP CONSTRAINT member_segments_member_id_fkey;

-- +goose Down
DROP INDEX returns_created_brin;
ALTER TABLE member_segments ADD CONSTRAINT member_segments_member_id_fkey FOREIGN KEY (member_id) REFERENCES members (id);
ALTER TABLE member_churn ADD CONSTRAINT member_churn_member_id_fkey FOREIGN KEY (member_id) REFERENCES members (id);
DROP INDEX purchases_created_brin;
DROP TABLE activity_state;
DROP TABLE member_activity;
