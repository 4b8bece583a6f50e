-- The least work a day's expiry must do, without the engine: close the
-- day's lots, write one expire entry, its lot draw and one points.expired
-- event a lot, move each member's balance and write one balance.changed
-- event a member, set-based, in one transaction (no kept state, no JSON
-- beyond a few fields). It is rolled back at the end, so the schema is
-- unchanged. On a schema BenchmarkJobsAtScale kept (LOYALTY_BENCH_SCHEMA):
--
--   psql -h 127.0.0.1 -U postgres -v from='2026-03-04 00:00:00+00' -v to='2026-03-05 00:00:00+00' \
--     -c 'SET search_path = b1m' -f docs/bench/expire-minimal.sql
--
-- Given lo and/or hi (-v lo=… -v hi=…, member ids), it takes only the day's
-- members from lo (inclusive) to hi (exclusive): expire-minimal-parts.sh
-- runs it over parts of the day side by side.
\ir member-run.psql
\timing on
BEGIN;
SET LOCAL work_mem = '256MB';
CREATE TEMP TABLE due ON COMMIT DROP AS
  SELECT id, member_id, remaining, expires_at FROM lots
  WHERE remaining > 0 AND expires_at > :'from' AND expires_at <= :'to'
    AND (:'lo' = '' OR member_id >= :'lo') AND (:'hi' = '' OR member_id < :'hi');
SELECT count(*) AS lots, count(DISTINCT member_id) AS members FROM due;
SELECT count(*) AS locked FROM (SELECT 1 FROM member_balances WHERE member_id IN (SELECT member_id FROM due) ORDER BY member_id FOR UPDATE) s;
UPDATE lots SET remaining = 0 FROM due WHERE lots.id = due.id;
INSERT INTO ledger_entries (id, member_id, kind, points, occurred_at, available_at, expires_at, description, created_at)
  SELECT 'x' || id, member_id, 'expire', -remaining, expires_at, expires_at, expires_at, 'expired', now() FROM due;
INSERT INTO lot_draws (entry_id, lot_id, points) SELECT 'x' || id, id, remaining FROM due;
INSERT INTO events (type, member_id, occurred_at, data)
  SELECT 'points.expired', member_id, now(), '{"entry_id":"x' || id || '","member_id":"' || member_id || '","points":' || -remaining || '}' FROM due;
UPDATE member_balances b SET points = b.points - s.p, version = b.version + 1, updated_at = now()
  FROM (SELECT member_id, SUM(remaining) AS p FROM due GROUP BY member_id) s WHERE b.member_id = s.member_id;
INSERT INTO events (type, member_id, occurred_at, data)
  SELECT 'balance.changed', b.member_id, now(), '{"member_id":"' || b.member_id || '","points":' || b.points || '}'
  FROM member_balances b WHERE b.member_id IN (SELECT member_id FROM due);
ROLLBACK;
